"""Which Ray a RayTaskRunner uses, and who shuts it down.

A runner uses the Ray this process is already connected to (a worker's, or one the
user started) and never shuts that down.  Otherwise it starts a local Ray or connects
to an address, checked first with a short connect so a dead address fails at once by
name, and that Ray is shut down when the last braid runner using it exits.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Mapping
from typing import Any

import ray

from braid import errors

__all__ = ["RayUse", "check_same_cluster", "host_port", "ray_use", "reachable"]


class RayUse:
    """Counts the runners using a Ray that braid started or connected (module-wide).

    braid shuts Ray down when the last runner using such a Ray exits; a Ray that
    was initialised by anyone else (the user, a Ray worker) is only ever used.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.owned = False
        self.users = 0

    def acquire(self, address: str | None, init_kwargs: Mapping[str, Any]) -> bool:
        """Make sure Ray is initialised; True if this use must later be released."""
        with self.lock:
            if ray.is_initialized():
                if address is not None:
                    check_same_cluster(address)
                if self.owned:
                    self.users += 1
                    return True
                return False
            kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
            if address is None:
                kwargs["include_dashboard"] = False
            else:
                reachable(address)  # Ray itself would retry (and warn) for minutes
                kwargs["address"] = address
            kwargs.update(init_kwargs)
            try:
                ray.init(**kwargs)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                where = f"the Ray cluster at {address!r}" if address else "a local Ray"
                raise errors.ConfigurationError(
                    f"RayTaskRunner could not start or connect to {where}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            self.owned, self.users = True, 1
            return True

    def release(self) -> None:
        with self.lock:
            self.users -= 1
            if self.users == 0 and self.owned:
                self.owned = False
                ray.shutdown()


ray_use = RayUse()


def reachable(address: str) -> None:
    """Fail fast, by name, when nothing listens at a Ray cluster's GCS address."""
    if address == "auto":
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return  # Ray's own message for an odd address
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise errors.ClusterUnreachable(
            f"RayTaskRunner could not reach a Ray cluster at {address}: "
            f"{type(exc).__name__}: {exc}; start one (`ray start --head`) or fix the address"
        ) from exc


def check_same_cluster(address: str) -> None:
    if address == "auto":
        return
    current = ray.get_runtime_context().gcs_address
    if host_port(current) != host_port(address):
        raise errors.ConfigurationError(
            f"RayTaskRunner(address={address!r}): this process is already connected to the "
            f"Ray cluster at {current!r}, and a process can use one Ray at a time; use "
            f"that address, or run the flow in another process"
        )


def host_port(address: str) -> tuple[str, str]:
    host, _, port = address.rpartition(":")
    try:
        host = socket.gethostbyname(host)
    except OSError:
        pass
    return host, port
