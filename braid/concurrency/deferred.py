"""Releases held back to travel with the next request, so a slot costs one round trip.

A remote backend (Dask, Ray) gives a slot back by a message to where the limit lives.
Sending it at once costs a message per slot on top of the request that takes the next
one.  Instead, a release waits here a moment: the next request this process makes for
the same limit takes it along (``take``), and one that no request took within
``delay`` seconds is sent on its own by a thread (``send``).  The caller decides when a
release must not wait at all (the limit was full: someone may be waiting for it).

::

    release ──► defer(key, target, token) ──► pending[key] = (target, [tokens], since)
    request ──► take(key, target) ──────────► the tokens, sent with the request
            or  take_one(key, target) ──────► one token, held again: no request at all
    thread  ──► send(target, tokens) ───────► those pending for ``delay`` seconds

A token held back is still counted where the limit lives, so a backend may hand it to
its next request in this process instead of sending anything (``take_one``), as long as
its last answer from there said the limit had room, and is recent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable

__all__ = ["DeferredReleases"]

logger = logging.getLogger("braid.concurrency")

#: seconds the sending thread stays after its last release went out
_LINGER = 1.0


class DeferredReleases:
    """Releases per limit waiting to be taken along by a request, or sent by a thread.

    ``send(target, tokens)`` sends one message and must not wait for an answer; it is
    called from the thread, and from ``defer`` and ``take`` for releases that cannot wait
    (``target`` is what the request goes to: an actor, a scheduler's semaphore; two
    targets are the same if equal).
    """

    def __init__(
        self, send: Callable[[object, list[Hashable]], None], delay: float, thread_name: str
    ) -> None:
        self._send = send
        self.delay = delay
        self._thread_name = thread_name
        self._changed = threading.Condition()
        self._pending: dict[Hashable, tuple[object, list[Hashable], float]] = {}
        self._thread: threading.Thread | None = None
        self._idle = False  # the thread waits with nothing pending: a new release wakes it
        self._closed = False

    def defer(self, key: Hashable, target: object, token: Hashable) -> None:
        """Hold ``token`` back for the next request for ``key``, or send it at once if
        closed (or if ``key`` now goes to another target: the earlier ones go first)."""
        with self._changed:
            pending = self._pending.get(key)
            if pending is not None and pending[0] == target and not self._closed:
                pending[1].append(token)
                return
            if pending is None and not self._closed:
                self._pending[key] = (target, [token], time.monotonic())
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, daemon=True, name=self._thread_name
                    )
                    self._thread.start()
                elif self._idle:
                    self._changed.notify()
                return
            earlier = self._pending.pop(key, None)
        if earlier is not None:
            self._send(earlier[0], earlier[1])
        self._send(target, [token])

    def take(self, key: Hashable, target: object) -> list[Hashable]:
        """Return the tokens held back for ``key`` (now sent with a request to ``target``);
        ones for another target are sent on their own."""
        with self._changed:
            pending = self._pending.pop(key, None)
        if pending is None:
            return []
        if pending[0] != target:
            self._send(pending[0], pending[1])
            return []
        return pending[1]

    def take_one(self, key: Hashable, target: object) -> Hashable | None:
        """Return the token held back last for ``key`` (the caller holds it again: its slot
        was never given back where the limit lives), or None; the rest stay held back."""
        with self._changed:
            pending = self._pending.get(key)
            if pending is None or pending[0] != target:
                return None
            token = pending[1].pop()
            if not pending[1]:
                del self._pending[key]
            return token

    def _run(self) -> None:
        idle_since = time.monotonic()
        while True:
            due = []
            with self._changed:
                now = time.monotonic()
                if self._closed:
                    return
                if not self._pending:
                    if now - idle_since >= _LINGER:
                        self._thread = None
                        return
                    self._idle = True
                    self._changed.wait(_LINGER - (now - idle_since))
                    self._idle = False
                    continue
                idle_since = now
                first = min(since for _, _, since in self._pending.values())
                if first + self.delay > now:
                    self._changed.wait(first + self.delay - now)
                    continue
                for key in [k for k, (_, _, t) in self._pending.items() if t + self.delay <= now]:
                    target, tokens, _ = self._pending.pop(key)
                    due.append((target, tokens))
            for target, tokens in due:
                try:
                    self._send(target, tokens)
                except Exception:  # noqa: BLE001 - unsent, the leases expire on their own
                    logger.warning("could not send %d release(s)", len(tokens), exc_info=True)

    def close(self) -> list[tuple[object, list[Hashable]]]:
        """Stop the thread and return what is held back, as (target, tokens), for the
        caller to send; later releases are sent at once."""
        with self._changed:
            self._closed = True
            pending, self._pending = list(self._pending.values()), {}
            thread, self._thread = self._thread, None
            self._changed.notify_all()
        if thread is not None:
            thread.join()
        return [(target, tokens) for target, tokens, _ in pending]
