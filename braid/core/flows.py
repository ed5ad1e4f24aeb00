"""Flows: ``@flow``, flow runs, nested flows and the end-of-flow drain.

A flow call runs its body in the caller's thread (async flows on the caller's
loop) inside a fresh, started duplicate of its task runner.  When the body
returns, the runner drains: every task run it accepted is final before the flow
returns.  The flow's state follows its return value (futures and states in it
are resolved; any failed one fails the flow), or the exception the body raised.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar, cast

from braid import errors
from braid.core import collector, records
from braid.core.context import FlowRunInfo, RunContext, current_run, current_tags
from braid.core.deadlines import call_before_deadline, raise_in_thread
from braid.core.flowcalls import BoundFlow, type_hints, validate_arguments
from braid.core.futures import TaskFuture
from braid.core.hooks import HOOK_OPTIONS, Hook, HookDecorators, StateHooks
from braid.core.logs import ensure_print_hook
from braid.core.records import FlowRunRecord
from braid.core.resolve import _unchanged, walk_replace
from braid.core.states import Completed, Crashed, Failed, State, StateType, TimedOut
from braid.core.tasks import _check_options, check_reserved, env_persists

__all__ = ["Flow", "flow"]

R = TypeVar("R")

#: the result options of a flow (its tasks inherit them; see :mod:`braid.caching`)
FLOW_CACHE_OPTIONS: dict[str, Any] = {
    "persist_result": None,
    "result_storage": None,
    "result_serializer": None,
    "cache_result_in_memory": True,
}
_OPTIONS = (
    "name",
    "description",
    "flow_run_name",
    "task_runner",
    "retries",
    "retry_delay_seconds",
    "timeout_seconds",
    "log_prints",
    "version",
    "validate_parameters",
    "concurrency_limits",
    *HOOK_OPTIONS,
    *FLOW_CACHE_OPTIONS,
)


class Flow(HookDecorators, Generic[R]):
    """A function made into a flow: each call is a flow run on its own task runner.

    The caller gets the return value with futures replaced by their results, or the
    exception that failed the run; ``return_state=True`` gives the final State.
    """

    def __init__(
        self,
        fn: Callable[..., R],
        name: str | None = None,
        description: str | None = None,
        flow_run_name: str | Callable[[], str] | None = None,
        task_runner: Any = None,
        retries: int = 0,
        retry_delay_seconds: float = 0,
        timeout_seconds: float | None = None,
        log_prints: bool | None = None,
        version: str | None = None,
        validate_parameters: bool = True,
        on_completion: Iterable[Hook] | None = None,
        on_failure: Iterable[Hook] | None = None,
        on_crashed: Iterable[Hook] | None = None,
        on_cancellation: Iterable[Hook] | None = None,
        on_running: Iterable[Hook] | None = None,
        concurrency_limits: Mapping[str, Any] | None = None,
        persist_result: bool | None = None,
        result_storage: Any = None,
        result_serializer: Any = None,
        cache_result_in_memory: bool = True,
    ) -> None:
        if not callable(fn):
            raise errors.ConfigurationError(f"@flow needs a function, got {fn!r}")
        self.fn = fn
        self.name = name or cast(str, getattr(fn, "__name__", type(fn).__name__))
        import inspect  # at decoration, not at `import braid`

        self.description = description if description is not None else inspect.getdoc(fn)
        self.flow_run_name = flow_run_name
        self.task_runner = task_runner
        self.retries = retries
        self.retry_delay_seconds = retry_delay_seconds
        self.timeout_seconds = timeout_seconds
        self.log_prints = log_prints
        self.version = version
        self.validate_parameters = bool(validate_parameters)
        self.hooks: StateHooks | None = StateHooks.from_options(
            f"flow {self.name!r}",
            {
                "on_completion": on_completion,
                "on_failure": on_failure,
                "on_crashed": on_crashed,
                "on_cancellation": on_cancellation,
                "on_running": on_running,
            },
        )
        #: limits this flow declares for its runs and nested flows' (name -> int or Limit)
        self.concurrency_limits = dict(concurrency_limits) if concurrency_limits else None
        if self.concurrency_limits:
            from braid.concurrency.limits import LimitTable

            LimitTable(self.concurrency_limits)  # a bad declaration fails at decoration
        self.persist_result = persist_result
        self.result_storage = result_storage
        self.result_serializer = result_serializer
        self.cache_result_in_memory = cache_result_in_memory
        #: whether its tasks' results are persisted unless they say otherwise
        self.persists_results = bool(persist_result) or (
            persist_result is None
            and (result_storage is not None or result_serializer is not None or env_persists())
        )
        _check_options(f"flow {self.name!r}", self.__dict__)
        if isinstance(retry_delay_seconds, (list, tuple)) or callable(retry_delay_seconds):
            raise errors.ConfigurationError(
                f"flow {self.name!r}: retry_delay_seconds must be a number of seconds"
            )
        self._check_runner(task_runner)
        self._signature = check_reserved(fn, "flow")
        self.is_async = inspect.iscoroutinefunction(fn)
        self.is_generator = inspect.isgeneratorfunction(fn)
        self._hints: dict[str, Any] | None = None
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", self.name)
        # any callable may lack __module__ (then None here); mypy types it as str
        self.__module__ = getattr(fn, "__module__", None)  # type: ignore[assignment]
        self.__qualname__ = getattr(fn, "__qualname__", self.name)
        self.__wrapped__ = fn

    def _check_runner(self, runner: Any) -> None:
        from braid.core.runner import TaskRunner

        if runner is None:
            return
        if isinstance(runner, TaskRunner):
            return
        if isinstance(runner, type) and issubclass(runner, TaskRunner):
            return
        raise errors.ConfigurationError(
            f"flow {self.name!r}: task_runner must be a TaskRunner instance or class, "
            f"got {runner!r}"
        )

    def with_options(self, **options: Any) -> Flow[R]:
        """A copy of this flow with some options replaced; unknown options are refused."""
        unknown = set(options) - set(_OPTIONS)
        if unknown:
            raise errors.ConfigurationError(
                f"flow {self.name!r}: unknown option(s) {sorted(unknown)}; "
                f"known: {', '.join(_OPTIONS)}"
            )
        current = {k: getattr(self, k) for k in _OPTIONS if k not in HOOK_OPTIONS}
        if self.hooks is not None:
            current.update(self.hooks.options())
        current.update(options)
        return Flow(self.fn, **current)

    def __repr__(self) -> str:
        return f"<Flow {self.name!r}>"

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        """A flow defined in a class: each access from an instance (or, under
        ``@classmethod``, from the class) is the flow with that first argument bound."""
        if instance is None:
            return self
        return BoundFlow(self, instance)

    # -- a call ------------------------------------------------------------------------
    def __call__(self, *args: Any, return_state: bool = False, **kwargs: Any) -> Any:
        """Run the flow; return its value (futures resolved) or raise what failed it.

        An ``async def`` flow returns a coroutine to await (``asyncio.run(flow())``).
        """
        if self.is_async:
            return self._call_async(args, kwargs, return_state)
        args, kwargs = _resolve_inputs(args, kwargs)
        args, kwargs, params = self._bind(args, kwargs)
        if self.is_generator:
            return self._run_generator(args, kwargs, params)
        attempt = 0
        while True:
            attempt += 1
            state = self._run_once(args, kwargs, params, attempt)
            if state.is_completed() or attempt > self.retries:
                break
            if self.retry_delay_seconds:
                time.sleep(self.retry_delay_seconds)
        return state if return_state else state.result()

    async def _call_async(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], return_state: bool
    ) -> Any:
        import asyncio

        if _has_pending_future(args, kwargs):
            args, kwargs = await asyncio.to_thread(_resolve_inputs, args, kwargs)
        else:
            args, kwargs = _resolve_inputs(args, kwargs)
        args, kwargs, params = self._bind(args, kwargs)
        attempt = 0
        while True:
            attempt += 1
            state = await self._run_once_async(args, kwargs, params, attempt)
            if state.is_completed() or attempt > self.retries:
                break
            if self.retry_delay_seconds:
                await asyncio.sleep(self.retry_delay_seconds)
        return state if return_state else state.result()

    def _bind(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]:
        """``(args, kwargs, parameters by name)``, checked and (``validate_parameters``)
        converted to the type hints; a bound ``self``/``cls`` is not a parameter."""
        sig = self._signature
        if sig is None:
            return args, kwargs, {}
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise errors.ParameterBindError(f"flow {self.name!r}: {exc}") from None
        if self.validate_parameters:  # what the caller passed; defaults are not checked
            hints = self._hints
            if hints is None:
                hints = self._hints = type_hints(self.fn)
            if hints:
                validate_arguments(f"flow {self.name!r}", bound.arguments, hints)
                args, kwargs = bound.args, bound.kwargs
        bound.apply_defaults()
        params = dict(bound.arguments)
        first = next(iter(sig.parameters), None)
        if first in ("self", "cls") and args:
            params.pop(first, None)
        return args, kwargs, params

    def _begin(self, params: dict[str, Any], attempt: int = 1) -> tuple[Any, RunContext, Any]:
        runner = _new_runner(self.task_runner)
        run_id = f"{random.getrandbits(128):032x}"
        name = self._render_name(params, run_id)
        parent = current_run.get()
        log_prints = self.log_prints
        if log_prints is None:
            log_prints = bool(parent and parent.log_prints)
        if log_prints:
            ensure_print_hook()
        record = FlowRunRecord(str(run_id), name, self.name, repr(runner))
        records.started(record, parent.record if parent is not None else None)
        up = parent.flow_run if parent is not None else None
        info = FlowRunInfo(
            str(run_id),
            name,
            self.name,
            params,
            current_tags(),
            self.version,
            up.id if up is not None else None,
            up.root_flow_run_id if up is not None else None,
            attempt,
        )
        ctx = RunContext(info, None, runner, log_prints, self, params, record)
        collector.flow_run_began()  # a bad BRAID_GC_THRESHOLD fails here, by name
        token = current_run.set(ctx)
        declared = None
        try:
            if self.concurrency_limits:  # seen by the runner's run table, made on enter
                from braid.concurrency.limits import declare_limits

                declared = declare_limits(self.concurrency_limits)
                declared.__enter__()
            runner.__enter__()
        except BaseException:
            if declared is not None:
                declared.__exit__(None, None, None)
            current_run.reset(token)
            collector.flow_run_ended()
            raise
        if self.hooks is not None:
            self.hooks.run(self, info, State(StateType.RUNNING))
        return runner, ctx, _FlowToken(token, declared)

    def _hooks_for(self, ctx: RunContext, state: State) -> State:
        """Persist the flow's result if it persists results, run the flow's hooks for its
        final ``state``; return it."""
        if self.persists_results and state.is_completed() and ctx.flow_run is not None:
            from braid.caching import persist_flow_result

            persist_flow_result(self, state.data, ctx.flow_run.id, self.name)
        if self.hooks is not None and ctx.flow_run is not None:
            self.hooks.run(self, ctx.flow_run, state)
        return state

    def _render_name(self, params: dict[str, Any], run_id: str) -> str:
        template = self.flow_run_name
        if template is None:
            return f"{self.name}-{run_id[:8]}"
        if callable(template):
            return str(template())
        try:
            return template.format(**params)
        except (KeyError, AttributeError, IndexError, ValueError) as exc:
            raise errors.ConfigurationError(
                f"flow {self.name!r}: flow_run_name template {template!r} cannot be formatted "
                f"with parameters {sorted(params)}: {type(exc).__name__}: {exc}"
            ) from exc

    def _run_once(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        params: dict[str, Any],
        attempt: int = 1,
    ) -> State:
        runner, ctx, token = self._begin(params, attempt)
        try:
            return self._hooks_for(
                ctx, _with_record(self._run_body(runner, ctx, args, kwargs), ctx.record)
            )
        except BaseException:
            ctx.record.finish(self._hooks_for(ctx, _interrupted()))
            raise
        finally:
            token.reset()

    def _run_body(
        self, runner: Any, ctx: RunContext, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> State:
        deadline = None if self.timeout_seconds is None else time.monotonic() + self.timeout_seconds
        try:
            if self.timeout_seconds is None:
                rv = self.fn(*args, **kwargs)
            else:
                rv = self._call_with_deadline(args, kwargs, ctx)
        except errors.FlowTimeout as exc:
            runner.__exit__(type(exc), exc, exc.__traceback__)
            return TimedOut(str(exc), exc)
        except Exception as exc:
            if not self._drained_by(runner, deadline):  # the body's error is the story
                self._timed_out_draining(runner)
                return Failed(exc)
            runner.__exit__(None, None, None)
            return Failed(exc)
        except BaseException as exc:
            runner.__exit__(type(exc), exc, exc.__traceback__)
            raise
        try:
            if not self._drained_by(runner, deadline):
                return self._timed_out_draining(runner)
            runner.__exit__(None, None, None)
        except BaseException as exc:
            runner.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return state_from_return(rv)

    @staticmethod
    def _drained_by(runner: Any, deadline: float | None) -> bool:
        """Whether every run of ``runner`` is final by ``deadline`` (None: no deadline,
        nothing to wait for here: ``__exit__`` drains)."""
        if deadline is None:
            return True
        return bool(runner.drain(max(0.0, deadline - time.monotonic())))

    def _timed_out_draining(self, runner: Any) -> State:
        """The flow's time-out passed while its runs were still going: abandon them."""
        exc = self._timeout_error()
        runner.__exit__(type(exc), exc, None)
        return TimedOut(str(exc), exc)

    async def _run_once_async(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        params: dict[str, Any],
        attempt: int = 1,
    ) -> State:
        runner, ctx, token = self._begin(params, attempt)
        try:
            state = await self._run_body_async(runner, ctx, args, kwargs)
            return self._hooks_for(ctx, _with_record(state, ctx.record))
        except BaseException:
            ctx.record.finish(self._hooks_for(ctx, _interrupted()))
            raise
        finally:
            token.reset()

    async def _run_body_async(
        self, runner: Any, ctx: RunContext, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> State:
        import asyncio

        deadline = None if self.timeout_seconds is None else time.monotonic() + self.timeout_seconds
        try:
            coro: Any = self.fn(*args, **kwargs)  # an async flow's fn gives an awaitable
            if self.timeout_seconds is None:
                rv = await coro
            else:
                rv = await self._await_with_deadline(coro)
        except errors.FlowTimeout as exc:
            runner.__exit__(type(exc), exc, exc.__traceback__)
            return TimedOut(str(exc), exc)
        except Exception as exc:
            if not await asyncio.to_thread(self._drained_by, runner, deadline):
                self._timed_out_draining(runner)
                return Failed(exc)
            await asyncio.to_thread(runner.__exit__, None, None, None)
            return Failed(exc)
        except BaseException as exc:
            runner.__exit__(type(exc), exc, exc.__traceback__)
            raise
        try:
            if not await asyncio.to_thread(self._drained_by, runner, deadline):
                return self._timed_out_draining(runner)
            await asyncio.to_thread(runner.__exit__, None, None, None)
        except BaseException as exc:
            runner.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return await asyncio.to_thread(state_from_return, rv)

    def _run_generator(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], params: dict[str, Any]
    ) -> Iterator[Any]:
        """A generator flow: each item is made inside the flow run (its context is set
        while the body runs, not while the caller handles an item); the run ends, and
        drains, when the body returns or raises."""
        runner, ctx, begun = self._begin(params)
        begun.reset()
        try:
            body: Iterator[Any] = self.fn(*args, **kwargs)  # type: ignore[assignment]
            while True:
                token = current_run.set(ctx)
                try:
                    item = next(body)
                except StopIteration as stop:
                    rv = stop.value
                    break
                except Exception as exc:
                    runner.__exit__(None, None, None)
                    self._hooks_for(ctx, _with_record(Failed(exc), ctx.record))
                    raise
                finally:
                    current_run.reset(token)
                yield item
            token = current_run.set(ctx)
            try:
                runner.__exit__(None, None, None)
                self._hooks_for(ctx, _with_record(state_from_return(rv), ctx.record)).result()
            finally:
                current_run.reset(token)
        except GeneratorExit:  # the caller stopped early: what was submitted still drains
            runner.__exit__(None, None, None)
            self._hooks_for(ctx, _with_record(Completed(None), ctx.record))
            raise
        except BaseException as exc:
            if not isinstance(exc, Exception):
                runner.__exit__(type(exc), exc, exc.__traceback__)
                ctx.record.finish(self._hooks_for(ctx, _interrupted()))
            raise

    def _timeout_error(self) -> errors.FlowTimeout:
        return errors.FlowTimeout(
            f"flow {self.name!r} exceeded its timeout of {self.timeout_seconds} s; "
            f"its queued task runs were cancelled"
        )

    def _call_with_deadline(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], ctx: RunContext
    ) -> Any:
        """Run the body in a helper thread so the caller can stop waiting at the deadline."""
        assert self.timeout_seconds is not None and ctx.flow_run is not None
        finished, t = call_before_deadline(
            self.fn, args, kwargs, self.timeout_seconds, f"braid-flow-{ctx.flow_run.name}"
        )
        if finished is None:
            raise_in_thread(t, errors.FlowTimeout)
            raise self._timeout_error()
        ok, value = finished
        if ok:
            return value
        raise value

    async def _await_with_deadline(self, coro: Any) -> Any:
        import asyncio

        body = asyncio.ensure_future(coro)
        done, _ = await asyncio.wait({body}, timeout=self.timeout_seconds)
        if not done:
            body.cancel()
            try:
                await body
            except BaseException:  # noqa: BLE001
                pass
            raise self._timeout_error()
        return body.result()


