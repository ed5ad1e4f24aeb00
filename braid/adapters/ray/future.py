"""RayTaskFuture: a braid future backed by a Ray task's two return objects.

Life of one future::

    created at submit                     PENDING (refs None while foreign upstreams run)
      runner hands the call to Ray        header ref, data ref = remote(...)
                                          attach(): header_ref.future() callback
      the header arrives  ────────────>   on_outcome(ref, header | RayError) (Ray's thread)
        a header (small)                  the runner replays the log records and finishes
                                          the run with the header's State
        a Ray error                       the runner turns it into a State (WorkerLost, ...)
                                          or runs the call again (an upstream's worker died)
      downstream Ray tasks                get the data ref as an argument: the result goes
                                          worker to worker, never through the driver
      .result() / state.data              the data ref is fetched (once, then cached)

``.state`` never blocks and never fetches: a COMPLETED state's ``data`` (and
``result()``) fetches the result from Ray the first time it is read, so code that
only looks at states (records, reports, ``done()``) never pulls a result into this
process.  ``wait()`` on a Ray worker blocks in ``ray.get`` on the header, which hands
the task's CPU back to Ray while it waits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError

from braid import errors
from braid.core.futures import TaskFuture, worker_slot
from braid.core.states import State

__all__ = ["RayTaskFuture", "RayWait", "RAY_WAIT"]

_SLICE = 0.05  # how long one wait lasts when futures of other runners are in the mix
_LAG = 1.0  # how long to let Ray's done-callback settle a future whose ref is ready
_DRIVER_SLICE = 0.2  # longest single ray.get of a wait on the driver (Ctrl-C between)


class RayTaskFuture(TaskFuture):
    """A :class:`~braid.core.futures.TaskFuture` whose run is a Ray task.

    Finished exactly once, by the runner: with the State the Ray task's header
    carried, or with one the runner made (a crash, a cancellation).
    """

    __slots__ = (
        "ref",
        "data_ref",
        "on_outcome",
        "header_state",
        "native_slots",
        "session",
        "index",
        "held",
    )

    def __init__(self, task: Any, name: str | None, run_id: int) -> None:
        super().__init__(task, name, run_id)
        #: the header ref of the current attempt at running it (None before dispatch)
        self.ref: Any = None
        #: its payload ref: what downstream Ray tasks receive
        self.data_ref: Any = None
        #: the runner's handler of the header (or of the Ray error) of ``ref``
        self.on_outcome: Callable[[Any, Any], None] | None = None
        #: the State the header carried, once read (its data stays in Ray)
        self.header_state: State | None = None
        #: which upstreams were passed to Ray as refs in the current attempt
        self.native_slots: list[int] = []
        #: the Ray connection its refs belong to (a ref outlives neither its driver nor
        #: its cluster: a later flow on another connection gets the result, not the ref)
        self.session: Any = None
        #: its place in the header list of a Ray task it shares with other runs (None:
        #: the header ref is its own)
        self.index: int | None = None
        #: the pending batch (``braid.adapters.ray.batching``) holding the run before
        #: it is sent, else None
        self.held: Any = None

    # -- runner side ------------------------------------------------------------------
    def attach(
        self, header_ref: Any, data_ref: Any, on_outcome: Callable[[Any, Any], None]
    ) -> None:
        """Follow a Ray task: ``on_outcome(header_ref, header or RayError)`` when it ends."""
        self.data_ref = data_ref
        self.ref = header_ref
        self.on_outcome = on_outcome
        self.index = None
        header_ref.future().add_done_callback(lambda cf: on_outcome(header_ref, _outcome(cf)))

    @staticmethod
    def attach_shared(
        futures: list[RayTaskFuture],
        header_ref: Any,
        data_refs: list[Any],
        handlers: list[Callable[[Any, Any], None]],
    ) -> None:
        """Follow one Ray task that runs several runs: ``futures[i]``'s header is item
        ``i`` of the list ``header_ref`` holds, its result ``data_refs[i]``; one callback
        hands the list (or the Ray error) to every handler."""
        # whoever brings the list first (Ray's callback, or a waiter's ray.get) settles
        # every run, in order: none is final before an upstream of it in the same task
        shared = _SharedOutcome(handlers)
        for i, future in enumerate(futures):
            future.data_ref = data_refs[i]
            future.ref = header_ref
            future.on_outcome = shared
            future.index = i
        header_ref.future().add_done_callback(lambda cf: shared(header_ref, _outcome(cf)))

    def detach(self) -> None:
        """Forget the current Ray task (it failed for Ray's reasons; it may run again)."""
        self.ref = None
        self.data_ref = None
        self.index = None

    def own_header(self, outcome: Any) -> Any:
        """This run's header out of what its header ref held (or the Ray error)."""
        index = self.index
        if index is None or isinstance(outcome, BaseException):
            return outcome
        return outcome[index]

    def set_final(self, state: State, if_set: Callable[[], Any] | None = None) -> bool:
        """As :meth:`TaskFuture.set_final`; a state made here (a crash, a cancellation)
        has no result in Ray, so downstream tasks get the State, not the data ref."""
        if state is self.header_state:
            return super().set_final(state, if_set)
        return super().set_final(state, self.detach)

    # -- TaskFuture ----------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> None:
        """Block until the run is final or ``timeout`` seconds passed, in ``ray.get``.

        The waiter takes the header itself as soon as Ray has it, without waiting for
        Ray's done-callback to come round (whichever is first ends the run).  On a Ray
        worker ``ray.get`` hands the task's CPU back to Ray while it blocks; on the
        driver each ``ray.get`` lasts at most :data:`_DRIVER_SLICE`, so Ctrl-C is
        seen between them.
        """
        if self.done():
            return
        on_driver = getattr(worker_slot, "hook", None) is not RAY_WAIT
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done():
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if on_driver:
                left = _DRIVER_SLICE if left is None else min(left, _DRIVER_SLICE)
            ref, handler = self.ref, self.on_outcome
            if ref is None or handler is None:  # not handed to Ray yet, or being run again
                super().wait(0.05 if left is None else min(left, 0.05))
            else:
                try:
                    outcome = ray.get(ref, timeout=left)
                except GetTimeoutError:
                    if on_driver and (deadline is None or time.monotonic() < deadline):
                        continue
                    return
                except RayError as exc:
                    outcome = exc
                handler(ref, outcome)
            if deadline is not None and time.monotonic() >= deadline:
                return

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any:
        """Wait for the run, then return its value (fetched from Ray once) or raise its error."""
        self.wait(timeout)
        if not self.done():
            raise errors.WaitTimeout(
                f"task run {self.task_run_name or self.task_run_id!s} is not final after "
                f"{timeout} s (state {self.state.name})"
            )
        return self.state.result(raise_on_failure)

    def __repr__(self) -> str:
        return f"<RayTaskFuture {self.task_run_name or ''} {self.state.name}>"


class _SharedOutcome:
    """The handlers of the runs of one shared Ray task, called in the runs' order, by
    one thread at a time (a second caller finds them settled)."""

    __slots__ = ("handlers", "lock")

    def __init__(self, handlers: list[Callable[[Any, Any], None]]) -> None:
        self.handlers = handlers
        self.lock = threading.RLock()

    def __call__(self, ref: Any, outcome: Any) -> None:
        with self.lock:
            for handler in self.handlers:
                handler(ref, outcome)


def _outcome(cf: Any) -> Any:
    """The value of a finished ``concurrent.futures.Future`` from ``ref.future()``, or its error."""
    exc = cf.exception()
    return cf.result() if exc is None else exc


class RayWait:
    """The worker-slot hook of threads running a braid task on Ray.

    ``release``/``reacquire`` do nothing: Ray has no slot to hand back by hand, and
    single-future waits go through ``ray.get``, which frees the CPU itself.
    """

    def release(self) -> None:
        """Nothing to give back (see the class)."""

    def reacquire(self) -> None:
        """Nothing to take back (see the class)."""

    def wait_any(self, futures: list[TaskFuture], timeout: float | None) -> None:
        """Return once one of ``futures`` is final, or after ``timeout`` seconds.

        Futures of this runner are waited on in ``ray.wait`` (the CPU is Ray's
        meanwhile); futures of other runners, or not yet handed to Ray, by short
        waits on their own locks.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while futures and not any(f.done() for f in futures):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            refs: dict[Any, TaskFuture] = {}
            others: list[TaskFuture] = []
            for f in futures:
                ref = f.ref if isinstance(f, RayTaskFuture) else None
                if ref is None:
                    others.append(f)
                else:
                    refs[ref] = f
            step = _SLICE if left is None else min(left, _SLICE)
            if not refs:
                others[0].wait(step)
                continue
            ready, _ = ray.wait(
                list(refs), num_returns=1, timeout=left if not others else step, fetch_local=False
            )
            for ref in ready:
                TaskFuture.wait(refs[ref], _LAG)


#: the one hook instance (futures compare against it to know they run on a Ray worker)
RAY_WAIT = RayWait()
