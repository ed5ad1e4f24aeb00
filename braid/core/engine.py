"""The engine: the one function that executes a task run, on every backend.

How a call travels (every runner; only the arrows marked * differ)::

    caller thread                          wherever the task runs
    -------------                          ----------------------
    Task.submit(*args, **kw)
      resolve.extract: futures -> slots
      TaskCall(task, args, kw, ...)
      runner.submit(call, upstreams) --*-->  run_task(call, upstream_states)
        returns TaskFuture                     upstream failed?  -> UpstreamFailed
                                               resolve.materialize: slots -> values
                                               render the run name, set the context
                                               attempt loop: call fn (sync/async,
                                                 with a deadline), retry on failure
                                           <--*-- returns a State (never raises)
      run.finish(state)   (the run table finishes the future)

Threads call :func:`run_task` in a pool thread and finish the future with the
State; processes ship the call there and the State back; Dask and Ray run it as
the body of their own task, so their future's value is always a State.  Retries,
time-outs, naming, the run context and async handling live here and nowhere
else, so every runner behaves the same.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from braid import errors
from braid.core import resolve
from braid.core.calls import FLAT, TaskCall, render_run_name
from braid.core.context import RunContext, TaskRunInfo, current_run, quiet_console_here
from braid.core.deadlines import (
    LentSlot,
    await_with_deadline,
    call_before_deadline,
    raise_in_thread,
)
from braid.core.futures import worker_slot
from braid.core.hooks import mark_ran as mark_hooks_ran
from braid.core.hooks import ran as hooks_ran
from braid.core.logs import RecordSink, capture, ensure_print_hook
from braid.core.resolve import ONE_UPSTREAM_ARGS
from braid.core.states import (
    Crashed,
    Failed,
    State,
    StateType,
    TimedOut,
    UpstreamFailedState,
)

if TYPE_CHECKING:
    import asyncio
    from contextvars import Token

    from braid.core.cached import CachedRun

    class _TaskRunContext(RunContext):
        """What :func:`_enter_context` makes: a context whose ``task_run`` is set."""

        task_run: TaskRunInfo


__all__ = [
    "TaskCall",
    "run_task",
    "run_task_async",
    "run_pickled",
    "render_run_name",
    "AWAITING_RETRY",
]

AWAITING_RETRY = "AwaitingRetry"
_COMPLETED = StateType.COMPLETED


# -- preparing a run ----------------------------------------------------------------
def _prepare(
    call: TaskCall, upstream_states: Any
) -> tuple[tuple[Any, ...], dict[str, Any]] | State:
    """Check upstreams and put their values in place; a State if the run cannot start."""
    args, kwargs = call.args, call.kwargs
    if not call.resolve:
        return args, kwargs
    if args is ONE_UPSTREAM_ARGS:  # a chain's link: the upstream's value is the argument
        st = upstream_states[0]
        if st.type is _COMPLETED:
            return (st.data,), kwargs
    values = []
    must = call.must_succeed or ()
    for i, st in enumerate(upstream_states or ()):
        if st.type is StateType.COMPLETED:
            values.append(st.data)
        elif must[i]:
            if not st.is_final():
                return Crashed(
                    errors.BraidError(
                        f"runner bug: upstream {i} of task {call.task.name!r} is not final ({st!r})"
                    )
                )
            return UpstreamFailedState(st, f"task {call.task.name!r}")
        else:
            values.append(st.result(raise_on_failure=False))
    if call.resolve == FLAT:
        return resolve.materialize_flat(args, kwargs, values)
    return resolve.materialize(args, kwargs, values)


def _enter_context(
    call: TaskCall,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    nested_runner: Any,
    on_start: Callable[[str], None] | None,
) -> tuple[_TaskRunContext, Token[RunContext | None]]:
    task = call.task
    name = call.run_name
    info = TaskRunInfo(
        call.run_id, name, task, call.attempt, args, kwargs, call_tags(call) if call.extra else ()
    )
    log_prints = task.log_prints
    if log_prints is None:
        log_prints = call.log_prints
    if log_prints:
        ensure_print_hook()
    ctx = RunContext(call.flow_run, info, nested_runner, log_prints)
    token = current_run.set(ctx)
    if name is None and task.task_run_name is not None:
        try:
            info.name = name = render_run_name(task, args, kwargs, call.run_id)
        except BaseException:
            current_run.reset(token)
            raise
        if on_start is not None:
            on_start(name)
    hooks = task.hooks
    if hooks is not None and call.attempt == 1 and hooks.wants(StateType.RUNNING):
        hooks.run(task, info, State(StateType.RUNNING))
    return ctx, token  # type: ignore[return-value]  # its task_run is info


def _final(
    state: State, ctx: _TaskRunContext | None, call: TaskCall, started: float | None = None
) -> State:
    # a default name stays None here: futures and records make it from the run id
    state.task_run_name = ctx.task_run.explicit_name if ctx is not None else call.run_name
    if started is not None:
        state.started = started
        state.where = _where()
    hooks = call.task.hooks
    if hooks is not None and hooks.wants(state.type):
        run_hooks(call, state, ctx.task_run if ctx is not None else None)
    return state


def run_hooks(call: TaskCall, state: State, task_run: TaskRunInfo | None = None) -> None:
    """Run the hooks ``call``'s task has for ``state`` (once: the state is marked)."""
    hooks = call.task.hooks
    if hooks is None or hooks_ran(state) or not hooks.wants(state.type):
        return
    if task_run is None:
        task_run = TaskRunInfo(
            call.run_id,
            state.task_run_name or call.run_name,
            call.task,
            call.attempt,
            call.args,
            call.kwargs,
            call_tags(call),
        )
    hooks.run(call.task, task_run, state)
    mark_hooks_ran(state)


