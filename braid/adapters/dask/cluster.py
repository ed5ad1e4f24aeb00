"""Facts about a Dask cluster the runner checks or asks for: is a scheduler listening,
can its workers import braid, and where are a flow's tasks now; and the client the
runner opens to it.

Shared by :class:`braid.adapters.dask.DaskTaskRunner`; ``task_states`` runs on the
scheduler (``Client.run_on_scheduler``).
"""

from __future__ import annotations

import logging
from typing import Any

from braid import errors

__all__ = [
    "CONNECT_TIMEOUT",
    "MESSAGE_LOG",
    "check_workers_have_braid",
    "make_cluster",
    "new_client",
    "reachable",
    "task_states",
]

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


def make_cluster(
    cluster_class: type | str | None,
    cluster_kwargs: dict[str, Any],
    adapt_kwargs: dict[str, Any] | None,
) -> Any:
    """Start a cluster of ``cluster_class`` (a class, a dotted path, or None for
    ``distributed.LocalCluster`` with worker processes) and make it adaptive if asked."""
    import importlib

    import distributed

    cls = cluster_class
    if cls is None:
        cls = distributed.LocalCluster
    elif isinstance(cls, str):
        module, _, name = cls.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:
            raise errors.ConfigurationError(
                f"DaskTaskRunner: cluster_class {cluster_class!r} cannot be imported: {exc}"
            ) from exc
    kwargs = dict(cluster_kwargs)
    if cls is distributed.LocalCluster:
        # processes give real parallelism and make forwarding logs safe; a private
        # dashboard port avoids "port 8787 in use" warnings from a second cluster
        kwargs.setdefault("processes", True)
        kwargs.setdefault("dashboard_address", "127.0.0.1:0")
    cluster = cls(**kwargs)
    if adapt_kwargs is not None:
        cluster.adapt(**adapt_kwargs)
    return cluster


#: Dask's setting for how many batches of recently sent messages a comm keeps for debugging
LOG_LENGTH = "distributed.admin.low-level-log-length"
#: how many such batches a client the runner opens keeps, unless the user set the length
MESSAGE_LOG = 50


def new_client(target: Any, client_kwargs: dict[str, Any]) -> Any:
    """A ``distributed.Client`` of ``target`` (an address or a cluster) that keeps the last
    :data:`MESSAGE_LOG` batches of messages it sent to the scheduler, not Dask's 1000.

    Every run is one ``update-graph`` message (~2 kB with its pickled call), and a batch
    goes every 10 ms: Dask's log kept every run submitted in the last ~10 s alive, ~60 MB
    of a 100 000-link chain's driver.  A length set in Dask's config is kept.
    """
    import dask
    import distributed

    if dask.config.get(LOG_LENGTH, None) != _dask_default(LOG_LENGTH):
        return distributed.Client(target, **client_kwargs)
    with dask.config.set({LOG_LENGTH: MESSAGE_LOG}):
        return distributed.Client(target, **client_kwargs)


def _dask_default(name: str) -> Any:
    """The value Dask's own defaults give the setting ``name`` (None if none does)."""
    import dask

    for defaults in dask.config.defaults:
        node: Any = defaults
        for part in name.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            return node
    return None


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
