"""How a Ray outcome becomes a braid State: a run's header, its fetched result, or a Ray
error.  The one place where Ray's exceptions are translated into braid's."""

from __future__ import annotations

import logging
from typing import Any

import ray
from ray.exceptions import RayError, RayTaskError, TaskCancelledError

from braid import errors
from braid.adapters.ray.future import RayTaskFuture
from braid.core.calls import TaskCall
from braid.core.context import default_run_name
from braid.core.futures import TaskFuture
from braid.core.runner import Run
from braid.core.serialization import loads
from braid.core.states import Crashed, DeferredState, Failed, State

__all__ = ["ray_name", "failure_state", "native_ref", "read_header", "refuse"]

_log = logging.getLogger("braid")


def ray_name(call: TaskCall) -> str:
    """The name Ray shows for the run: braid's run name, known here unless its template
    needs upstream results (then the task's name)."""
    if call.run_name is not None:
        return call.run_name
    if call.task.task_run_name is None:
        return default_run_name(call.task.name, call.run_id)
    return call.task.name


def failure_state(exc: BaseException, call: TaskCall) -> State:
    """Translate a Ray error into braid's: never let a Ray exception reach the user.

    The message names the run (its run name, or braid's default name from its id) and
    keeps Ray's reason (the first line of Ray's error)."""
    name = ray_name(call)
    cause = exc.cause if isinstance(exc, RayTaskError) and exc.cause is not None else exc
    if isinstance(cause, TaskCancelledError):
        message = f"task run {name!r}: its Ray task was cancelled"
        err: errors.BraidError = errors.Crash(message)
    elif isinstance(exc, RayTaskError):
        message = (
            f"task run {name!r}: the Ray task failed outside the task's code: "
            f"{type(cause).__name__}: {cause}"
        )
        err = errors.Crash(message)
    else:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        message = (
            f"task run {name!r}: the Ray worker running it was lost and Ray gave "
            f"up on it ({type(exc).__name__}: {first})"
        )
        err = errors.WorkerLost(message)
    err.__cause__ = cause
    return Crashed(err, message)


def refuse(run: Run, exc: BaseException) -> None:
    """End ``run`` CRASHED because Ray would not take its task (``exc`` says why)."""
    if run.call is None:
        return
    message = f"Ray refused task run {ray_name(run.call)!r}: {type(exc).__name__}: {exc}"
    crash = errors.Crash(message)
    crash.__cause__ = exc
    run.finish(Crashed(crash, message))


def native_ref(u: TaskFuture, session: Any) -> Any:
    """The ObjectRef a downstream Ray task can take for upstream ``u`` (its result), or
    None: not a Ray run, or one of an earlier Ray connection (its ref is dead; the run's
    State is passed instead, its result read here if it was read before, else it fails
    by name)."""
    if isinstance(u, RayTaskFuture) and u.session == session:
        return u.data_ref
    return None


# -- reading a run's header ------------------------------------------------------------
def _label(future: RayTaskFuture, state: State | None = None) -> str:
    name = (state.task_run_name if state is not None else None) or future.task_run_name
    return repr(name) if name else str(future.task_run_id)


def read_header(header: Any, future: RayTaskFuture) -> tuple[State, list[Any] | None]:
    """The run's final state (data left in Ray when COMPLETED) and its log records."""
    head, needs_data, shipped = header
    try:
        state: State = loads(head)
    except Exception as exc:  # noqa: BLE001 - e.g. the exception's class is not importable
        return _undecodable(exc, _label(future)), None
    if needs_data and state.is_completed():
        data_ref, label = future.data_ref, _label(future, state)
        state = DeferredState.wrap(state, lambda: _fetch_state(data_ref, label))
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
        message = (
            f"task run {label}: its result could not be fetched from Ray "
            f"({type(exc).__name__}: {first})"
        )
        err = errors.WorkerLost(message)
        err.__cause__ = exc
        return Crashed(err, message)
    try:
        state: State = loads(payload)
    except Exception as exc:  # noqa: BLE001 - e.g. the result's class is not importable here
        return _undecodable(exc, label)
    return state


def _undecodable(exc: BaseException, label: str) -> State:
    err = errors.SerializationError(
        f"task run {label}: its final state could not be unpickled in this process: "
        f"{type(exc).__name__}: {exc}"
    )
    err.__cause__ = exc
    return Failed(err)
