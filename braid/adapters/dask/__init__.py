"""Run braid tasks on a Dask cluster (``pip install 'braid-flow[dask]'``).

Imported only when used (``braid.DaskTaskRunner`` resolves lazily); without Dask's
``distributed`` package, importing this module raises
:class:`braid.errors.MissingExtraError` naming the install command.
"""

from __future__ import annotations

from braid import errors

try:
    import dask  # noqa: F401
    import distributed  # noqa: F401
except ImportError as exc:
    raise errors.MissingExtraError(
        f"DaskTaskRunner needs Dask's distributed scheduler, which cannot be imported "
        f"({exc}); install it with: pip install 'braid-flow[dask]'"
    ) from exc

from braid.adapters.dask.future import DaskFuture
from braid.adapters.dask.runner import DaskTaskRunner
from braid.adapters.dask.utils import get_async_dask_client, get_dask_client

__all__ = ["DaskFuture", "DaskTaskRunner", "get_async_dask_client", "get_dask_client"]
