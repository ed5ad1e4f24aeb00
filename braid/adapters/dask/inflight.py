"""Runs a DaskTaskRunner handed to the cluster, until it has seen how each ended.

A run normally ends by its *header*: the small event its worker sends before the Dask
task returns (see :mod:`braid.adapters.dask.worker`).  The client's event loop hands
the header over here, and one settler thread ends the run (never the event loop: ending
a run runs callbacks that may wait on the cluster).  This costs one queue put per run,
where a ``distributed.Future`` done-callback costs a wake-up of the event loop, a
coroutine and a hop through Dask's callback thread pool.

A run whose header never comes (Dask erred or cancelled its key, its workers kept
dying, or the event was lost) is found by a sweep: the settler thread visits the runs
still in flight in turn, at most :data:`SWEEP_BATCH` every :data:`SWEEP_SECONDS`, and
ends those whose Dask future is done without a header, from the future itself (with
more runs in flight than that, a full round takes proportionally longer).
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from braid.core.runner import Run

__all__ = ["InFlight", "SWEEP_BATCH", "SWEEP_SECONDS"]

_log = logging.getLogger("braid.dask")

#: how often the settler looks for runs whose Dask future ended without a header
SWEEP_SECONDS = 0.25
#: how many in-flight runs one sweep looks at (the next sweep goes on from there): a
#: visit costs the driver about a microsecond, and a long chain keeps thousands in flight
SWEEP_BATCH = 1000
#: Dask future statuses that end a run without a header ("lost" does not: Dask
#: computes the key again while this client holds it, and a header follows)
_ENDED = ("error", "cancelled")

Header = Any  # bytes, or (bytes, bytes) for a small result; None: fetch from Dask


class InFlight:
    """The runs of one runner between dispatch and end; ``end(run, header)`` is called
    once per run, on the settler thread (``header`` None: read the Dask future).

    Call :meth:`add` before the run's Dask future exists and :meth:`submitted` once it
    is set on the run's future; :meth:`header` from the event handler; :meth:`stop`
    when the runner stops (runs still in flight are left to the run table).
    """

    def __init__(self, end: Callable[[Run, Header], None]) -> None:
        self._end = end
        self._lock = threading.Lock()
        self._runs: dict[str, Run] = {}
        self._early: dict[str, Header] = {}  # headers that came before the Dask future
        self._ring: collections.deque[str] = collections.deque()
        self._finished_seen: set[str] = set()
        self._queue: queue.SimpleQueue[tuple[Run, Header] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="braid-dask-settle", daemon=True)
        self._thread.start()

    def add(self, key: str, run: Run) -> None:
        """Track ``run`` under its Dask ``key`` (before handing it to Dask)."""
        with self._lock:
            self._runs[key] = run
        self._ring.append(key)

    def discard(self, key: str) -> None:
        """Stop tracking a run Dask did not accept (the caller ends it)."""
        with self._lock:
            self._runs.pop(key, None)
            self._early.pop(key, None)

    def submitted(self, key: str) -> None:
        """The run's Dask future is now set: end it if its header came meanwhile."""
        with self._lock:
            header = self._early.pop(key, None)
            run = self._runs.pop(key, None) if header is not None else None
        if run is not None:
            self._queue.put((run, header))

    def header(self, key: str, header: Header) -> None:
        """A run's header arrived (event loop thread): end the run on the settler thread."""
        with self._lock:
            run = self._runs.get(key)
            if run is None:  # ended already (a rerun's second header), or not ours
                return
            if getattr(run.future, "dask_future", None) is None:
                self._early[key] = header  # submit has not returned yet
                return
            del self._runs[key]
        self._queue.put((run, header))

    def stop(self, timeout: float = 5) -> None:
        """End the settler thread (after what is queued); runs in flight stay as they are."""
        self._queue.put(None)
        self._thread.join(timeout)

    # -- the settler thread ---------------------------------------------------------------
    def _loop(self) -> None:
        next_sweep = time.monotonic() + SWEEP_SECONDS
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, next_sweep - time.monotonic()))
            except queue.Empty:
                pass
            else:
                if item is None:
                    return
                self._call(*item)
            if time.monotonic() >= next_sweep:
                for run in self._sweep():
                    self._call(run, None)
                next_sweep = time.monotonic() + SWEEP_SECONDS

    def _call(self, run: Run, header: Header) -> None:
        try:
            self._end(run, header)
        except Exception:  # noqa: BLE001 - one run's failure must not stop the others
            _log.exception("braid: ending a Dask run failed")

    def _sweep(self) -> list[Run]:
        """Runs whose Dask future ended without a header, among the next batch in turn."""
        ring, ended = self._ring, []
        for _ in range(min(len(ring), SWEEP_BATCH)):
            key = ring.popleft()
            run = self._runs.get(key)
            if run is None:
                self._finished_seen.discard(key)
                continue  # ended by its header
            d = getattr(run.future, "dask_future", None)
            status = d.status if d is not None else "pending"
            # "finished" with no header: its header is lost if it has not come by the
            # next visit (a worker sends it within BATCH_SECONDS of the run's end, on the
            # stream that reports the key finished)
            if status in _ENDED or (status == "finished" and key in self._finished_seen):
                with self._lock:
                    run = self._runs.pop(key, None)
                self._finished_seen.discard(key)
                if run is not None:
                    ended.append(run)
                continue
            if status == "finished":
                self._finished_seen.add(key)
            ring.append(key)
        return ended
