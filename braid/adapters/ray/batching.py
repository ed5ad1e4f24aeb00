"""Which runs share a Ray task, and when: a ``.map()``'s runs, submits that queue up, and
the links of a chain.

What one Ray task costs (its submission and completion callback on the driver, its
start on a worker) is more than everything braid does for a run, so runs that would
only wait in Ray's queue anyway go in batches of up to ``remotes.MAX_BATCH`` (see
:mod:`braid.adapters.ray.remotes`):

- ``dispatch_many`` (a ``.map()``): when the map has at least ``remotes.PER_CPU``
  batches per CPU of the cluster, its runs without upstreams go at once in batches;
- ``offer`` (one ``.submit()``): when this runner already has more live runs than
  ``PER_CPU`` per CPU, the run is held here at most ``HOLD_SECONDS`` in a pending
  batch for others to join it (a full batch goes at once, from the submitting thread);
  otherwise it goes alone.  A run whose upstream is held in a pending batch joins that
  batch (a chain's next link), whatever the backlog: it could not start before its
  upstream anyway.  A run whose upstreams are all sent starts a batch of its own,
  which only its downstream runs join, so a batch waits for no one else's upstreams.

In a batch, the worker runs the runs in the order they joined: a run whose upstream is
in the same batch is given that upstream's pickled State there, never through Ray.
Every run still has its own result object (downstream runs of other Ray tasks take it
worker to worker, ``.result()`` fetches it) and one header list comes back per batch.

Only runs of one task's resources and retries share a task, and only runs without a
time limit the driver watches and without other Ray options.  A run ended while it
waited here (a cancelled flow) is never sent; a batch holding a run whose result a
run elsewhere is about to take (``send_held``) is sent at once.  Batches are sent
under the batcher's lock, so a run that takes a held run's result finds its Ray
object once that lock is free.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from braid.adapters.overdue import time_limit
from braid.adapters.ray import remotes
from braid.adapters.ray.future import RayTaskFuture
from braid.adapters.ray.outcomes import native_ref, refuse
from braid.core import logs
from braid.core.runner import Run

__all__ = ["HOLD_SECONDS", "STOP_WAIT", "Batcher", "PendingBatch"]

#: longest a submitted run waits for others to share its Ray task
HOLD_SECONDS = 0.002
#: longest a stopping runner waits for held runs to be sent
STOP_WAIT = 10.0

logger = logging.getLogger("braid.ray")


class PendingBatch:
    """Runs held to share one Ray task, in the order they will run there."""

    __slots__ = ("key", "owner", "runs")

    def __init__(self, key: tuple, owner: Batcher) -> None:
        #: (task name, resource hints, Ray retries) of its runs
        self.key = key
        #: the batcher that sends it
        self.owner = owner
        self.runs: list[Run] = []


class Batcher:
    """A runner's batches: ``runner`` sends single runs (``send_one(run)``), says how
    many runs are live (``backlog()``), which Ray connection is current (``session``)
    and what handles a run's header (``outcome_handler(run, batch_upstreams)``)."""

    def __init__(self, runner: Any, cpus: int) -> None:
        self._runner = runner
        self._cpus = cpus
        self._open: dict[tuple, PendingBatch] = {}  # batches submits without upstreams join
        self._pending: dict[PendingBatch, None] = {}  # every batch not sent, oldest first
        self._lock = threading.RLock()  # held while a batch is sent (see the module)
        self._changed = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._stopped = False

    def key(self, run: Run) -> tuple | None:
        """What runs sharing a Ray task with ``run`` must have in common, or None when
        it goes alone."""
        call = run.call
        if call is None or self._runner.watches_starts:
            return None
        extra = call.extra or {}
        if extra.get("ray_options") or time_limit(call.task) is not None:
            return None
        hints = extra.get("resources")
        return (call.task.name, hints, extra.get("ray_max_retries", self._runner.max_retries))

    def dispatch_many(self, runs: Sequence[Run]) -> None:
        """Send a map's ready runs: in batches sized for the cluster, or one by one."""
        size = remotes.batch_size(len(runs), self._cpus)
        batched = size > 1 and not self._runner.watches_starts
        groups: dict[tuple, list[Run]] = {}
        for run in runs:
            if run.upstreams:  # its upstreams may be held: join them or send them first
                self._runner.dispatch(run)
                continue
            key = self.key(run) if batched else None
            if key is None:
                self._runner.send_one(run)
                continue
            group = groups.setdefault(key, [])
            group.append(run)
            if len(group) == size:
                self.submit(key, groups.pop(key))
        for key, rest in groups.items():
            self.submit(key, rest)

    def offer(self, run: Run) -> bool:
        """Hold ``run`` in a pending batch (True), or leave it to be sent alone now
        (False; its held upstreams are sent first)."""
        if self._cpus <= 0:
            return False
        if run.upstreams:
            return self._offer_downstream(run)
        if self._runner.backlog() <= remotes.PER_CPU * self._cpus:
            return False
        key = self.key(run)
        if key is None:
            return False
        with self._lock:
            if self._stopped:
                return False
            batch = self._open.get(key)
            if batch is None:
                batch = self._open[key] = self._new(key)
            self._hold(batch, run)
        return True

    def _offer_downstream(self, run: Run) -> bool:
        ups = run.upstreams
        # read once: the thread sending a batch clears its runs' ``held``
        held = [b for u in ups if isinstance(u, RayTaskFuture) and (b := u.held) is not None]
        for batch in held:  # another runner's batch (a nested flow): it sends it now
            if batch.owner is not self:
                batch.owner.send_batch_of(batch)
        key = self.key(run)
        mine = list({id(batch): batch for batch in held if batch.owner is self}.values())
        if key is None and not mine:
            return False
        with self._lock:
            target = None
            for batch in mine:
                if (
                    target is None
                    and key is not None
                    and batch in self._pending
                    and batch.key[1:] == key[1:]
                ):
                    target = batch
                else:
                    self._send(batch)  # sent before: this run takes its Ray objects
            if target is None:
                if (
                    key is None
                    or self._stopped
                    or self._runner.backlog() <= remotes.PER_CPU * self._cpus
                ):
                    return False
                target = self._new(key)  # joined by this run's downstream runs only
            self._hold(target, run)
        return True

    def send_held(self, future: RayTaskFuture) -> None:
        """Send now the batch holding the run of ``future``, if one does."""
        batch = future.held
        if batch is not None:
            batch.owner.send_batch_of(batch)

    def send_batch_of(self, batch: PendingBatch) -> None:
        """Send ``batch`` now, if it is still pending."""
        with self._lock:
            self._send(batch)

    def _new(self, key: tuple) -> PendingBatch:
        batch = PendingBatch(key, self)
        self._pending[batch] = None
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._flush_soon, name="braid-ray-batches", daemon=True
            )
            self._thread.start()
        return batch

    def _hold(self, batch: PendingBatch, run: Run) -> None:
        future = run.future
        if isinstance(future, RayTaskFuture):  # else ended meanwhile: never sent
            future.held = batch
        batch.runs.append(run)
        if len(batch.runs) >= remotes.MAX_BATCH:
            self._send(batch)

    def _flush_soon(self) -> None:
        try:
            while True:
                time.sleep(HOLD_SECONDS)
                with self._changed:
                    if not self._pending:  # ends under the lock that _new looks under
                        self._thread = None
                        self._changed.notify_all()
                        return
                    for batch in list(self._pending):
                        self._send(batch)
        except BaseException:
            with self._changed:
                self._thread = None
                self._changed.notify_all()
            raise

    def _send(self, batch: PendingBatch) -> None:
        """Send a pending batch (the lock is held); the batches holding its runs'
        upstreams go first."""
        if batch not in self._pending:
            return  # sent already
        del self._pending[batch]
        if self._runner.stopping:  # abandoned: the core ends its runs (never sent: CANCELLED)
            return
        if self._open.get(batch.key) is batch:
            del self._open[batch.key]
        runs = [run for run in batch.runs if run.call is not None and run.future is not None]
        for run in runs:
            for u in run.upstreams:
                other = u.held if isinstance(u, RayTaskFuture) else None
                if other is not None and other is not batch:
                    other.owner.send_batch_of(other)
        try:
            if len(runs) == 1:
                self._runner.send_one(runs[0])
            elif runs:
                self.submit(batch.key, runs)
        finally:
            for run in batch.runs:
                future = run.future
                if isinstance(future, RayTaskFuture):
                    future.held = None

    def submit(self, key: tuple, runs: list[Run]) -> None:
        """One Ray task for ``runs`` (of the task named ``key[0]``, with hints ``key[1]``
        and ``key[2]`` retries): one list of headers, one result object per run; a run
        whose upstream is an earlier one of ``runs`` is given its State there."""
        name, hints, retries = key
        session = self._runner.session
        order: dict[int, int] = {}  # id of a run's future -> its place in the batch
        where: dict[int, int] = {}  # id of an upstream outside the batch -> its argument
        args: list[Any] = []
        refs: list[Any] = []  # upstreams passed as Ray objects
        ref_ids: set[int] = set()
        plan: list[list[int]] | None = None
        natives: list[list[int]] = []
        for n, run in enumerate(runs):
            native: list[int] = []
            slots: list[int] = []
            for i, u in enumerate(run.upstreams):
                k = order.get(id(u))
                if k is not None:  # in this batch: its State, on the worker
                    slots.append(-k - 1)
                    native.append(i)
                    continue
                j = where.get(id(u))
                if j is None:
                    ref = native_ref(u, session)
                    j = where[id(u)] = len(args)
                    args.append(u.state if ref is None else ref)
                    if ref is not None:
                        refs.append(u)
                        ref_ids.add(id(u))
                if id(u) in ref_ids:
                    native.append(i)
                slots.append(j)
            if slots:
                plan = plan if plan is not None else [[] for _ in range(n)]
            if plan is not None:
                plan.append(slots)
            natives.append(native)
            order[id(run.future)] = n
        try:
            out = remotes.remote_batch(name, hints, retries, len(runs)).remote(
                [run.payload for run in runs], logs.driver_level(), *args, plan=plan
            )
        except Exception as exc:  # noqa: BLE001 - e.g. invalid resources, Ray gone away
            for run in runs:
                refuse(run, exc)
            return
        futures: list[RayTaskFuture] = []
        for run, native in zip(runs, natives, strict=True):
            assert isinstance(run.future, RayTaskFuture)
            run.future.native_slots = native
            futures.append(run.future)
        ups = tuple(refs)
        RayTaskFuture.attach_shared(
            futures,
            out[0],
            list(out[1:]),
            [self._runner.outcome_handler(run, ups) for run in runs],
        )

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
