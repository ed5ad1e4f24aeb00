"""Locks held by a named Ray actor: for tasks on one Ray cluster.

One actor per name (``braid-locks`` in the namespace ``braid``) keeps the table of
held keys; it is created by the first process that needs it (``get_if_exists``) and
lives as long as the Ray cluster (``lifetime="detached"``), so drivers and workers of
any job on the cluster share it.  Waiting polls the actor (5 ms growing to 100 ms).
A holder that dies keeps its lock until ``hold_timeout`` lapses: give one for
long-running clusters.  ``ray`` is imported on first use.
"""

from __future__ import annotations

import time
from typing import Any

from braid import errors
from braid.locking.protocol import poll_until_free

__all__ = ["RayLockManager", "LockTable"]


class LockTable:
    """The actor's state: key -> (holder, lapses at wall-clock time or None)."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[str, float | None]] = {}

    def _current(self, key: str) -> str | None:
        entry = self.held.get(key)
        if entry is not None and entry[1] is not None and time.time() >= entry[1]:
            del self.held[key]
            entry = None
        return None if entry is None else entry[0]

    def try_acquire(self, key: str, holder: str, hold_timeout: float | None) -> bool:
        """Take the lock if it is free (or already ``holder``'s)."""
        current = self._current(key)
        if current is not None and current != holder:
            return False
        self.held[key] = (holder, None if hold_timeout is None else time.time() + hold_timeout)
        return True

    def release(self, key: str, holder: str) -> bool:
        """Release ``holder``'s lock; False if it did not hold it."""
        if self._current(key) != holder:
            return False
        del self.held[key]
        return True

    def holder(self, key: str) -> str | None:
        """Who holds ``key`` now, if anyone."""
        return self._current(key)


_actors: dict[tuple[str, str, str], Any] = {}


class RayLockManager:
    """Locks in the named actor ``name`` of ``namespace`` on the connected Ray cluster."""

    def __init__(self, name: str = "braid-locks", namespace: str = "braid") -> None:
        self.name = name
        self.namespace = namespace

    def _table(self) -> Any:
        try:
            import ray
        except ImportError as exc:
            raise errors.MissingExtraError(
                "RayLockManager needs Ray: pip install 'braid-flow[ray]'"
            ) from exc
        # Keyed by cluster too: a handle from a Ray this process has since left is dead.
        where = (self.name, self.namespace, ray.get_runtime_context().gcs_address)
        cached = _actors.get(where)
        if cached is None:
            cls = ray.remote(num_cpus=0)(LockTable)
            cached = cls.options(
                name=self.name, namespace=self.namespace, get_if_exists=True, lifetime="detached"
            ).remote()
            _actors[where] = cached
        return cached

    def _call(self, method: str, *args: Any) -> Any:
        import ray

        return ray.get(getattr(self._table(), method).remote(*args))

    def acquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        """Take the lock in the actor, polling while another holds it; False on time-out."""
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        pause = 0.005
        while not self._call("try_acquire", key, holder, hold_timeout):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.1)
        return True

    def release_lock(self, key: str, holder: str) -> None:
        """Release ``holder``'s lock; ``ValueError`` if it does not hold it."""
        if not self._call("release", key, holder):
            raise ValueError(f"{holder!r} does not hold the lock on {key!r}")

    def is_locked(self, key: str) -> bool:
        """Whether anyone on the cluster holds the lock on ``key``."""
        return self._call("holder", key) is not None

    def is_lock_holder(self, key: str, holder: str) -> bool:
        """Whether ``holder`` holds the lock on ``key``."""
        return self._call("holder", key) == holder

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """Poll until ``key`` is free; False if still locked after ``timeout`` seconds."""
        return poll_until_free(lambda: self.is_locked(key), timeout, 0.005, 0.1)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, RayLockManager)
            and other.name == self.name
            and other.namespace == self.namespace
        )

    def __hash__(self) -> int:
        return hash((self.name, self.namespace))

    def __repr__(self) -> str:
        return f"RayLockManager(name={self.name!r}, namespace={self.namespace!r})"
