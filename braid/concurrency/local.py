"""In-process limits: threads of one process share them.

One lock guards every name's counts; each name has its own condition variable, notified
when its slots come back.  Decaying slots need no timer: each name keeps the time at
which everything it gave out will have decayed, and a rate request computes its wait
from it (see ``rate_delay``).

A slot nothing contends for is taken and given back without the lock.  Each name is a
``SlotPool``: a list whose items are free slots already counted out of the limit, so
that ``pop()`` takes one and ``append()`` gives one back, each atomic under the GIL::

    held (under the lock) = slots of acquire() tokens + slots out in the pool's circle
    the pool's circle     = its items (free) + slots popped from it and not yet back
    take()    pop()  -- IndexError -->  the lock: no one waiting, room left?  held += k,
                                        k - 1 of them appended (the next takes are free)
    release() append(), then, if anyone waits, the lock: the items counted off held
                (settle) and the waiters woken
    acquire() the lock: waiting += 1, settle, wait until held + occupy <= limit

A waiter counts itself in ``waiting`` and settles, under the lock, before it sleeps; a
release appends and then reads ``waiting``: either the settle sees the slot, or the
release sees the waiter and wakes it under the lock.  While anyone waits (and once the
limits are closed, which counts as a waiter that never leaves) nothing is appended under
the lock, so every free slot reaches the waiters.
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

__all__ = ["SLOT", "FreeSlots", "LocalLimits", "SlotPool"]

#: a free slot in a ``SlotPool`` (any item would do: only their number counts)
SLOT = 1
_BATCH = 32  # slots a take that finds the pool empty counts out at once (k above)
_REFILL = [SLOT] * (_BATCH - 1)


class SlotPool(list[int]):
    """One name's counts in a ``LocalLimits``; its items are free slots anyone may take
    without the lock (``pop()``: ``IndexError`` when none, then call ``take()``) and give
    back (``append(SLOT)``, then ``wake()`` if ``waiting``); every attribute is changed
    with the limits' lock held."""

    __slots__ = ("limit", "held", "tokens", "waiting", "tat", "ready", "closed", "lock")

    def __init__(self, limit: Limit, lock: threading.Lock) -> None:
        super().__init__()
        self.closed = False
        self.limit = limit
        #: slots counted out of the limit: acquire()'s tokens and the pool's circle
        self.held = 0
        self.tokens: dict[int, int] = {}
        #: threads waiting for slots in acquire() (+1 once closed: see the module)
        self.waiting = 0
        self.tat = 0.0
        self.lock = lock
        self.ready = threading.Condition(lock)

    def take(self) -> bool:
        """Hold one slot if one is free now and no one waits for it (True), else hold
        nothing (False: the caller waits in line)."""
        if not self.waiting:
            try:
                self.pop()
                return True
            except IndexError:
                pass
        with self.lock:
            return self.take_counted()

    def take_counted(self) -> bool:
        """``take()`` with the lock held: a free item, else room counted out of the limit
        (and up to ``_BATCH - 1`` more slots put in the pool for the next takes)."""
        if self.waiting or self.closed:
            return False
        try:
            self.pop()  # given back since the caller looked
            return True
        except IndexError:
            pass
        room = self.limit.limit - self.held
        if room <= 0:
            return False
        if room > _BATCH:
            room = _BATCH
        self.held += room
        if room > 1:
            self.extend(_REFILL[: room - 1])
        return True

    def release(self) -> None:
        """Give back the slot one successful ``take()`` held (without the lock while no one
        waits for one)."""
        self.append(SLOT)
        if self.waiting:
            self.wake()

    def wake(self) -> None:
        """Count the free slots off ``held`` and wake the waiters (a slot was given back
        while someone waits)."""
        with self.lock:
            self.settle()
            self.ready.notify_all()

    def settle(self) -> int:
        """Count the free slots off ``held`` (with the lock held); return ``held``."""
        pop = self.pop
        while self:
            try:
                pop()  # one by one: a taker without the lock may pop meanwhile
            except IndexError:
                break
            self.held -= 1
        return self.held

    def idle(self, now: float) -> bool:
        """Whether nothing is held, no one waits and every decaying slot has decayed (with
        the lock held): the name may then take another ``Limit``."""
        return not self.settle() and not self.waiting and self.tat <= now


class LocalLimits:
    """Limits counted in this process (the backend of threads, and the state behind the
    process coordinator); a name first used with one ``Limit`` keeps it while in use."""

    kind = "local"
    in_process = True  # requests never leave this process: cheap to try without waiting

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: dict[str, SlotPool] = {}
        self._tokens = itertools.count(1)
        self._closed = False
        self._key = (uuid.uuid4().hex,)
        register_backend(self.kind, self._key, self)

    def handle(self, limits: LimitTable | None = None) -> LimitsHandle:
        """Return a handle usable in this process only (threads of a thread pool)."""
        return LimitsHandle(self.kind, self._key, limits)

    def _name(self, name: str, limit: Limit) -> SlotPool:
        state = self._names.get(name)
        if state is None:
            state = self._names[name] = SlotPool(limit, self._lock)
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
                if not state.closed:
                    state.closed = True
                    state.waiting += 1  # slots given back from now on are settled at once
                    state.settle()
                state.ready.notify_all()
        unregister_backend(self.kind, self._key, self)


class FreeSlots:
    """One slot of each of some names of a ``LocalLimits``, counted without a token:
    ``take()`` holds them if every one is free now and no one waits for it (True), else
    holds nothing (False, and the caller waits in line); ``release()`` gives back what one
    successful ``take()`` held, and the caller calls it exactly once per take.

    ``pool`` is the name's ``SlotPool`` when there is one name (its ``take()`` and
    ``release()`` are these), else None."""

    __slots__ = ("_lock", "_pools", "pool")

    def __init__(self, lock: threading.Lock, pools: list[SlotPool]) -> None:
        self._lock = lock
        self._pools = pools
        self.pool = pools[0] if len(pools) == 1 else None

    def take(self) -> bool:
        """Hold one slot of every name now, or nothing (see the class)."""
        if self.pool is not None:
            return self.pool.take()
        taken: list[SlotPool] = []
        with self._lock:  # no waiter can come while it is held: nothing to wake below
            for pool in self._pools:
                if not pool.take_counted():
                    for back in taken:
                        back.append(SLOT)
                    return False
                taken.append(pool)
        return True

    def release(self) -> None:
        """Give back the slots one successful ``take()`` held."""
        for pool in self._pools:
            pool.release()
