"""The run table: every task run a started runner accepted, from submit to its final state.

One implementation serves every runner; a runner only moves runnable calls to its
workers (``dispatch``) and reports how each ended (``run.finish(state)``)::

    TaskRunner.submit(call, upstreams)
      RunTable.accept
        pickle the call at once if the runner pickles (SerializationError here)
        future = TaskFuture (or the runner's own, see runner.NewFuture)
        live[run] = None                      (the drain waits until live is empty)
        gate: upstreams not final and not native to the backend?
          -- yes --> a done-callback on each; the last one to finish dispatches
          -- no  --> runner.dispatch(run)           (runner.BatchDispatch for .map())
                       worker: run.begin() -> False when the run was cancelled meanwhile
                               state = run.execute(...) or the backend's own engine call
                               run.finish(state)
      RunTable.finish(run, state)
        AwaitingRetry and the runner reschedules? -> pending; runner.dispatch(run) again
                                                     after the delay (one timer thread)
        else future.set_final(state) (callbacks run), record snapshot, live.pop(run)

    __exit__: drain (wait until live is empty), or abandon on an interrupt or a flow
    time-out: runs that began end CRASHED, the others CANCELLED, the runner's
    ``cancel`` hook (if any) is told first; then ``runner.stop(abandon)``.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from braid import errors
from braid.core.cached import stage_in_transaction
from braid.core.calls import TaskCall
from braid.core.contract import (
    BatchDispatch,
    CancelsRuns,
    ChecksCalls,
    NativeDependencies,
    NewFuture,
)
from braid.core.engine import AWAITING_RETRY, run_hooks, run_task
from braid.core.futures import TaskFuture
from braid.core.records import SnapshotReader, final_snapshot, retried_attempt
from braid.core.states import Cancelled, Crashed, Failed, State, StateType
from braid.core.timers import Timer

if TYPE_CHECKING:
    from braid.core.limited import RunLimits
    from braid.core.records import FlowRunRecord
    from braid.core.runner import TaskRunner

__all__ = ["Run", "RunTable"]

_PENDING = StateType.PENDING
_RUNNING_NAME = "RUNNING"
_PENDING_NAME = "PENDING"
_time = time.time


class Run(SnapshotReader):
    """One task run a runner accepted: its call, its upstream futures and its future.

    Runners read ``call``, ``upstreams`` and ``payload`` (the pickled call, for runners
    that pickle), start the run with :meth:`begin` and report its end with
    :meth:`finish`.  Once final, a run keeps only what a run record shows (see
    :mod:`braid.core.records`: names, state, times, places, attempts, upstream ids,
    shortened arguments), never the future, the call's values or the result.
    """

    __slots__ = (
        "call",
        "upstreams",
        "future",
        "payload",
        "phase",
        "_table",
        "gate_count",
        "_countdown",
        "_snapshot",
        "_began",
        "in_record",
        "record_at",
        "held",
    )
    #: the flow run record listing the run (until final) and the run's place in it
    in_record: FlowRunRecord | None
    record_at: int
    #: how many upstreams the run waits for (it is sent when the last one is final)
    gate_count: int
    #: the in-process tag slots the run holds (a ``SlotPool`` or ``FreeSlots``), set and
    #: given back by :class:`braid.core.limited.RunLimits`; None when it holds none
    held: Any

    def __init__(
        self,
        call: TaskCall,
        upstreams: Sequence[TaskFuture[Any]],
        future: TaskFuture[Any],
        payload: bytes | None,
        table: RunTable,
    ) -> None:
        self.call: TaskCall | None = call
        self.upstreams: Sequence[TaskFuture[Any]] = upstreams
        self.future: TaskFuture[Any] | None = future
        self.payload = payload
        #: ACCEPTED, then DISPATCHED (handed to the runner), then BEGAN (on a worker)
        self.phase = ACCEPTED
        self._table = table
        # _snapshot: the retried attempts while live (None: none), then what a record
        # shows once final (future is None); _began: when a worker last began it
        self._snapshot: Any = None
        # the flow run record that lists the run, and where (it keeps the snapshot in
        # the run's place once final, so a final run is freed)
        self.in_record = None
        self.held = None

    @property
    def began(self) -> bool:
        """Whether a worker started the run (it was RUNNING)."""
        return self.phase == BEGAN

    @property
    def dispatched(self) -> bool:
        """Whether the run was handed to the runner."""
        return self.phase != ACCEPTED

    # -- for runners ----------------------------------------------------------------
    def begin(self) -> bool:
        """Mark the run RUNNING as a worker starts it; False if it must not run.

        False means the run is final already (the flow was interrupted or timed out
        and the run table cancelled it): the worker drops it.
        """
        reason = self._table.cancel_reason
        future = self.future
        if reason is not None or future is None:
            if future is not None and not future.done():
                self.finish(Cancelled(_cancelled_message(reason or "")))
            return False
        self.phase = BEGAN
        self._began: float | None = _time()
        future.set_running()
        return True

    def upstream_states(self) -> list[State] | None:
        """The upstreams' states, in slot order (None when the call has no upstreams)."""
        ups = self.upstreams
        return [u.state for u in ups] if ups else None

    def execute(self, nested_runner: TaskRunner | None = None) -> State:
        """Run the call in this thread with the engine and return its State (never raises).

        For runners whose workers are threads of this process; runs submitted from
        inside the task go to ``nested_runner``.
        """
        call = self.call
        assert call is not None, "execute() on a final run"
        future = self.future
        on_start = None
        if call.run_name is None and future is not None:
            on_start = future.set_name
        ups = self.upstreams
        try:
            return run_task(
                call,
                None if not ups else [ups[0].state] if len(ups) == 1 else [u.state for u in ups],
                nested_runner,
                self._table.reschedules,
                on_start,
            )
        except Exception as exc:  # noqa: BLE001 - an engine bug must still end the run
            return Crashed(errors.BraidError(f"braid engine error: {exc!r}"))
        except BaseException as exc:  # an interrupt outside the task's code: end, re-raise
            message = f"the thread running it was interrupted ({type(exc).__name__})"
            self.finish(Crashed(errors.Crash(message), message))
            raise

    def finish(self, state: State) -> None:
        """Report how the run ended: a final State, or an ``AwaitingRetry`` one.

        A final state finishes the future (its callbacks run first), unless the future
        is final already (the run was abandoned): then nothing changes.
        """
        table = self._table
        if state.type is _PENDING and state.name == AWAITING_RETRY:
            began = self._began if self.phase == BEGAN else None
            self._snapshot = retried_attempt(self._snapshot, state, began)
            if table.reschedule(self, state):
                return
            state = Cancelled(f"not retried: {table.cancel_reason or 'the runner stopped'}")
        future = self.future
        call = self.call
        if (
            call is not None
            and (call.task.hooks is not None or call.extra is not None)
            and not future_done(future)
        ):
            if call.task.hooks is not None:
                # a state made outside the engine (a dead worker, a cancellation): its
                # hooks run here, before waiters wake
                run_hooks(call, state)
            extra = call.extra
            if extra is not None and "txn" in extra:
                stage_in_transaction(call, state)
        if future is None or not future.set_final(state):
            return
        # keep what a record shows; drop the future, the call, the payload, the result
        if call is not None:
            # when a worker took it: the start of a run whose state cannot say (a crash)
            began = self._began if state.started is None and self.phase == BEGAN else None
            snap = self._snapshot = final_snapshot(
                call, state, self.upstreams, self._snapshot, began
            )
            self._began = None  # its float would outlive the run
            record = self.in_record
            if record is not None:
                self.in_record = None
                record.settle(self.record_at, self, snap)
        self.future = None
        self.call = None
        self.upstreams = ()
        self.payload = None
        if table.limits is not None:
            table.limits.release(self)
        table.live.pop(self, None)
        # the drain sets draining before it looks at live: a finisher that reads False
        # here removed its run before the drain looked
        if table.draining:
            table.wake_drain()

    def __call__(self, _upstream: TaskFuture[Any]) -> None:
        """The done-callback this run puts on its upstreams: the last one sends it."""
        if self.gate_count == 1 or next(self._countdown) == self.gate_count:
            table = self._table
            if table.cancel_reason is not None or table.limits is not None:
                table.send(self)
                return
            self.phase = DISPATCHED  # send() written out: a chain's every link comes here
            try:
                table.dispatch(self)
            except Exception as exc:  # noqa: BLE001 - the run must not stay live forever
                _dispatch_failed(self, exc)

    def wait_for(self, upstreams: Sequence[TaskFuture[Any]]) -> None:
        """Send the run once every future in ``upstreams`` is final (now if they are)."""
        if len(upstreams) == 1:  # a chain's link: no list, no countdown
            if upstreams[0].done():
                self._table.send(self)
                return
            self.gate_count = 1
            upstreams[0].add_done_callback(self)
            return
        pending = [f for f in upstreams if not f.done()]
        if not pending:
            self._table.send(self)
            return
        self.gate_count = len(pending)
        self._countdown = itertools.count(1)  # next() is atomic: one call sees gate_count
        for f in pending:
            f.add_done_callback(self)

    @property
    def reschedule_retries(self) -> bool:
        """Whether the engine should hand back ``AwaitingRetry`` instead of sleeping."""
        return self._table.reschedules

    # -- for records ------------------------------------------------------------------
    @property
    def snapshot(self) -> tuple[Any, ...] | None:
        """What a record shows of a final run (None while the run is live)."""
        return self._snapshot if self.future is None else None

    @property
    def run_id(self) -> int:
        """The run's id (an int; its UUID form is ``task_run_id``)."""
        snap = self.snapshot
        if snap is not None:
            return int(snap[0])
        assert self.call is not None
        return self.call.run_id

    @property
    def task_run_id(self) -> str:
        """The run's id, as a UUID string."""
        import uuid

        return str(uuid.UUID(int=self.run_id, version=4))

    @property
    def task_name(self) -> str:
        """The name of the run's task."""
        snap = self.snapshot
        if snap is not None:
            return str(snap[1])
        assert self.call is not None
        return str(self.call.task.name)

    @property
    def current_type(self) -> str:
        """The run's state type now: the final one, or RUNNING/PENDING (never blocks)."""
        snap = self.snapshot
        if snap is not None:
            return str(snap[3])
        return _RUNNING_NAME if self.phase == BEGAN else _PENDING_NAME

    def __repr__(self) -> str:
        return f"<Run {self.task_name} {self.current_type}>"


