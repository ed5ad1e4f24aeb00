"""The runner contract, and the dependency-aware base of the local runners.

A runner moves a :class:`~braid.core.engine.TaskCall` to where it runs and hands
back a :class:`~braid.core.futures.TaskFuture`; the core owns every policy.

Local runners (threads, processes) share :class:`LocalTaskRunner`::

    submit(call, upstreams)
      future = TaskFuture(...)                      outstanding += 1
      any upstream not final? -- yes --> add_done_callback on each; the last one
      |                                  to finish calls _dispatch (no thread waits)
      no
      v
    _dispatch(run)   (subclass: hand to a pool thread / a process)
      ...  run_task(call, upstream states)  ->  State
    _complete(run, state)
      AwaitingRetry? -> re-dispatch call.next_attempt() after the delay (timer thread)
      else future._finish(state)                    outstanding -= 1 (wakes the drain)
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from braid import errors
from braid.core.engine import AWAITING_RETRY, TaskCall
from braid.core.futures import TaskFuture
from braid.core.states import Cancelled, Crashed, State, StateType

_PENDING = StateType.PENDING

__all__ = ["Capabilities", "TaskRunner", "LocalTaskRunner", "PendingRun", "LiveRuns",
           "call_when_final"]


def call_when_final(futures: Sequence[TaskFuture], then: Any) -> None:
    """Call ``then()`` once every future in ``futures`` is final: now if they all are,
    else from the done-callback of the last one to finish (no thread waits)."""
    if len(futures) == 1:  # the common case (a chain): no list, no countdown
        only = futures[0]
        if only.done():
            then()
        else:
            only.add_done_callback(lambda _f: then())
        return
    pending = [f for f in futures if not f.done()]
    if not pending:
        then()
        return
    n = len(pending)
    countdown = itertools.count(1)  # next() on a count is atomic: exactly one call sees n

    def one_done(_f: TaskFuture) -> None:
        if next(countdown) == n:
            then()

    for f in pending:
        f.add_done_callback(one_done)


class Capabilities:
    """What a runner can do; the core and the conformance suite read these as data.

    - ``requires_pickling``: calls and results cross a process boundary.
    - ``native_dependencies``: the backend orders dependent tasks itself.
    - ``can_interrupt_running``: a running task can be stopped (a process ended).
    - ``reschedules_retries``: a task waiting out its retry delay holds no worker.
    - ``remote``: tasks run outside the driver's process.
    - ``runs_inline``: ``submit`` runs the call to its end in the submitting thread
      before returning, so a run never overlaps with the code that submitted it.
    """

    __slots__ = ("requires_pickling", "native_dependencies", "can_interrupt_running",
                 "reschedules_retries", "remote", "runs_inline")

    def __init__(self, requires_pickling: bool = False, native_dependencies: bool = False,
                 can_interrupt_running: bool = False, reschedules_retries: bool = False,
                 remote: bool = False, runs_inline: bool = False) -> None:
        values = (requires_pickling, native_dependencies, can_interrupt_running,
                  reschedules_retries, remote, runs_inline)
        for name, value in zip(self.__slots__, values, strict=True):
            object.__setattr__(self, name, bool(value))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Capabilities are read-only; make a new Capabilities(...)")

    def _values(self) -> tuple:
        return tuple(getattr(self, n) for n in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Capabilities) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __reduce__(self) -> tuple:
        return (Capabilities, self._values())

    def __repr__(self) -> str:
        on = ", ".join(f"{n}=True" for n in self.__slots__ if getattr(self, n))
        return f"Capabilities({on})"


class TaskRunner(ABC):
    """Runs task calls somewhere and hands back futures; enter it before submitting.

    ``__exit__`` returns when every accepted run is final (it drains), except when
    leaving because of an interrupt or a flow time-out: then queued runs end
    CANCELLED and running ones CRASHED, and it returns at once.
    """

    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self) -> None:
        self._started = False

    @abstractmethod
    def duplicate(self) -> TaskRunner:
        """A fresh, unstarted runner with the same configuration."""

    @abstractmethod
    def submit(self, call: TaskCall, upstreams: Sequence[TaskFuture]) -> TaskFuture:
        """Start ``call`` once every future in ``upstreams`` is final; return its future."""

    def map(self, calls: Sequence[TaskCall],
            upstreams: Sequence[Sequence[TaskFuture]]) -> list[TaskFuture]:
        """Submit many calls; a backend may send them in one batch."""
        return [self.submit(c, u) for c, u in zip(calls, upstreams, strict=False)]

    def _start(self) -> None:
        """Acquire resources (a pool, a client)."""

    def _stop(self, abandon: bool, reason: str) -> None:
        """Release resources; drain first unless ``abandon``."""

    def __enter__(self) -> TaskRunner:
        if self._started:
            raise errors.ConfigurationError(
                f"{type(self).__name__} is already started; use runner.duplicate() for "
                f"another concurrent use"
            )
        self._start()
        self._started = True
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self._started:
            return
        abandon = exc_type is not None and (
            not issubclass(exc_type, Exception) or issubclass(exc_type, errors.FlowTimeout)
        )
        if abandon:
            reason = ("the flow timed out" if issubclass(exc_type, errors.FlowTimeout)
                      else f"the flow was interrupted ({exc_type.__name__})")
        else:
            reason = ""
        try:
            self._stop(abandon, reason)
        except BaseException as exc:
            if not abandon:  # interrupted while draining: cancel what is queued after all
                self._stop(True, f"the flow was interrupted ({type(exc).__name__})")
            raise
        finally:
            self._started = False

    def _not_started(self) -> errors.RunnerNotStarted:
        return errors.RunnerNotStarted(
            f"{type(self).__name__} is not started: use it as `with runner:` or pass it to "
            f"@flow(task_runner=...)"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LiveRuns:
    """The runs a runner accepted that are not final yet, by future; what its drain waits on.

    For runners whose backend runs the calls (Dask, Ray): ``add`` at submit, ``settle``
    when the backend reports the end, ``drain`` in ``__exit__``, ``take_all`` to abandon.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._runs: dict[TaskFuture, Any] = {}
        self._settling = 0
        self._draining = False

    def add(self, future: TaskFuture, run: Any = None) -> None:
        with self._lock:
            self._runs[future] = run

    def get(self, future: TaskFuture) -> Any:
        return self._runs.get(future)

    def settle(self, future: TaskFuture, finish: Any) -> bool:
        """Take ``future`` off and call ``finish()``; False (nothing called) if it was not
        live (settled or abandoned already).  The drain returns only after ``finish``."""
        with self._lock:
            if self._runs.pop(future, _MISSING) is _MISSING:
                return False
            self._settling += 1
        try:
            finish()
        finally:
            with self._lock:
                self._settling -= 1
                if self._draining:
                    self._changed.notify_all()
        return True

    def drain(self) -> None:
        """Wait until every live run has settled."""
        with self._lock:
            self._draining = True
            try:
                while self._runs or self._settling:
                    self._changed.wait()
            finally:
                self._draining = False

    def take_all(self) -> list[tuple[TaskFuture, Any]]:
        """Remove every live run and return them (to cancel or crash them)."""
        with self._lock:
            items = list(self._runs.items())
            self._runs.clear()
            return items