class _FlowToken:
    """What undoes a flow run's context when it ends: the run context and the limits the
    flow declared (seen by its body and nested flows)."""

    __slots__ = ("run", "declared")

    def __init__(self, run: Any, declared: Any) -> None:
        self.run = run
        self.declared = declared

    def reset(self) -> None:
        current_run.reset(self.run)
        try:
            if self.declared is not None:
                self.declared.__exit__(None, None, None)
        finally:
            collector.flow_run_ended()


def _with_record(state: State, record: FlowRunRecord) -> State:
    # a copy: the body may have returned a task run's own state
    flow_state = State(state.type, state.name, state.message, state.data)
    record.finish(flow_state)
    flow_state.extra = {"record": record}
    return flow_state


def _interrupted() -> State:
    return Crashed(errors.Crash("the flow run was interrupted"), "the flow run was interrupted")


def _new_runner(spec: Any) -> Any:
    from braid.core.runner import new_flow_runner

    return new_flow_runner(spec)


def _has_pending_future(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    pending = []

    def on_future(f: Any, allow: bool) -> Any:
        if not f.done():
            pending.append(f)
        return f

    walk_replace((args, kwargs), on_future, lambda q: q)
    return bool(pending)


def _resolve_inputs(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Replace futures passed to a flow with their results (waiting for them)."""

    def on_future(f: Any, allow: bool) -> Any:
        return f.result(raise_on_failure=not allow)

    new = walk_replace((args, kwargs), on_future, lambda q: q.value)
    return (args, kwargs) if new is _unchanged else new


def state_from_return(rv: Any) -> State:
    """The flow's state from its body's return value: resolve futures and states in it.

    Futures and States anywhere in it (containers, dataclass fields) are replaced by
    their results; any that did not complete fails the flow.  ``quote(x)`` is
    returned untouched.
    """
    if isinstance(rv, State):
        return rv
    if isinstance(rv, TaskFuture):
        rv.wait()
        return rv.state
    failures: list[State] = []

    def on_future(f: Any, allow: bool) -> Any:
        f.wait()
        st = f.state
        if not st.is_completed():
            failures.append(st)
        return st.result(raise_on_failure=False)

    def on_state(st: State) -> Any:
        if not st.is_final():
            return st  # a state that is not final is returned as it is
        if not st.is_completed():
            failures.append(st)
        return st.result(raise_on_failure=False)

    value = walk_replace(rv, on_future, lambda q: q, False, on_state)
    if value is _unchanged:
        value = rv
    if failures:
        first = failures[0]
        msg = (
            f"{len(failures)} task run(s) in the return value did not complete; "
            f"first: {first.message or first.name}"
        )
        exc = first.data if isinstance(first.data, BaseException) else errors.BraidError(msg)
        return Failed(exc, msg)
    return Completed(value)


def flow(__fn: Callable[..., R] | None = None, **options: Any) -> Any:
    """Make a function a :class:`Flow`; use as ``@flow`` or ``@flow(task_runner=...)``."""
    unknown = set(options) - set(_OPTIONS)
    if unknown:
        raise errors.ConfigurationError(
            f"@flow got unknown option(s) {sorted(unknown)}; known: {', '.join(_OPTIONS)}"
        )
    if __fn is not None:
        return Flow(__fn, **options)
    return lambda fn: Flow(fn, **options)
