"""Locks in this process's memory: for tasks on threads of one process.

Every ``MemoryLockManager()`` in a process is the same object, and a copy sent to
another process becomes that process's one: memory locks never span processes (use
:class:`~braid.locking.filesystem.FileSystemLockManager` or a backend's manager).
"""

from __future__ import annotations

import threading
import time
from typing import Any

__all__ = ["MemoryLockManager"]


class MemoryLockManager:
    """Per-process locks on keys, waited on with a condition variable (no polling)."""

    _instance: MemoryLockManager | None = None
    _create = threading.Lock()

    def __new__(cls) -> MemoryLockManager:
        with cls._create:
            if cls._instance is None:
                inst = super().__new__(cls)
                inst._cond = threading.Condition()
                inst._held = {}  # key -> (holder, lapses at monotonic time or None)
                cls._instance = inst
            return cls._instance

    _cond: threading.Condition
    _held: dict[str, tuple[str, float | None]]

    def __reduce__(self) -> tuple[Any, ...]:
        return (MemoryLockManager, ())

    def _current(self, key: str) -> str | None:
        entry = self._held.get(key)
        if entry is None:
            return None
        holder, lapses = entry
        if lapses is not None and time.monotonic() >= lapses:
            del self._held[key]
            self._cond.notify_all()
            return None
        return holder

    def acquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        """Take the lock on ``key`` for ``holder``; False if not free within
        ``acquire_timeout`` seconds."""
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        with self._cond:
            while True:
                current = self._current(key)
                if current is None or current == holder:
                    lapses = None if hold_timeout is None else time.monotonic() + hold_timeout
                    self._held[key] = (holder, lapses)
                    return True
                wait = self._wait_time(key, deadline)
                if wait is not None and wait <= 0:
                    return False
                self._cond.wait(wait)

    def _wait_time(self, key: str, deadline: float | None) -> float | None:
        now = time.monotonic()
        lapses = self._held[key][1]
        bounds = [t - now for t in (deadline, lapses) if t is not None]
        return min(bounds) if bounds else None

    def release_lock(self, key: str, holder: str) -> None:
        """Release ``holder``'s lock on ``key``; ``ValueError`` if it is not the holder."""
        with self._cond:
            if self._current(key) != holder:
                raise ValueError(f"{holder!r} does not hold the lock on {key!r}")
            del self._held[key]
            self._cond.notify_all()

    def is_locked(self, key: str) -> bool:
        """Whether someone holds an unlapsed lock on ``key``."""
        with self._cond:
            return self._current(key) is not None

    def is_lock_holder(self, key: str, holder: str) -> bool:
        """Whether ``holder`` holds the lock on ``key``."""
        with self._cond:
            return self._current(key) == holder

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """Wait until ``key`` is free; False if still locked after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._current(key) is not None:
                wait = self._wait_time(key, deadline)
                if wait is not None and wait <= 0:
                    return False
                self._cond.wait(wait)
            return True

    def __repr__(self) -> str:
        return "MemoryLockManager()"
