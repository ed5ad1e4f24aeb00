"""Tag limits: a task run whose tags include a declared name takes one slot of it while
it executes.

Tag slots are counted apart from ``concurrency()`` slots of the same name (on the
backend they are named ``tag:<name>``, as Prefect names its tag limits), with the
same declared ``Limit``, so a tagged task may itself call ``concurrency(name)``
without waiting on its own slot.

The run table calls these from its own threads, never from a worker slot:

- ``limited_tags(tags, handle)``: which tags are limited (no I/O) — nothing to do when
  empty;
- ``try_acquire_for_tags(tags, handle)``: take every slot now or nothing;
- ``TagGate(handle).when_available(tags, callback)``: call ``callback(lease)`` once every
  slot is held, from a gate thread, so a run waiting for a slot holds no worker;
- ``acquire_for_tags(tags, handle, timeout)``: block until held.

``lease.release()`` gives the slots back on every ending of the run.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Iterable

from braid import errors
from braid.concurrency.backend import (
    Lease,
    LimitsHandle,
    current_backend,
    hold_slots,
    timeout_error,
)
from braid.concurrency.limits import Limit, LimitTable, declared_limits

__all__ = [
    "TAG_PREFIX",
    "TagGate",
    "TagWaiter",
    "acquire_for_tags",
    "limited_tags",
    "tag_pairs",
    "try_acquire_for_tags",
]

TAG_PREFIX = "tag:"
logger = logging.getLogger("braid.concurrency")
_SLICE = 0.5  # seconds a gate thread waits before looking for cancellations again


def _table(handle: LimitsHandle | None) -> LimitTable:
    return handle.limits if handle is not None else declared_limits()


def limited_tags(tags: Iterable[str], handle: LimitsHandle | None) -> tuple[str, ...]:
    """Return the tags that have a declared limit, sorted (no I/O)."""
    table = _table(handle)
    return tuple(sorted(tag for tag in set(tags) if tag in table))


def tag_pairs(tags: Iterable[str], handle: LimitsHandle | None) -> list[tuple[str, Limit]]:
    """Return the (backend name, Limit) pairs of the limited tags among ``tags``, sorted;
    raises ``SlotsExceedLimit`` for a tag whose limit is 0 (no I/O)."""
    table = _table(handle)
    pairs = []
    for tag in limited_tags(tags, handle):
        limit = table[tag]
        if limit.limit < 1:
            raise errors.SlotsExceedLimit(
                f"tag {tag!r} has a concurrency limit of {limit.limit}: a run with this tag "
                "can never start"
            )
        pairs.append((TAG_PREFIX + tag, limit))
    return pairs


def _backend(handle: LimitsHandle | None):
    if handle is not None:
        return handle.backend()
    return current_backend()


def acquire_for_tags(
    tags: Iterable[str], handle: LimitsHandle | None, timeout: float | None = None
) -> Lease | None:
    """Hold one slot of every limited tag and return the lease, or None when no tag is
    limited; raises ``ConcurrencyTimeout`` (holding nothing) after ``timeout`` seconds."""
    pairs = tag_pairs(tags, handle)
    if not pairs:
        return None
    lease = hold_slots(_backend(handle), pairs, 1, timeout)
    if lease is None:
        raise timeout_error([n for n, _ in pairs], timeout, "tag limits")
    return lease


def try_acquire_for_tags(tags: Iterable[str], handle: LimitsHandle | None) -> Lease | None:
    """Hold one slot of every limited tag now and return the lease (holding nothing when
    no tag is limited), or return None, holding nothing, if any slot is taken."""
    pairs = tag_pairs(tags, handle)
    if not pairs:
        return Lease(None, [], 1)
    return hold_slots(_backend(handle), pairs, 1, 0)


class TagWaiter:
    """A run waiting in a ``TagGate``; ``cancel()`` withdraws it."""

    __slots__ = ("_callback", "_lock", "_state", "tags")

    def __init__(self, tags: tuple[str, ...], callback: Callable[[Lease | None], object]):
        self.tags = tags
        self._callback = callback
        self._lock = threading.Lock()
        self._state = "waiting"

    def cancel(self) -> bool:
        """Withdraw the request; True if the callback will never be called, False if it
        already was (the callback's owner then holds, and releases, the lease)."""
        with self._lock:
            if self._state == "waiting":
                self._state = "cancelled"
            return self._state == "cancelled"

    @property
    def waiting(self) -> bool:
        """True until the callback is called or the request is cancelled."""
        return self._state == "waiting"

    def grant(self, lease: Lease | None) -> bool:
        """Hand ``lease`` to the callback; False (lease released) if cancelled meanwhile."""
        with self._lock:
            if self._state != "waiting":
                if lease is not None:
                    lease.release()
                return False
            self._state = "granted"
        try:
            self._callback(lease)
        except Exception:
            logger.exception("tag-limit callback %r raised", self._callback)
        return True


class TagGate:
    """Grants tag slots to waiting runs in arrival order, from one thread per distinct set of
    limited tags (threads end when their queue is empty); ``close()`` cancels the rest."""

    def __init__(self, handle: LimitsHandle | None) -> None:
        self._handle = handle
        self._lock = threading.Lock()
        self._queues: dict[tuple, collections.deque[TagWaiter]] = {}
        self._threads: dict[tuple, threading.Thread] = {}
        self._closed = False
        #: requests in the queues (cancelled ones included until their turn comes): while
        #: any, a slot must be asked for through the gate, so no one jumps the line
        self.queued = 0

    def when_available(
        self, tags: Iterable[str], callback: Callable[[Lease | None], object]
    ) -> TagWaiter:
        """Call ``callback(lease)`` once one slot of every limited tag is held (at once, in
        this thread, with ``None`` when no tag is limited, or with a lease taken without
        waiting); the callback must see that ``lease.release()`` is called."""
        pairs = tag_pairs(tags, self._handle)
        waiter = TagWaiter(tuple(n for n, _ in pairs), callback)
        if not pairs:
            waiter.grant(None)
            return waiter
        backend = _backend(self._handle)
        key = tuple(pairs)
        with self._lock:
            if self._closed:
                raise errors.LimitsUnavailable("this tag gate was closed")
            queue = self._queues.setdefault(key, collections.deque())
            queue_empty = not queue
        if queue_empty and getattr(backend, "in_process", False):
            lease = hold_slots(backend, pairs, 1, 0)
            if lease is not None:
                waiter.grant(lease)
                return waiter
        with self._lock:
            queue.append(waiter)
            self.queued += 1
            if key not in self._threads:
                thread = threading.Thread(
                    target=self._serve, args=(key, backend), daemon=True, name="braid-limits-gate"
                )
                self._threads[key] = thread
                thread.start()
        return waiter

    def _serve(self, key: tuple, backend) -> None:
        queue = self._queues[key]
        while True:
            with self._lock:
                while queue and not queue[0].waiting:
                    queue.popleft()
                    self.queued -= 1
                if not queue or self._closed:
                    del self._threads[key]
                    return
                waiter = queue[0]
            # Wait in slices so a cancelled head of the queue or close() is seen soon.
            lease = hold_slots(backend, list(key), 1, _SLICE)
            if lease is None:
                continue
            with self._lock:
                if queue and queue[0] is waiter:
                    queue.popleft()
                    self.queued -= 1
            waiter.grant(lease)

    def close(self) -> None:
        """Cancel every waiting request and wait for the gate's threads to end."""
        with self._lock:
            self._closed = True
            waiters = [w for q in self._queues.values() for w in q]
            threads = list(self._threads.values())
        for waiter in waiters:
            waiter.cancel()
        for thread in threads:
            thread.join()

    def __enter__(self) -> TagGate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
