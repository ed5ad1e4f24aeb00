"""Run tasks on Ray: ``RayTaskRunner``, ``remote_options`` (``pip install 'braid-flow[ray]'``).

Importing this package imports Ray; ``braid.RayTaskRunner`` imports it only when
first used.  Without Ray installed the import fails with
:class:`braid.errors.MissingExtraError` naming the command that installs it.
"""

from __future__ import annotations

from braid import errors

try:
    import ray  # noqa: F401 - only to find out whether the extra is installed
except ImportError as exc:
    raise errors.MissingExtraError(
        "RayTaskRunner needs Ray, which is not installed: run  pip install 'braid-flow[ray]'"
    ) from exc

from braid.adapters.ray.future import RayTaskFuture
from braid.adapters.ray.options import remote_options
from braid.adapters.ray.runner import RayTaskRunner

__all__ = ["RayTaskRunner", "RayTaskFuture", "remote_options"]
