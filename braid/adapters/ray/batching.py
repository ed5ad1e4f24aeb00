"""Which runs share a Ray task, and when: a ``.map()``'s runs, and submits that queue up.

What one Ray task costs the driver (its submission and its completion callback) is
more than everything braid does for a run, so runs that would only wait in Ray's queue
anyway go in batches of up to ``remotes.MAX_BATCH`` (see :mod:`braid.adapters.ray.remotes`):

- ``dispatch_many`` (a ``.map()``): when the map has at least ``remotes.PER_CPU``
  batches per CPU of the cluster;
- ``offer`` (one ``.submit()``): when this runner already has more live runs than
  ``PER_CPU`` per CPU, the run waits here at most ``HOLD_SECONDS`` for others to join
  it (a full batch goes at once, from the submitting thread); otherwise it goes alone.

Only runs of one task with the same resources and retries share a task, and only runs
without upstreams, without a time limit the driver watches and without other Ray
options.  A run ended while it waited here (a cancelled flow) is never sent; a run
whose result another run is about to take (``send_holding``) is sent at once, so the
other takes it worker to worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from braid.adapters.overdue import time_limit
from braid.adapters.ray import remotes
from braid.core.runner import Run

__all__ = ["HOLD_SECONDS", "STOP_WAIT", "Batcher"]

#: longest a submitted run waits for others to share its Ray task
HOLD_SECONDS = 0.002
#: longest a stopping runner waits for held runs to be sent
STOP_WAIT = 10.0

logger = logging.getLogger("braid.ray")


class Batcher:
    """A runner's batches: ``runner`` sends them (``send_batch(key, runs)``) and single
    runs (``send_one(run)``), and says how many runs are live (``backlog()``)."""

    def __init__(self, runner: Any, cpus: int) -> None:
        self._runner = runner
        self._cpus = cpus
        self._held: dict[tuple, list[Run]] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def key(self, run: Run) -> tuple | None:
        """What runs sharing a Ray task with ``run`` must have in common, or None when
        it goes alone."""
        call = run.call
        if call is None or run.upstreams or self._runner.watches_starts:
            return None
        extra = call.extra or {}
        if extra.get("ray_options") or time_limit(call.task) is not None:
            return None
        hints = extra.get("resources")
        return (call.task.name, hints, extra.get("ray_max_retries", self._runner.max_retries))

    def dispatch_many(self, runs: Sequence[Run]) -> None:
        """Send a map's ready runs: in batches sized for the cluster, or one by one."""
        size = remotes.batch_size(len(runs), self._cpus)
        if size <= 1 or self._runner.watches_starts:
            for run in runs:
                self._runner.send_one(run)
            return
        groups: dict[tuple, list[Run]] = {}
        for run in runs:
            key = self.key(run)
            if key is None:
                self._runner.send_one(run)
                continue
            group = groups.setdefault(key, [])
            group.append(run)
            if len(group) == size:
                self._send(key, groups.pop(key))
        for key, rest in groups.items():
            self._send(key, rest)

    def offer(self, run: Run) -> bool:
        """Hold ``run`` to share a Ray task with the next submits (True), or leave it to
        be sent alone now (False)."""
        if self._cpus <= 0 or self._runner.backlog() <= remotes.PER_CPU * self._cpus:
            return False
        key = self.key(run)
        if key is None:
            return False
        full = None
        with self._changed:
            if self._stopped:
                return False
            group = self._held.setdefault(key, [])
            group.append(run)
            if len(group) >= remotes.MAX_BATCH:
                full = self._held.pop(key)
            elif self._thread is None:
                self._thread = threading.Thread(
                    target=self._flush_soon, name="braid-ray-batches", daemon=True
                )
                self._thread.start()
        if full is not None:
            self._send(key, full)
        return True

    def send_holding(self, future: Any) -> None:
        """Send now the runs held with the run of ``future`` (a downstream run is about
        to take its result: it needs the Ray object, which exists once sent)."""
        if future.ref is not None or not self._held:
            return
        with self._changed:
            found = [k for k, runs in self._held.items() if any(r.future is future for r in runs)]
            if not found:
                return
            runs = self._held.pop(found[0])
        self._send(found[0], runs)

    def _flush_soon(self) -> None:
        held: dict[tuple, list[Run]] = {}
        try:
            while True:
                time.sleep(HOLD_SECONDS)
                with self._changed:
                    held, self._held = self._held, {}
                    if not held:
                        return
                for key, runs in held.items():
                    self._send(key, runs)
                held = {}
        finally:
            with self._changed:
                self._thread = None
                self._changed.notify_all()

    def _send(self, key: tuple, runs: list[Run]) -> None:
        if self._runner.stopping:  # abandoned: the core ends them (never sent: CANCELLED)
            return
        runs = [run for run in runs if run.call is not None and run.future is not None]
        if len(runs) == 1:
            self._runner.send_one(runs[0])
        elif runs:
            self._runner.send_batch(key, runs)

    def stop(self, timeout: float = STOP_WAIT) -> None:
        """Send what is held and wait for the flushing thread to end (at most ``timeout``
        seconds: a Ray that stopped answering must not hold the runner's stop)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            self._stopped = True
            while self._thread is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    logger.warning("braid: Ray batches still being sent after %.0f s", timeout)
                    return
                self._changed.wait(min(left, 1.0))
