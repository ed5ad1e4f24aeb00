"""Runs whose worker stopped answering: the driver's bound on a task's ``timeout_seconds``.

The engine enforces a task's time-out on the worker.  A worker that no longer runs
anything (frozen, cut off, its machine gone) cannot: the scheduler may keep the task
``processing`` there until the worker's TTL, or for ever.  So a run with a time-out
announces when it starts on a worker (one small event), and the driver keeps a
deadline for it: the longest its attempts may take (time-outs and retry delays) plus
:data:`GRACE`.  A run still not final then ends FAILED ``TimedOut`` here, naming the
worker, and its Dask task is cancelled (its dependents end ``UpstreamFailed``).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["GRACE", "time_limit", "OverdueRuns"]

#: what the driver adds to a run's own limit before it stops waiting for the worker:
#: the header's trip back, a worker under load
GRACE = 3.0


def time_limit(task: Any) -> float | None:
    """The longest a run of ``task`` may take on its worker (every attempt and retry
    delay, jitter included), or None when it has no time-out or no known bound."""
    timeout = getattr(task, "timeout_seconds", None)
    if timeout is None:
        return None
    retries = task.retries or 0
    delays = task.retry_delay_seconds
    if callable(delays):
        try:
            delays = delays(retries)
        except Exception:  # noqa: BLE001 - no bound known: the engine's limit only
            return None
    if isinstance(delays, (list, tuple)):
        waits = (
            sum(float(delays[min(i, len(delays) - 1)]) for i in range(retries)) if delays else 0.0
        )
    else:
        waits = retries * float(delays or 0)
    waits *= 1 + float(task.retry_jitter_factor or 0)
    return (retries + 1) * float(timeout) + waits


class OverdueRuns:
    """One timer thread calling ``on_overdue(item)`` for items not ``discard``-ed by their
    deadline; stopped with the runner."""

    def __init__(self, on_overdue: Callable[[Any], None]) -> None:
        self._on_overdue = on_overdue
        self._heap: list[tuple[float, int, Any]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="braid-dask-overdue", daemon=True)
        self._thread.start()

    def add(self, deadline: float, item: Any) -> None:
        with self._cond:
            if not self._stopped:
                heapq.heappush(self._heap, (deadline, next(self._seq), item))
                self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()
        if self._thread is not threading.current_thread():
            self._thread.join(5)

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
                self._on_overdue(item)
            except Exception:  # noqa: BLE001 - one run's trouble must not stop the timer
                pass