_MISSING = object()


class PendingRun:
    """A call accepted by a local runner, with its upstream futures and its own future.

    It is itself the done-callback it puts on its upstreams (no closure per run): the
    last of them to finish dispatches it.
    """

    __slots__ = ("call", "upstreams", "future", "payload", "_dispatch", "_countdown", "_n")

    def __init__(self, call: TaskCall, upstreams: Sequence[TaskFuture],
                 future: TaskFuture, payload: bytes | None = None) -> None:
        self.call = call
        self.upstreams = upstreams
        self.future = future
        self.payload = payload  # the pickled call, for runners that pickle

    def dispatch_when_ready(self, dispatch: Any) -> None:
        """Call ``dispatch(self)`` once every upstream is final (now, if they all are)."""
        ups = self.upstreams
        if len(ups) == 1:  # a chain's link: no list, no countdown
            if ups[0].done():
                dispatch(self)
                return
            self._dispatch = dispatch
            self._n = 1
            ups[0].add_done_callback(self)
            return
        pending = [f for f in ups if not f.done()]
        if not pending:
            dispatch(self)
            return
        self._dispatch = dispatch
        self._n = len(pending)
        self._countdown = itertools.count(1)  # next() is atomic: one call sees _n
        for f in pending:
            f.add_done_callback(self)

    def __call__(self, _upstream: TaskFuture) -> None:
        if self._n == 1 or next(self._countdown) == self._n:
            self._dispatch(self)


