"""Concurrency and rate limits that hold across threads, processes, Dask and Ray workers,
with no server (Prefect's ``prefect.concurrency``, kept where the work runs).

- ``braid.concurrency.sync``: ``concurrency(names, occupy=1, timeout_seconds=None,
  strict=False)`` (context manager) and ``rate_limit(...)``;
  ``braid.concurrency.asyncio``: the same for ``async`` code.
- ``Limit(limit, slot_decay_per_second=0.0)``: what a name is declared as, on a flow
  (``@flow(concurrency_limits={...})``), in ``BRAID_CONCURRENCY_LIMITS`` (``db=2,api=5/1.0``)
  or with ``braid run --limit db=2``.
- Backends (where the slots are counted): ``LocalLimits`` (threads of one process),
  ``LimitsCoordinator`` (a process pool; workers reach the parent), ``DaskLimits``
  (``distributed.Semaphore`` on the scheduler), ``RayLimits`` (a named actor per limit).
  A picklable ``LimitsHandle`` carries the backend and the declared table to workers;
  ``use_limits(handle)`` makes it the one ``concurrency()`` uses there.
- Tag limits for the run table: ``limited_tags``, ``try_acquire_for_tags``,
  ``acquire_for_tags``, ``TagGate``.

The Dask and Ray backends are imported only when asked for, by name.
"""

from __future__ import annotations

from typing import Any

from braid.concurrency.backend import (
    Lease,
    LimitBackend,
    LimitsHandle,
    current_backend,
    current_handle,
    use_limits,
)
from braid.concurrency.coordinator import LimitsCoordinator
from braid.concurrency.limits import (
    ENV_VAR,
    Limit,
    LimitTable,
    declare_limits,
    declared_limits,
    parse_limits,
)
from braid.concurrency.local import LocalLimits
from braid.concurrency.tags import (
    TagGate,
    TagWaiter,
    acquire_for_tags,
    limited_tags,
    try_acquire_for_tags,
)

__all__ = [
    "ENV_VAR",
    "DaskLimits",
    "Lease",
    "Limit",
    "LimitBackend",
    "LimitTable",
    "LimitsCoordinator",
    "LimitsHandle",
    "LocalLimits",
    "RayLimits",
    "TagGate",
    "TagWaiter",
    "acquire_for_tags",
    "current_backend",
    "current_handle",
    "declare_limits",
    "declared_limits",
    "limited_tags",
    "parse_limits",
    "try_acquire_for_tags",
    "use_limits",
]

_LAZY = {
    "DaskLimits": "braid.concurrency.dask_backend",
    "RayLimits": "braid.concurrency.ray_backend",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'braid.concurrency' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
