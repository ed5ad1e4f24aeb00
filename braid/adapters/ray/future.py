"""RayTaskFuture: a braid future backed by a Ray task's two return objects.

Life of one future::

    created at submit                     PENDING (refs None while foreign upstreams run)
      runner hands the call to Ray        header ref, data ref = remote(...)
                                          header_ref.future().add_done_callback
      the header arrives  ────────────>   _from_ray(ref, header | RayError)   (Ray's thread)
        a header (small)                  log records replayed, then settled: done() is
                                          True, callbacks run; ``.state`` is final
        a Ray error                       the runner turns it into a State (WorkerLost, ...)
                                          or runs the call again (an upstream's worker died)
      downstream Ray tasks                get the data ref as an argument: the result goes
                                          worker to worker, never through the driver
      .result() / state.data              the data ref is fetched (once, then cached)

``.state`` never blocks and never fetches: before the end it is PENDING; after, a
COMPLETED state's ``data`` (and ``result()``) fetches the result from Ray the first
time it is read, so code that only looks at states (records, reports, ``done()``)
never pulls a result into this process.  ``wait()`` blocks in ``ray.get`` on the
header, which on a Ray worker hands the task's CPU back to Ray while it waits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError

from braid import errors
from braid.core import logs
from braid.core.futures import TaskFuture, worker_slot
from braid.core.serialization import loads
from braid.core.states import Crashed, Failed, State

__all__ = ["RayTaskFuture"]

_log = logging.getLogger("braid")
_DATA = State.__dict__["data"]  # the slot a State keeps its data in


class RayTaskFuture(TaskFuture):
    """A :class:`~braid.core.futures.TaskFuture` whose run is a Ray task.

    Settled exactly once, either by the header the Ray task returned or with a
    State the runner made (crash, cancellation).
    """

    __slots__ = ("_ref", "_data_ref", "_on_ray_error", "_on_final")

    def __init__(self, task: Any, name: str | None, run_id: int,
                 on_ray_error: Callable[[RayTaskFuture, RayError], None],
                 on_final: Callable[[RayTaskFuture], None]) -> None:
        super().__init__(task, name, run_id)
        self._ref: Any = None        # the header ref of the current attempt at running it
        self._data_ref: Any = None   # its payload ref: what downstream Ray tasks receive
        self._on_ray_error = on_ray_error
        self._on_final = on_final

    # -- runner side ------------------------------------------------------------------
    def _attach(self, header_ref: Any, data_ref: Any) -> None:
        """Follow a Ray task: settle when its header is ready (callback on Ray's thread)."""
        self._data_ref = data_ref
        self._ref = header_ref
        header_ref.future().add_done_callback(
            lambda cf: self._from_ray(header_ref, _outcome(cf)))

    def _detach(self) -> None:
        """Forget the current Ray task (it failed for Ray's reasons; it may run again)."""
        self._ref = None
        self._data_ref = None

    def _from_ray(self, ref: Any, outcome: Any) -> None:
        """Take the outcome of header ``ref`` (a header or a Ray error) unless stale or late."""
        if ref is not self._ref or self.done():
            return
        if isinstance(outcome, BaseException):
            self._on_ray_error(self, outcome)
            return
        state, records = _read_header(outcome, self._data_ref, self)
        # replayed now, not when someone reads the result: unread runs log too
        logs.replay(records, "ray")
        self._settle(state, from_ray=True)

    def _finish(self, state: State, if_set: Callable[[], Any] | None = None) -> bool:
        # a state made here (a crash, a cancellation) has no result in Ray: downstream
        # tasks get the State, so the data ref goes with the same lock that settles it
        return self._settle(state, from_ray=False)

    def _settle(self, state: State, from_ray: bool) -> bool:
        settled = super()._finish(state, None if from_ray else self._drop_data_ref)
        if settled:
            self._on_final(self)
        return settled

    def _drop_data_ref(self) -> None:
        self._data_ref = None

    # -- TaskFuture ----------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> None:
        """Block until the run is final or ``timeout`` seconds passed, in ``ray.get``.

        On a Ray worker ``ray.get`` hands the task's CPU back to Ray while it blocks;
        on the driver it is the quickest way to the header, and Ctrl-C interrupts it.
        """
        if not _on_ray_worker():
            # on the driver the header's done-callback settles the future: wait for that
            # on the future's lock rather than fetching the header a second time
            TaskFuture.wait(self, timeout)
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done():
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ref = self._ref
            if ref is None:  # not handed to Ray yet, or being run again: wait for it
                super().wait(0.05 if left is None else min(left, 0.05))
            else:
                try:
                    outcome = ray.get(ref, timeout=left)
                except GetTimeoutError:
                    return
                except RayError as exc:
                    outcome = exc
                self._from_ray(ref, outcome)
            if deadline is not None and time.monotonic() >= deadline:
                return

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any:
        """Wait for the run, then return its value (fetched from Ray once) or raise its error."""
        self.wait(timeout)
        if not self.done():
            raise errors.WaitTimeout(
                f"task run {self._name or self.task_run_id!s} is not final after {timeout} s"
                f" (state {self._state.name})"
            )
        return self._state.result(raise_on_failure)

    def __repr__(self) -> str:
        return f"<RayTaskFuture {self._name or ''} {self._state.name}>"


class _ResultState(State):
    """A COMPLETED state whose ``data`` stays in Ray until first read.

    Everything but the data came in the run's header.  Reading ``data``,
    ``result()`` or pickling the state fetches the payload once; if that fails (the
    result's class is not importable here, the node holding it is gone) ``result()``
    gives that error the way a failed state does, and ``data`` raises it.
    """

    __slots__ = ("_data_ref", "_label", "_fetched")

    @classmethod
    def wrap(cls, light: State, data_ref: Any, label: str) -> _ResultState:
        state = cls(light.type, light.name, light.message, None, light._ts)
        state.task_run_name = light.task_run_name
        state.extra = light.extra
        state.started = light.started
        state.where = light.where
        state._data_ref = data_ref
        state._label = label
        state._fetched = None
        return state

    def _fetch(self) -> State:
        fetched = self._fetched
        if fetched is None:
            fetched = _fetch_state(self._data_ref, self._label)
            if fetched.is_completed():
                _DATA.__set__(self, fetched.data)
            self._fetched = fetched
        return fetched

    @property  # type: ignore[override]
    def data(self) -> Any:
        fetched = self._fetch()
        if not fetched.is_completed():
            raise fetched.data
        return _DATA.__get__(self, State)

    @data.setter
    def data(self, value: Any) -> None:
        _DATA.__set__(self, value)

    def result(self, raise_on_failure: bool = True) -> Any:
        fetched = self._fetch()
        if not fetched.is_completed():
            return fetched.result(raise_on_failure)
        return _DATA.__get__(self, State)

    def __reduce__(self):
        fetched = self._fetch()
        return super().__reduce__() if fetched.is_completed() else fetched.__reduce__()


def _on_ray_worker() -> bool:
    """Whether this thread runs a braid task on a Ray worker (then waits go through Ray)."""
    from braid.adapters.ray.worker import _RAY_WAIT

    return getattr(worker_slot, "hook", None) is _RAY_WAIT


def _outcome(cf: Any) -> Any:
    """The value of a finished ``concurrent.futures.Future`` from ``ref.future()``, or its error."""
    exc = cf.exception()
    return cf.result() if exc is None else exc


def _label(future: RayTaskFuture, state: State | None = None) -> str:
    name = (state.task_run_name if state is not None else None) or future.task_run_name
    return repr(name) if name else str(future.task_run_id)


def _read_header(header: Any, data_ref: Any, future: RayTaskFuture,
                 ) -> tuple[State, list | None]:
    """The run's final state (data left in Ray when COMPLETED) and its log records."""
    head, needs_data, shipped = header
    try:
        state = loads(head)
    except Exception as exc:  # noqa: BLE001 - e.g. the exception's class is not importable
        return _undecodable(exc, _label(future)), None
    if needs_data and state.is_completed():
        state = _ResultState.wrap(state, data_ref, _label(future, state))
    records = None
    if shipped is not None:
        try:
            records = loads(shipped)
        except Exception:  # noqa: BLE001 - losing records must not lose the run
            _log.warning("log records of task run %s could not be unpickled", _label(future))
    return state, records


def _fetch_state(data_ref: Any, label: str) -> State:
    """Fetch and unpickle a run's full final State; a failure to do so as a State."""
    try:
        payload = ray.get(data_ref)
    except RayError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        message = (f"task run {label}: its result could not be fetched from Ray "
                   f"({type(exc).__name__}: {first})")
        err = errors.WorkerLost(message)
        err.__cause__ = exc
        return Crashed(err, message)
    try:
        return loads(payload)
    except Exception as exc:  # noqa: BLE001 - e.g. the result's class is not importable here
        return _undecodable(exc, label)


def _undecodable(exc: BaseException, label: str) -> State:
    err = errors.SerializationError(
        f"task run {label}: its final state could not be unpickled in this process: "
        f"{type(exc).__name__}: {exc}"
    )
    err.__cause__ = exc
    return Failed(err)
