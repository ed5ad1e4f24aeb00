"""Dask clients for use inside flows and tasks, under ``prefect_dask.utils``' module name:
``get_dask_client`` and ``get_async_dask_client``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from braid import errors
from braid.adapters.dask.worker import get_dask_client
from braid.core.context import current_run

__all__ = ["get_async_dask_client", "get_dask_client"]


@contextlib.asynccontextmanager
async def get_async_dask_client(
    timeout: float | str | None = None, **client_kwargs: Any
) -> AsyncIterator[Any]:
    """Yield an asynchronous ``distributed.Client`` on the scheduler the current run uses.

    Inside a task running on a Dask worker it connects to that worker's scheduler; in a
    flow body on a :class:`DaskTaskRunner`, to that runner's.  Elsewhere it raises
    :class:`braid.errors.MissingContextError`.  The client is closed when the block ends.
    """
    import distributed

    address: str | None = None
    try:
        address = distributed.get_worker().scheduler.address
    except ValueError:
        ctx = current_run.get()
        runner = ctx.task_runner if ctx is not None else None
        client = getattr(runner, "client", None)
        if client is not None:
            address = client.scheduler.address
    if address is None:
        raise errors.MissingContextError(
            "get_async_dask_client() needs a task running on a Dask worker or a flow running "
            "on a DaskTaskRunner"
        )
    kwargs = {"set_as_default": False, **client_kwargs}
    if timeout is not None:
        kwargs["timeout"] = timeout
    async with distributed.Client(address, asynchronous=True, **kwargs) as client:
        yield client