class LocalTaskRunner(TaskRunner):
    """A runner whose dependencies are resolved here: runs are dispatched once runnable."""

    def _start(self) -> None:
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        # runs accepted and runs finished are counted without a lock (next() on a count
        # is atomic); the drain reads both by probing (see _so_far) and compares them
        self._accepted = itertools.count()
        self._finished = itertools.count()
        self._probes = [0, 0]
        self._draining = False
        self._cancel_reason: str | None = None
        self._running: dict[TaskFuture, None] = {}
        self._delayed: _DelayedRuns | None = None
        self._start_pool()

    @abstractmethod
    def _start_pool(self) -> None: ...

    @abstractmethod
    def _stop_pool(self, abandon: bool) -> None: ...

    @abstractmethod
    def _dispatch(self, run: PendingRun) -> None:
        """Hand a runnable run to a worker; called from any thread."""

    def submit(self, call: TaskCall, upstreams: Sequence[TaskFuture]) -> TaskFuture:
        if not self._started:
            raise self._not_started()
        payload = self._pickle_call(call) if self._pickles else None
        future = TaskFuture(call.task, call.run_name, call.run_id)
        next(self._accepted)
        run = PendingRun(call, upstreams, future, payload)
        if upstreams:
            run.dispatch_when_ready(self._dispatch)
        else:
            self._dispatch(run)
        return future

    #: whether submit() pickles calls (then _pickle_call must be overridden)
    _pickles = False

    def _pickle_call(self, call: TaskCall) -> bytes | None:
        """The pickled call for runners that pickle (raising SerializationError)."""
        return None

    def _cancelled(self, run: PendingRun) -> bool:
        """Finish ``run`` as CANCELLED if the runner is cancelling; True if it did."""
        reason = self._cancel_reason
        if reason is None:
            return False
        self._complete(run, Cancelled(f"cancelled before it started: {reason}"))
        return True

    def _complete(self, run: PendingRun, state: State) -> None:
        """Record a run's outcome: retry later, or finish its future."""
        if self._settle(run, state):
            self._count_finished()

    def _settle(self, run: PendingRun, state: State) -> bool:
        """Finish the run's future, or schedule its retry; True if the run is final.

        A final run must then be counted with ``_count_finished()``.
        """
        if state.type is _PENDING and state.name == AWAITING_RETRY:
            if self._cancel_reason is None:
                if self._delayed is None:
                    with self._lock:
                        if self._delayed is None:
                            self._delayed = _DelayedRuns(self._dispatch)
                run.call = run.call.next_attempt()
                run.future._state = state
                if self._delayed.add(time.monotonic() + state.data, run):
                    return False
            state = Cancelled(f"not retried: {self._cancel_reason or 'the runner stopped'}")
        run.future._finish(state)
        return True

    def _count_finished(self) -> None:
        next(self._finished)
        # the drain sets _draining before it compares the counts, so a finisher that
        # reads False here has already been counted when the drain looks
        if self._draining:
            with self._lock:
                self._drained.notify_all()

    def _so_far(self, which: int) -> int:
        # called with self._lock held, by the drain only: every probe adds one to the count
        counter = self._accepted if which == 0 else self._finished
        n = next(counter) - self._probes[which]
        self._probes[which] += 1
        return n

    def _stop(self, abandon: bool, reason: str) -> None:
        if abandon:
            self._cancel_reason = reason
            for future in list(self._running):
                future._finish(Crashed(errors.Crash(f"stopped while running: {reason}"),
                                       f"stopped while running: {reason}"))
            if self._delayed is not None:
                for run in self._delayed.stop():
                    self._complete(run, Cancelled(f"not retried: {reason}"))
            self._stop_pool(abandon=True)
            return
        with self._lock:
            self._draining = True
            while self._so_far(1) < self._so_far(0):
                self._drained.wait(0.5)  # the timeout only guards against a missed wake-up
            self._draining = False
        if self._delayed is not None:
            self._delayed.stop()
        self._stop_pool(abandon=False)


class _DelayedRuns:
    """One timer thread that re-dispatches runs whose retry delay has passed."""

    def __init__(self, dispatch: Any) -> None:
        self._dispatch = dispatch
        self._heap: list = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="braid-retry-timer", daemon=True)
        self._thread.start()

    def add(self, when: float, run: PendingRun) -> bool:
        """Schedule ``run``; False if the timer has stopped (the caller must end the run)."""
        with self._cond:
            if self._stopped:
                return False
            heapq.heappush(self._heap, (when, next(self._seq), run))
            self._cond.notify()
            return True

    def stop(self) -> list[PendingRun]:
        """Stop the timer; return the runs still waiting."""
        with self._cond:
            self._stopped = True
            left = [item[2] for item in self._heap]
            self._heap.clear()
            self._cond.notify()
        if self._thread is not threading.current_thread():
            self._thread.join()
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
                run = heapq.heappop(self._heap)[2]
            self._dispatch(run)