def call_tags(call: TaskCall) -> tuple[str, ...]:
    """The tags of the ``tags()`` blocks ``call`` was submitted in."""
    extra = call.extra
    return tuple(extra.get("tags", ())) if extra else ()


def _returned(
    value: Any, call: TaskCall, ctx: _TaskRunContext, started: float, reschedule: bool
) -> State | tuple[float, State]:
    """The run's State from what the task returned: COMPLETED with the value, or the
    State it returned (a FAILED one retries like an exception would)."""
    if not isinstance(value, State):
        return _final(State(_COMPLETED, "Completed", "", value), ctx, call, started)
    state = value.copy()  # the task's own object stays as it was
    if not state.is_final():
        return _final(State(_COMPLETED, "Completed", "", value), ctx, call, started)
    if state.type is not StateType.FAILED:
        return _final(state, ctx, call, started)
    return _retry_or_final(state, call, ctx, started, reschedule)


def _where() -> str:
    """This process and thread, as a lane name: ``pid 123 / braid-worker-0`` (cached)."""
    where = _thread_state.__dict__.get("where")
    if where is None or _thread_state.where_pid != _pid:
        _thread_state.where_pid = _pid
        where = _thread_state.where = f"pid {_pid} / {threading.current_thread().name}"
    return where


def name_lane(place: str) -> None:
    """Name where task runs on this thread are said to run (a backend's own words:
    a Dask worker's address, a Ray node); the thread's name is added to it."""
    _thread_state.where_pid = _pid
    _thread_state.where = f"{place} / {threading.current_thread().name}"


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()


_pid = os.getpid()
os.register_at_fork(after_in_child=_after_fork)


# -- retries --------------------------------------------------------------------------
def _retry_delay(call: TaskCall, state: State) -> float | None:
    """Seconds to wait before the next attempt, or None when the run should not retry."""
    task = call.task
    if call.attempt > task.retries:
        return None
    cond = task.retry_condition_fn
    if cond is not None:
        ctx = current_run.get()
        try:
            if not cond(task, ctx.task_run if ctx else None, state):
                return None
        except Exception as exc:  # a broken condition must not hide the task's own failure
            state.message += f" (retry_condition_fn raised {type(exc).__name__}: {exc})"
            return None
    delays = task.retry_delay_seconds
    if callable(delays):
        delays = delays(task.retries)
    if isinstance(delays, (list, tuple)):
        delay = float(delays[min(call.attempt - 1, len(delays) - 1)]) if delays else 0.0
    else:
        delay = float(delays or 0)
    jitter = task.retry_jitter_factor
    if jitter and delay > 0:
        delay = max(0.0, delay + random.uniform(-jitter * delay, jitter * delay))
    return delay


