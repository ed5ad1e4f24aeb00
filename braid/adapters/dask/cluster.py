"""Facts about a Dask cluster the runner checks or asks for: is a scheduler listening,
can its workers import braid, and where are a flow's tasks now.

Shared by :class:`braid.adapters.dask.DaskTaskRunner`; ``task_states`` runs on the
scheduler (``Client.run_on_scheduler``).
"""

from __future__ import annotations

import logging
from typing import Any

from braid import errors

__all__ = ["CONNECT_TIMEOUT", "check_workers_have_braid", "reachable", "task_states"]

logger = logging.getLogger("braid.dask")


def check_workers_have_braid(client: Any, address: str, package: str = "braid-flow") -> None:
    """Refuse, by name, a cluster whose workers cannot import braid (Dask would only say
    the environments differ, its real error far up the log); a different braid version
    is logged."""
    from braid import __version__

    try:
        workers = client.get_versions(packages=[package]).get("workers", {})
    except Exception:  # noqa: BLE001 - an old scheduler: the runs will tell
        return
    missing = sorted(
        w for w, info in workers.items() if (info or {}).get("packages", {}).get(package) is None
    )
    if missing:
        raise errors.ConfigurationError(
            f"the Dask workers {', '.join(missing)} of the cluster at {address} cannot import "
            f"braid ({package} is not installed there): install it in every worker's "
            f"environment (pip install '{package}=={__version__}') and restart them"
        )
    others = sorted({info["packages"][package] for info in workers.values()} - {__version__})
    if others:
        logger.warning(
            "Dask workers at %s run braid %s; this process runs %s",
            address,
            ", ".join(others),
            __version__,
        )


#: how long connecting to a scheduler by address may take before the flow fails by name
CONNECT_TIMEOUT = 10


def reachable(address: str) -> None:
    """Fail fast, by name, when nothing listens at a scheduler's address (Dask itself keeps
    retrying for its whole connect timeout)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme not in ("tcp", "tls") or parts.hostname is None or parts.port is None:
        return  # other transports (inproc, ucx, ws): Dask's own check
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=5).close()
    except OSError as exc:
        raise errors.ClusterUnreachable(
            f"DaskTaskRunner could not reach a Dask scheduler at {address}: "
            f"{type(exc).__name__}: {exc}; start one (`dask scheduler`) or fix the address"
        ) from exc


def task_states(keys: list, dask_scheduler: Any = None) -> dict:
    """On the scheduler: each key's state ("processing" means on a worker), the worker
    it is on and how long ago that worker was last heard from."""
    import time as _time

    out: dict = {}
    now = _time.time()
    for k in keys:
        ts = dask_scheduler.tasks.get(k)
        ws = getattr(ts, "processing_on", None) if ts is not None else None
        out[k] = (
            ts.state if ts is not None else None,
            ws.address if ws is not None else None,
            now - ws.last_seen if ws is not None else None,
        )
    return out
