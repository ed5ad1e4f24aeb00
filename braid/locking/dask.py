"""Locks held in a Dask scheduler (``distributed.Lock``): for tasks on one Dask cluster.

The scheduler keeps the lock, so every worker and the client see it; a lock whose
worker or client died lapses with its lease (Dask's
``distributed.scheduler.locks.lease-timeout``, 30 s by default).  ``distributed`` is
imported on first use.  A Dask lock can only be released through the object that took
it, so this manager remembers, per process, which ``distributed.Lock`` each
``(key, holder)`` took: take and release a lock in the same process (the cache look-up
and its commit both run on the worker, so they do).
"""

from __future__ import annotations

import threading
from typing import Any

from braid import errors
from braid.locking.protocol import poll_until_free

__all__ = ["DaskLockManager"]


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise errors.MissingExtraError(
            "DaskLockManager needs Dask: pip install 'braid-flow[dask]'"
        ) from exc
    return distributed


class DaskLockManager:
    """Locks named ``<prefix><key>`` in the scheduler of the current Dask client (the
    worker's own client on a worker, the default client on the driver)."""

    def __init__(self, prefix: str = "braid-lock-") -> None:
        self.prefix = prefix
        self._taken: dict[tuple[str, str], Any] = {}
        self._guard = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"prefix": self.prefix}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["prefix"])  # type: ignore[misc]

    def _lock(self, key: str) -> Any:
        return _distributed().Lock(self.prefix + key)

    def acquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        """Acquire the scheduler's lock on ``key``; ``hold_timeout`` is not used (a dead
        holder's lease lapses instead)."""
        with self._guard:
            if (key, holder) in self._taken:
                return True
        lock = self._lock(key)
        if not lock.acquire(timeout=acquire_timeout):
            return False
        with self._guard:
            self._taken[(key, holder)] = lock
        return True

    def release_lock(self, key: str, holder: str) -> None:
        """Release the lock this process took for ``holder``; ``ValueError`` otherwise."""
        with self._guard:
            lock = self._taken.pop((key, holder), None)
        if lock is None:
            raise ValueError(f"{holder!r} does not hold the lock on {key!r} in this process")
        lock.release()

    def is_locked(self, key: str) -> bool:
        """Whether anyone on the cluster holds the lock on ``key``."""
        return bool(self._lock(key).locked())

    def is_lock_holder(self, key: str, holder: str) -> bool:
        """Whether ``holder`` took the lock on ``key`` in this process and still holds it."""
        with self._guard:
            return (key, holder) in self._taken

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """Poll until ``key`` is free; False if still locked after ``timeout`` seconds."""
        return poll_until_free(lambda: self.is_locked(key), timeout, 0.01, 0.2)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DaskLockManager) and other.prefix == self.prefix

    def __hash__(self) -> int:
        return hash(self.prefix)

    def __repr__(self) -> str:
        return f"DaskLockManager(prefix={self.prefix!r})"