def _after_failure(
    exc: BaseException, call: TaskCall, ctx: _TaskRunContext, started: float, reschedule: bool
) -> State | tuple[float, State]:
    """What a failed attempt leads to: the run's final State, an AwaitingRetry State for
    the runner to reschedule, or the seconds to wait before retrying in place."""
    state = _failure_state(exc, call)
    if state.type is StateType.CRASHED:
        return _final(state, ctx, call, started)
    return _retry_or_final(state, call, ctx, started, reschedule)


def _retry_or_final(
    state: State, call: TaskCall, ctx: _TaskRunContext, started: float, reschedule: bool
) -> State | tuple[float, State]:
    """A FAILED attempt's outcome: final when it may not retry, AwaitingRetry for the
    runner to reschedule, or the seconds to wait before retrying in place."""
    delay = _retry_delay(call, state)
    if delay is None:
        return _final(state, ctx, call, started)
    if reschedule and delay > 0:
        # started: the AwaitingRetry state says when and where its attempt ran
        retry = State(StateType.PENDING, AWAITING_RETRY, state.message, delay)
        return _final(retry, ctx, call, started)
    return (delay, state)


def _retried_here(
    retried: list[tuple[Any, ...]] | None, started: float, delay: float, state: State
) -> list[tuple[Any, ...]]:
    """``retried`` with an attempt retried in place added, for the run's record (see
    :mod:`braid.core.records`): start, end, state name, where, first line, delay."""
    message = state.message.strip()
    line = message.splitlines()[0] if message else None
    attempt = (started, time.time(), AWAITING_RETRY, _where(), line, delay)
    return [attempt] if retried is None else [*retried, attempt]


def _failure_state(exc: BaseException, call: TaskCall) -> State:
    if isinstance(exc, _AttemptTimedOut):
        return TimedOut(exc.message, errors.TaskTimeout(exc.message))
    if isinstance(exc, Exception):
        return Failed(exc)
    message = f"{type(exc).__name__} raised inside task {call.task.name!r}; the run was stopped"
    crash = errors.Crash(message)
    crash.__cause__ = exc
    return Crashed(crash, message)


