"""In-process limits: threads of one process share them.

One lock guards every name; each name has its own condition variable, notified when
its slots come back.  Decaying slots need no timer: each name keeps the time at which
everything it gave out will have decayed, and a rate request computes its wait from
it (see ``rate_delay``).
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Hashable, Sequence

from braid import errors
from braid.concurrency.backend import (
    LimitsHandle,
    rate_delay,
    register_backend,
    unregister_backend,
)
from braid.concurrency.limits import Limit, LimitTable

__all__ = ["FreeSlots", "LocalLimits"]


class _Name:
    """One name's counts; every method is called with the limits' lock held."""

    __slots__ = ("limit", "held", "tokens", "waiting", "tat", "ready", "closed", "returned")

    def __init__(self, limit: Limit, lock: threading.Lock) -> None:
        self.closed = False
        self.limit = limit
        self.held = 0
        self.tokens: dict[int, int] = {}
        self.waiting = 0
        self.tat = 0.0
        self.ready = threading.Condition(lock)
        #: slots given back by FreeSlots.release without the lock (one item each), while
        #: no one waited: counted off ``held`` by the next holder of the lock
        self.returned: list[int] = []

    def settle(self) -> int:
        """Count the slots given back without the lock off ``held``; return ``held``."""
        returned = self.returned
        if returned:
            n = len(returned)
            del returned[:n]  # appends made meanwhile stay, at the end
            self.held -= n
        return self.held

    def idle(self, now: float) -> bool:
        return not self.settle() and not self.waiting and self.tat <= now


class LocalLimits:
    """Limits counted in this process (the backend of threads, and the state behind the
    process coordinator); a name first used with one ``Limit`` keeps it while in use."""

    kind = "local"
    in_process = True  # requests never leave this process: cheap to try without waiting

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: dict[str, _Name] = {}
        self._tokens = itertools.count(1)
        self._closed = False
        self._key = (uuid.uuid4().hex,)
        register_backend(self.kind, self._key, self)

    def handle(self, limits: LimitTable | None = None) -> LimitsHandle:
        """Return a handle usable in this process only (threads of a thread pool)."""
        return LimitsHandle(self.kind, self._key, limits)

    def _name(self, name: str, limit: Limit) -> _Name:
        state = self._names.get(name)
        if state is None:
            state = self._names[name] = _Name(limit, self._lock)
        elif state.limit is not limit and state.limit != limit:
            if not state.idle(time.monotonic()):
                raise errors.LimitRedeclared(
                    f"concurrency limit {name!r} is in use here as {state.limit!r}; it cannot "
                    f"be {limit!r} at the same time"
                )
            state.limit = limit
        return state

    def _check_open(self) -> None:
        if self._closed:
            raise errors.LimitsUnavailable("these in-process limits were closed")

    def acquire(
        self, name: str, limit: Limit, occupy: int, timeout: float | None
    ) -> Hashable | None:
        """Hold ``occupy`` slots of ``name``; None if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._check_open()
            state = self._name(name, limit)
            state.waiting += 1
            try:
                while state.settle() + occupy > state.limit.limit:
                    if deadline is None:
                        state.ready.wait()
                    else:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            return None
                        state.ready.wait(remaining)
                    self._check_open()
            finally:
                state.waiting -= 1
            token = next(self._tokens)
            state.tokens[token] = occupy
            state.held += occupy
            return token

    def release(self, name: str, token: Hashable) -> None:
        """Give back what ``token`` holds (a second release does nothing)."""
        with self._lock:
            state = self._names.get(name)
            occupy = state.tokens.pop(token, 0) if state is not None else 0
            if occupy:
                state.held -= occupy
                if state.waiting:  # no one waits on it otherwise
                    state.ready.notify_all()

    def slots(self, pairs: Sequence[tuple[str, Limit]]) -> FreeSlots:
        """Return the way to take one slot of every pair while each is free and no one
        waits for it (``take()``), and to give it back (``release()``): the run table's
        path for tag slots nothing contends for.  Raises ``LimitRedeclared`` if a name is
        in use with another ``Limit``."""
        with self._lock:
            self._check_open()
            return FreeSlots(self._lock, [self._name(name, limit) for name, limit in pairs])

    def reserve_rate(
        self, name: str, limit: Limit, occupy: int, max_wait: float | None
    ) -> float | None:
        """Take ``occupy`` decaying slots; return the wait, or None if over ``max_wait``."""
        with self._lock:
            self._check_open()
            now = time.monotonic()
            state = self._name(name, limit)
            delay, tat = rate_delay(state.tat, now, state.limit, occupy)
            if max_wait is not None and delay > max_wait:
                return None
            state.tat = tat
            return delay

    def close(self) -> None:
        """Refuse new requests and wake every waiter with ``LimitsUnavailable``."""
        with self._lock:
            self._closed = True
            for state in self._names.values():
                state.closed = True
                state.ready.notify_all()
        unregister_backend(self.kind, self._key, self)


class FreeSlots:
    """One slot of each of some names of a ``LocalLimits``, counted without a token:
    ``take()`` holds them if every one is free now and no one waits for it (True), else
    holds nothing (False, and the caller waits in line); ``release()`` gives back what one
    successful ``take()`` held, and the caller calls it exactly once per take."""

    __slots__ = ("_lock", "_states", "_one")

    def __init__(self, lock: threading.Lock, states: list[_Name]) -> None:
        self._lock = lock
        self._states = states
        self._one = states[0] if len(states) == 1 else None

    def take(self) -> bool:
        """Hold one slot of every name now, or nothing (see the class)."""
        one = self._one
        with self._lock:
            if one is not None:  # one tag: the common case, written out
                if one.returned:
                    one.settle()
                if one.waiting or one.closed or one.held >= one.limit.limit:
                    return False
                one.held += 1
                return True
            states = self._states
            for state in states:
                if state.waiting or state.closed or state.settle() >= state.limit.limit:
                    return False
            for state in states:
                state.held += 1
            return True

    def release(self) -> None:
        """Give back the slots one successful ``take()`` held.

        Without the lock while no one waits for a name: the slot goes on the name's
        ``returned`` list (an atomic append), counted by the next holder of the lock.  A
        waiter counts itself in ``waiting`` and then settles, under the lock, before it
        sleeps; this appends and then reads ``waiting``: either the waiter's settle sees
        the slot, or this sees the waiter and wakes it under the lock.
        """
        for state in self._states:
            state.returned.append(1)
            if state.waiting:
                with self._lock:
                    state.settle()
                    state.ready.notify_all()