#: the phases of a run
ACCEPTED, DISPATCHED, BEGAN = 0, 1, 2


class RunTable:
    """The runs one started runner accepted and has not finished; made by ``__enter__``."""

    def __init__(self, runner: TaskRunner) -> None:
        caps = runner.capabilities
        self.runner = runner
        self.dispatch: Callable[[Run], None] = runner.dispatch
        self.pickles = caps.requires_pickling
        self.reschedules = caps.reschedules_retries
        self.inline = caps.runs_inline
        self.is_native: Callable[[TaskFuture[Any]], bool] | None = None
        if caps.native_dependencies:
            if not isinstance(runner, NativeDependencies):
                raise errors.ConfigurationError(
                    f"{type(runner).__name__} declares native_dependencies but has no "
                    f"is_native(future) method (braid.core.runner.NativeDependencies)"
                )
            self.is_native = runner.is_native
        self.new_future = runner.new_future if isinstance(runner, NewFuture) else None
        self.dispatch_many = runner.dispatch_many if isinstance(runner, BatchDispatch) else None
        self.cancel_hook = runner.cancel if isinstance(runner, CancelsRuns) else None
        self.check_call = runner.check_call if isinstance(runner, ChecksCalls) else None
        #: the flow run's concurrency limits on this runner (None: none declared)
        self.limits: RunLimits | None = None
        self.live: dict[Run, None] = {}
        self.cancel_reason: str | None = None
        #: the drain is waiting: finishers must wake it
        self.draining = False
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._delayed: Timer[Run] | None = None

    # -- accepting ----------------------------------------------------------------------
    def _new_run(
        self,
        call: TaskCall,
        upstreams: Sequence[TaskFuture[Any]],
        payload: bytes | None,
        record: FlowRunRecord | None,
    ) -> Run:
        make = self.new_future
        future = (
            make(call) if make is not None else TaskFuture(call.task, call.run_name, call.run_id)
        )
        run = Run(call, upstreams, future, payload, self)
        self.live[run] = None
        if record is not None:
            run.in_record = record
            run.record_at = record.add(run)
        return run

    def accept(
        self,
        call: TaskCall,
        upstreams: Sequence[TaskFuture[Any]] = (),
        record: FlowRunRecord | None = None,
    ) -> TaskFuture[Any]:
        """Take a call: make its run and future, and dispatch it once it is runnable."""
        # the hot path of every .submit(): _new_run and _gate written out
        if self.check_call is not None:
            self.check_call(call)
        limits = self.limits
        if limits is not None and limits.handle is not None:  # the task runs elsewhere:
            call.extra = {**(call.extra or {}), "limits": limits.handle}  # it finds them
        payload = _dumps_call(call) if self.pickles else None  # SerializationError here
        make = self.new_future
        future = (
            make(call) if make is not None else TaskFuture(call.task, call.run_name, call.run_id)
        )
        run = Run(call, upstreams, future, payload, self)
        self.live[run] = None
        if record is not None:
            run.in_record = record
            run.record_at = record.add(run)
        if upstreams:
            if self.is_native is None and not self.inline:  # _gate's common case
                if len(upstreams) == 1 and not upstreams[0].done():  # a chain's link
                    run.gate_count = 1
                    upstreams[0].add_done_callback(run)
                else:
                    run.wait_for(upstreams)
            else:
                self._gate(run)
            return future
        if self.cancel_reason is not None:
            self.send(run)
            return future
        if limits is not None:
            try:
                wait = limits.admit(run)
                if wait:  # the gate dispatches it once it has its slots
                    limits.when_available(run, wait, self._dispatch_now)
                    return future
            except Exception as exc:  # noqa: BLE001 - e.g. a limit of 0: the run fails
                run.finish(Failed(exc))
                return future
        run.phase = DISPATCHED
        try:
            self.dispatch(run)
        except Exception as exc:  # noqa: BLE001 - the run must not stay live forever
            _dispatch_failed(run, exc)
        return future

    def accept_many(
        self,
        calls: Sequence[TaskCall],
        upstreams: Sequence[Sequence[TaskFuture[Any]]],
        record: FlowRunRecord | None = None,
    ) -> list[TaskFuture[Any]]:
        """Take many calls at once (``.map()``); runs ready now go in one batch when the
        runner takes batches."""
        if self.check_call is not None:
            for call in calls:  # refuse before accepting any
                self.check_call(call)
        if self.limits is not None and self.limits.handle is not None:
            handle = self.limits.handle
            for call in calls:
                call.extra = {**(call.extra or {}), "limits": handle}
        payloads: Sequence[bytes | None]
        payloads = [_dumps_call(c) for c in calls] if self.pickles else [None] * len(calls)
        make, live = self.new_future, self.live  # _new_run written out, per run
        runs = []
        for c, u, p in zip(calls, upstreams, payloads, strict=True):
            future = make(c) if make is not None else TaskFuture(c.task, c.run_name, c.run_id)
            run = Run(c, u, future, p, self)
            live[run] = None
            runs.append(run)
        if record is not None:
            at = record.add_many(runs)
            for run in runs:
                run.in_record = record
                run.record_at = at
                at += 1
        # a new run's future is never None
        futures: list[TaskFuture[Any]] = [r.future for r in runs]  # type: ignore[misc]
        many = self.dispatch_many
        if self.inline or self.limits is not None:
            for run in runs:
                self._gate(run)
            return futures
        ready = []
        for run in runs:
            if run.upstreams and self._waits_for(run):
                self._gate(run)
            else:
                ready.append(run)
        if not ready:
            return futures
        if self.cancel_reason is not None:
            for run in ready:
                self.send(run)
            return futures
        for run in ready:
            run.phase = DISPATCHED
        if many is None:  # one by one, without the hops of _gate and send
            dispatch = self.dispatch
            for run in ready:
                try:
                    dispatch(run)
                except Exception as exc:  # noqa: BLE001 - no run may stay live forever
                    _dispatch_failed(run, exc)
            return futures
        try:
            many(ready)
        except Exception as exc:  # noqa: BLE001 - no run may stay live forever
            for run in ready:
                _dispatch_failed(run, exc)
        return futures

    def _waits_for(self, run: Run) -> list[TaskFuture[Any]]:
        """The upstreams to wait for here: not final and not native to the backend."""
        native = self.is_native
        return [u for u in run.upstreams if not u.done() and (native is None or not native(u))]

    def _gate(self, run: Run) -> None:
        ups = run.upstreams
        if ups and (self.is_native is not None or self.inline):
            ups = self._waits_for(run)
            if self.inline:  # submit runs the call to its end: wait here, then run it
                for u in ups:
                    u.wait()
                ups = ()
        if ups:
            run.wait_for(ups)
        else:
            self.send(run)

    def send(self, run: Run) -> None:
        """Hand a runnable run to the runner (or cancel it when the table is abandoning);
        a run whose tags are limited waits for its slots first, holding no worker."""
        if self.cancel_reason is not None:
            run.finish(Cancelled(_cancelled_message(self.cancel_reason)))
            return
        limits = self.limits
        if limits is not None and run.call is not None:
            try:
                wait = limits.admit(run)
                if wait:  # the gate dispatches it once it has its slots
                    limits.when_available(run, wait, self._dispatch_now)
                    return
            except Exception as exc:  # noqa: BLE001 - e.g. a limit of 0: the run fails
                run.finish(Failed(exc))
                return
        run.phase = DISPATCHED
        try:
            self.dispatch(run)
        except Exception as exc:  # noqa: BLE001 - the run must not stay live forever
            _dispatch_failed(run, exc)

    def _dispatch_now(self, run: Run) -> None:
        """Dispatch a run that got its slots (unless the table is abandoning by now)."""
        if self.cancel_reason is not None:
            run.finish(Cancelled(_cancelled_message(self.cancel_reason)))
            return
        run.phase = DISPATCHED
        try:
            self.dispatch(run)
        except Exception as exc:  # noqa: BLE001 - the run must not stay live forever
            _dispatch_failed(run, exc)

    # -- finishing ----------------------------------------------------------------------
    def wake_drain(self) -> None:
        """Let the drain look at the live set again (a run was finished)."""
        with self._lock:
            self._changed.notify_all()

    def reschedule(self, run: Run, state: State) -> bool:
        """Schedule the next attempt of ``run`` after its retry delay; False if the runner
        does not reschedule or the table is stopping (the run then ends)."""
        if (
            not self.reschedules
            or self.cancel_reason is not None
            or run.future is None
            or run.call is None
        ):
            return False
        delayed = self._delayed
        if delayed is None:
            with self._lock:
                if self._delayed is None:
                    self._delayed = Timer(self.send, "braid-retry-timer")
                delayed = self._delayed
        if self.limits is not None:  # no slot held while waiting out the delay
            self.limits.release(run)
        run.call = run.call.next_attempt()
        if self.pickles:
            run.payload = _dumps_call(run.call)
        run.phase = DISPATCHED
        run.future.set_pending(state)
        return delayed.add(time.monotonic() + float(state.data or 0), run)

    # -- the end ----------------------------------------------------------------------
    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every accepted run is final (retries included), at most ``timeout``
        seconds; True if they all are (then the retry timer is stopped)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self.draining = True
            try:
                while self.live:
                    left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
                    if left <= 0:
                        return False
                    self._changed.wait(left)  # 0.5 s at most: guards a missed wake-up
            finally:
                self.draining = False
        if self._delayed is not None:
            self._delayed.stop()
        return True

    def abandon(self, reason: str) -> None:
        """End every live run now: those that began CRASHED, the others CANCELLED."""
        self.cancel_reason = reason
        waiting = self._delayed.stop() if self._delayed is not None else []
        runs = list(self.live)
        started: set[Run] = {r for r in runs if r.began}
        if self.cancel_hook is not None:
            dispatched = [
                r for r in runs if r.dispatched and r.future is not None and not r.future.done()
            ]
            if dispatched:
                try:
                    started |= set(self.cancel_hook(dispatched))
                except Exception:  # noqa: BLE001 - unknown: say they may have started
                    started |= set(dispatched)
        waiting_set = set(waiting)
        for run in runs:
            if run in waiting_set:
                run.finish(Cancelled(f"not retried: {reason}"))
            elif run in started:
                message = f"stopped while running: {reason}"
                run.finish(Crashed(errors.Crash(message), message))
            else:
                run.finish(Cancelled(_cancelled_message(reason)))


def _dispatch_failed(run: Run, exc: Exception) -> None:
    """A runner's dispatch raised: the run ends CRASHED with that error (never stays live)."""
    message = f"the runner could not start the run: {type(exc).__name__}: {exc}"
    crash = errors.Crash(message)
    crash.__cause__ = exc
    run.finish(Crashed(crash, message))


def future_done(future: TaskFuture[Any] | None) -> bool:
    """Whether ``future`` is missing or final (then a run's end changes nothing)."""
    return future is None or future.done()


def _cancelled_message(reason: str) -> str:
    return f"cancelled before it started: {reason}"


def _dumps_call(call: TaskCall) -> bytes:
    from braid.core.serialization import dumps_call

    return dumps_call(call)
