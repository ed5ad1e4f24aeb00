"""Where and when Ray runs with a time-out started, so the driver can bound them.

Ray tells the driver nothing between submitting a task and its end.  A run with a
``timeout_seconds`` therefore announces its start to a small actor (no CPU) placed on
the driver's own node, so a node that stops answering cannot take the announcements
with it::

    driver                                  the driver's node           a Ray worker
    ------                                  -----------------           ------------
    dispatch(run with a time-out)
      execute.remote(..., starts=<board name>, key=<run id>)   ------->  announce(board, key)
                                            StartBoard.started_many <--  a batch per worker
                                                                         process every FLUSH s
    StartWatch thread, every POLL s:
      StartBoard.take() -> [(key, where)] -> runner: deadline = now + limit + GRACE
                                             (braid.adapters.overdue)

The board lives as long as the runner that made it; only runners that dispatch a
run with a time-out make one, or runners of a flow with a time-out: there every run
announces its start, so the runs the flow's time-out leaves running are named with
their node and worker process.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import ray

__all__ = ["StartWatch", "announce"]

#: how often the driver collects announcements (they only start a deadline's clock)
POLL = 0.5
#: how often a worker process sends the starts it noted (one actor call per board)
FLUSH = 0.1


class StartBoard:
    """The actor runs announce their start to (one per runner, on the driver's node)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, float]] = []

    def started(self, key: str, where: str, at: float) -> None:
        self.seen.append((key, where, at))

    def started_many(self, starts: list[tuple[str, str, float]]) -> None:
        self.seen.extend(starts)

    def take(self) -> list[tuple[str, str, float]]:
        seen, self.seen = self.seen, []
        return seen


_remote_board = ray.remote(num_cpus=0, max_restarts=0)(StartBoard)


class StartWatch:
    """A runner's board and the thread that hands its announcements to ``on_started``."""

    def __init__(self, on_started: Callable[[str, str], None]) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.name = f"braid-starts-{uuid.uuid4().hex[:16]}"
        here = ray.get_runtime_context().get_node_id()
        self._board = _remote_board.options(
            name=self.name,
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False),
        ).remote()
        self._on_started = on_started
        self._stopped = threading.Event()
        self._collecting = threading.Lock()
        self._thread = threading.Thread(target=self._poll, name="braid-ray-starts", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stopped.wait(POLL):
            self.collect()

    def collect(self, timeout: float = 5) -> None:
        """Hand the announcements the board holds now to ``on_started``, waiting at most
        about ``timeout`` seconds in all (for the board, and for a collect under way)."""
        deadline = time.monotonic() + timeout
        if not self._collecting.acquire(timeout=timeout):
            return  # the poller is collecting (a loaded Ray can take seconds): it hands them
        try:
            left = max(0.05, deadline - time.monotonic())
            try:
                seen = ray.get(self._board.take.remote(), timeout=left)
            except Exception:  # noqa: BLE001 - Ray going away; the engine's limit still holds
                return
            for key, where, _ in seen:
                self._on_started(key, where)
        finally:
            self._collecting.release()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not threading.current_thread():
            self._thread.join(6)
        try:
            ray.kill(self._board)
        except Exception:  # noqa: BLE001 - it dies with the driver's job anyway
            pass


_boards: dict[str, Any] = {}
_pending: dict[str, list[tuple[str, str, float]]] = {}  # board -> starts not yet sent
_pending_lock = threading.Lock()
_flusher: threading.Thread | None = None
_where: str | None = None


def announce(board: str, key: str) -> None:
    """On a Ray worker: note for the driver's board that run ``key`` starts here, now.

    Starts are sent in batches, one actor call per board every :data:`FLUSH` seconds
    from a thread of this worker process, so announcing costs a run a list append.
    """
    global _flusher, _where
    try:
        if _where is None:
            _where = f"node {ray.util.get_node_ip_address()} (worker pid {os.getpid()})"
        with _pending_lock:
            _pending.setdefault(board, []).append((key, _where, time.time()))
            if _flusher is None:
                _flusher = threading.Thread(target=_flush_loop, name="braid-starts", daemon=True)
                _flusher.start()
    except Exception:  # noqa: BLE001 - the engine's own time-out still applies
        pass


def _flush_loop() -> None:
    while True:
        time.sleep(FLUSH)
        with _pending_lock:
            batches = list(_pending.items())
            _pending.clear()
        for board, starts in batches:
            try:
                handle = _boards.get(board)
                if handle is None:
                    if len(_boards) > 64:
                        _boards.clear()
                    handle = _boards[board] = ray.get_actor(board)
                handle.started_many.remote(starts)
            except Exception:  # noqa: BLE001 - the board is gone (its runner stopped)
                pass