class _AttemptTimedOut(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _timed_out(call: TaskCall, ctx: _TaskRunContext) -> Callable[[], BaseException]:
    return lambda: _AttemptTimedOut(_timeout_message(call, ctx.task_run.name))


def _timeout_message(call: TaskCall, name: str) -> str:
    return f"task run {name!r} exceeded its timeout of {call.task.timeout_seconds} s"


# -- synchronous driver -----------------------------------------------------------------
_thread_state = threading.local()


def thread_loop() -> asyncio.AbstractEventLoop:
    """The event loop this thread keeps for async tasks, made on first use."""
    import asyncio

    loop = getattr(_thread_state, "loop", None)
    if loop is None or loop.is_closed():
        loop = _thread_state.loop = asyncio.new_event_loop()
    return loop


def close_thread_loop() -> None:
    """Close this thread's event loop, if it has one (pool threads call it as they exit)."""
    loop = getattr(_thread_state, "loop", None)
    if loop is not None:
        _thread_state.loop = None
        if not loop.is_closed():
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()


def run_task(
    call: TaskCall,
    upstream_states: Any = None,
    nested_runner: Any = None,
    reschedule_retries: bool = False,
    on_start: Callable[[str], None] | None = None,
) -> State:
    """Run one task call to a State; never raises for anything the task does.

    ``upstream_states`` are the final states of ``call``'s upstreams, in slot order.
    ``nested_runner`` receives tasks submitted from inside this one.  With
    ``reschedule_retries`` a failed attempt that should retry after a delay returns a
    PENDING state named ``AwaitingRetry`` whose data is the delay, so the runner can
    run ``call.next_attempt()`` later without holding a worker; otherwise the engine
    sleeps and retries in place.
    """
    if not call.resolve:  # no upstream values to put in place: _prepare's first case
        args, kwargs = call.args, call.kwargs
    else:
        prepared = _prepare(call, upstream_states)
        if isinstance(prepared, State):
            return _final(prepared, None, call)
        args, kwargs = prepared
    try:
        ctx, token = _enter_context(call, args, kwargs, nested_runner, on_start)
    except Exception as exc:
        return _final(Failed(exc), None, call)
    started = time.time()
    cached = _start_caching(call, ctx) if call.extra is not None else None
    try:
        if cached is not None and (cached.hit or cached.failure is not None):
            if cached.hit:
                done = State(_COMPLETED, "Cached", "", cached.value)
            else:
                assert cached.failure is not None
                done = Failed(cached.failure)
            return cached.finish(_final(done, ctx, call, started))
        task = call.task
        fn = task.fn
        is_async = task.is_async
        retried: list[tuple[Any, ...]] | None = None
        while True:
            try:
                if task.timeout_seconds is not None:
                    value = _call_with_deadline(call, ctx, fn, args, kwargs)
                elif is_async:
                    value = thread_loop().run_until_complete(fn(*args, **kwargs))
                else:
                    value = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - every outcome becomes a state
                outcome = _after_failure(exc, call, ctx, started, reschedule_retries)
            else:
                if not isinstance(value, State):  # the common case, written out
                    done = _final(State(_COMPLETED, "Completed", "", value), ctx, call, started)
                    if retried:
                        done.extra = {**(done.extra or {}), "attempts": retried}
                    return done if cached is None else cached.finish(done)
                outcome = _returned(value, call, ctx, started, reschedule_retries)
            if isinstance(outcome, State):
                if retried:
                    outcome.extra = {**(outcome.extra or {}), "attempts": retried}
                return outcome if cached is None else cached.finish(outcome)
            retried = _retried_here(retried, started, *outcome)
            if outcome[0] > 0:
                time.sleep(outcome[0])
            started = time.time()
            call = call.next_attempt()
            ctx.task_run.attempt = call.attempt
    finally:
        current_run.reset(token)


def _start_caching(call: TaskCall, ctx: _TaskRunContext) -> CachedRun | None:
    """The run's cache plan, transaction and limits (None when none applies); a run whose
    key cannot be made, or whose lock is not free in time, gets a plan that fails it."""
    extra = call.extra or {}
    if "cache" not in extra and "txn" not in extra and "limits" not in extra:
        return None
    from braid.core.cached import CachedRun as Run

    return Run.start(call, ctx.task_run, extra.get("cache"), extra.get("txn"), extra.get("limits"))


def _call_with_deadline(
    call: TaskCall,
    ctx: _TaskRunContext,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Call ``fn`` in a helper thread and stop waiting for it at the deadline.

    The helper thread borrows this worker's slot hook (see :class:`LentSlot`), so a
    nested wait inside it still hands the slot back.  At the deadline the helper is
    sent an asynchronous ``TaskTimeout`` (it stops at its next Python instruction; a
    thread blocked in C stays blocked until that call returns) and the attempt ends
    TimedOut at once.
    """
    timeout = call.task.timeout_seconds
    assert timeout is not None  # called only for a task with a time-out
    if call.task.is_async:
        coro = fn(*args, **kwargs)
        return thread_loop().run_until_complete(
            await_with_deadline(coro, timeout, _timed_out(call, ctx))
        )
    hook: Any = getattr(worker_slot, "hook", None)
    lent = LentSlot(hook) if hook is not None else None

    def lend() -> None:
        worker_slot.hook = lent

    finished, t = call_before_deadline(
        fn, args, kwargs, timeout, f"braid-timeout-{ctx.task_run.name}", lend
    )
    if finished is None:
        if lent is not None and lent.take_back():
            hook.reacquire()  # the helper had given the slot away while it waited
        if lent is None or not lent.busy:
            raise_in_thread(t, errors.TaskTimeout)
        raise _AttemptTimedOut(_timeout_message(call, ctx.task_run.name))
    ok, value = finished
    if ok:
        return value
    raise value


# -- the worker side of runners that pickle ----------------------------------------------
def run_pickled(
    call_bytes: bytes,
    upstream_payloads: Any = (),
    nested_runner: Any = None,
    log_level: int | None = 20,
    sink: RecordSink | None = None,
    reschedule_retries: bool = False,
) -> bytes:
    """Run a pickled call where a pickling runner delivered it; return the pickled State.

    ``upstream_payloads`` are the upstreams' final states, pickled or not.  Records
    made in the run at ``log_level`` and above (run loggers, other loggers, prints under
    ``log_prints``, warnings) go to ``sink`` as they are made (see
    :mod:`braid.core.logs`); without one, they travel back in ``state.extra["logs"]``.
    ``log_level=None``: this is the driver's own process (a Dask worker thread in it),
    whose loggers handle the run's records as they are made, as on threads.  Never
    raises for the task: a call that cannot be loaded here (a module missing on the
    worker) or a result that cannot be pickled gives a FAILED state.
    """
    return run_pickled_state(
        call_bytes, upstream_payloads, nested_runner, log_level, sink, reschedule_retries
    )[1]


def run_pickled_state(
    call_bytes: bytes,
    upstream_payloads: Any = (),
    nested_runner: Any = None,
    log_level: int | None = 20,
    sink: RecordSink | None = None,
    reschedule_retries: bool = False,
) -> tuple[State, bytes]:
    """As :func:`run_pickled`, returning the final State too (for a header of it)."""
    from braid.core.serialization import dumps_state, loads, pickle_state

    if log_level is not None:
        quiet_console_here()  # this process is a worker: its records are printed by the driver
    try:
        call = loads(call_bytes)
        states = [p if isinstance(p, State) else loads(p) for p in upstream_payloads]
    except Exception as exc:  # noqa: BLE001
        err = errors.SerializationError(
            f"the task call could not be loaded on the worker: {type(exc).__name__}: {exc}; "
            f"the task's module must be importable there"
        )
        err.__cause__ = exc
        failed = Failed(err)
        return failed, dumps_state(failed)
    if log_level is None:
        state = run_task(call, states, nested_runner, reschedule_retries)
    else:
        with capture(log_level, sink) as records:
            state = run_task(call, states, nested_runner, reschedule_retries)
        if records:  # no sink: the records travel with the state
            state.extra = {**(state.extra or {}), "logs": records}
    return pickle_state(state, call.task.name)


# -- asynchronous driver (``await task(x)`` on the caller's loop) ------------------------
async def run_task_async(
    call: TaskCall, upstream_states: Any = None, nested_runner: Any = None
) -> State:
    """Run an async task call on the running loop to a State; never raises for the task.

    The same steps as :func:`run_task`; retry delays are awaited, not slept.
    """
    import asyncio

    prepared = _prepare(call, upstream_states)
    if isinstance(prepared, State):
        return _final(prepared, None, call)
    args, kwargs = prepared
    try:
        ctx, token = _enter_context(call, args, kwargs, nested_runner, None)
    except Exception as exc:
        return _final(Failed(exc), None, call)
    started = time.time()
    retried: list[tuple[Any, ...]] | None = None
    try:
        task = call.task
        while True:
            try:
                result = task.fn(*args, **kwargs)
                if hasattr(result, "__await__"):
                    if task.timeout_seconds is not None:
                        result = await await_with_deadline(
                            result, task.timeout_seconds, _timed_out(call, ctx)
                        )
                    else:
                        result = await result
            except BaseException as exc:  # noqa: BLE001 - every outcome becomes a state
                outcome = _after_failure(exc, call, ctx, started, False)
            else:
                outcome = _returned(result, call, ctx, started, False)
            if isinstance(outcome, State):
                if retried:
                    outcome.extra = {**(outcome.extra or {}), "attempts": retried}
                return outcome
            retried = _retried_here(retried, started, *outcome)
            if outcome[0] > 0:
                await asyncio.sleep(outcome[0])
            started = time.time()
            call = call.next_attempt()
            ctx.task_run.attempt = call.attempt
    finally:
        current_run.reset(token)
