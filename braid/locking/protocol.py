"""The lock-manager interface: named locks on keys, each held by a named holder.

A holder is a string the caller makes up (a transaction or cache look-up uses a fresh
UUID), so a lock taken in one place can be checked or released by whoever knows the
holder.  ``hold_timeout`` bounds how long a lock outlives a holder that vanished.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ["LockManager", "poll_until_free"]


@runtime_checkable
class LockManager(Protocol):
    """What ``cache_policy.configure(lock_manager=...)`` and ``ResultStore(lock_manager=...)``
    accept; every method is safe to call from any thread."""

    def acquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        """Take the lock on ``key`` for ``holder``, waiting at most ``acquire_timeout``
        seconds (forever if None); True once held (also if ``holder`` already held it),
        False on time-out.  The lock lapses ``hold_timeout`` seconds after it was taken
        (never if None)."""
        ...

    def release_lock(self, key: str, holder: str) -> None:
        """Release ``holder``'s lock on ``key``; raises ``ValueError`` if ``holder`` does
        not hold it."""
        ...

    def is_locked(self, key: str) -> bool:
        """Whether someone holds an unlapsed lock on ``key``."""
        ...

    def is_lock_holder(self, key: str, holder: str) -> bool:
        """Whether ``holder`` holds the lock on ``key``."""
        ...

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """Wait until ``key`` is not locked; False if still locked after ``timeout`` s."""
        ...


def poll_until_free(
    is_locked: Callable[[], bool], timeout: float | None, first: float, most: float
) -> bool:
    """Call ``is_locked()`` until it says False, sleeping ``first`` seconds and doubling up
    to ``most``; True once free, False if still locked after ``timeout`` s (None: never)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = first
    while is_locked():
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, most)
    return True
