"""A timer thread: calls a function for each item once the item's time has come.

The run table waits out retry delays with one; the Dask and Ray runners bound a silent
worker's runs with another.  One thread per timer, started with it; items wait in a
heap ordered by time (then by arrival), so thousands of waiting items cost no threads.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Timer"]

T = TypeVar("T")

_log = logging.getLogger("braid.timers")


class Timer(Generic[T]):
    """Calls ``fire(item)`` on its own daemon thread once ``time.monotonic()`` reaches the
    time the item was added with; ``stop()`` ends the thread and returns the items that
    were still waiting.

    An exception from ``fire`` is logged with its traceback and the timer goes on with
    the next item.
    """

    def __init__(self, fire: Callable[[T], object], name: str) -> None:
        self._fire = fire
        self._heap: list[tuple[float, int, T]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def add(self, when: float, item: T) -> bool:
        """Fire ``item`` at monotonic time ``when``; False if the timer has stopped (the
        item will never fire: the caller deals with it)."""
        with self._cond:
            if self._stopped:
                return False
            heapq.heappush(self._heap, (when, next(self._seq), item))
            self._cond.notify()
            return True

    def stop(self, join_timeout: float | None = None) -> list[T]:
        """Stop the timer and return the items still waiting; waits for a ``fire`` in
        progress at most ``join_timeout`` seconds (None: until it returns)."""
        with self._cond:
            self._stopped = True
            left = [entry[2] for entry in self._heap]
            self._heap.clear()
            self._cond.notify()
        if self._thread is not threading.current_thread():
            self._thread.join(join_timeout)
        return left

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    if self._heap and self._heap[0][0] <= time.monotonic():
                        break
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(wait)
                if self._stopped:
                    return
                item = heapq.heappop(self._heap)[2]
            try:
                self._fire(item)
            except Exception:  # noqa: BLE001 - one item's trouble must not stop the timer
                _log.exception("braid timer %r: handling a due item failed", self._thread.name)
