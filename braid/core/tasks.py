"""Tasks: ``@task``, direct calls, ``.submit()``, ``.map()`` and ``with_options``.

A task only builds :class:`~braid.core.engine.TaskCall` records and hands them to
the runner of the current run (the flow's, the one a task runs on for nested
submission, or a process-wide default thread runner outside any flow).
"""

from __future__ import annotations

import functools
import importlib
import random
import sys
import types
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, cast, overload

from braid import errors
from braid.core import mapping
from braid.core.calls import DEEP, FLAT, NOTHING, TaskCall, render_run_name
from braid.core.context import current_run
from braid.core.context import current_tags as _current_tags
from braid.core.engine import run_task, run_task_async
from braid.core.futures import FutureList, TaskFuture
from braid.core.hooks import HOOK_OPTIONS, Hook, HookDecorators, StateHooks
from braid.core.records import DirectRun
from braid.core.resolve import ATOMIC_TYPES, ONE_UPSTREAM_ARGS, REQUIRED_ONE, extract
from braid.core.resources import ResourceHints, current_hints, hints_from
from braid.core.states import State

if TYPE_CHECKING:
    import inspect

    from braid.core.context import RunContext
    from braid.core.runner import TaskRunner

__all__ = ["exponential_backoff", "Task", "task", "RESERVED_PARAMETERS"]

_modules = sys.modules

R = TypeVar("R")
RESERVED_PARAMETERS = ("wait_for", "return_state")
_getrandbits = random.getrandbits
#: the keyword arguments of every call made without any (the engine calls with **kwargs)
_NO_KWARGS: dict[str, Any] = {}

#: the caching and result options (Prefect's; see :mod:`braid.caching`) and their defaults
CACHE_OPTIONS: dict[str, Any] = {
    "cache_policy": None,
    "cache_key_fn": None,
    "cache_expiration": None,
    "refresh_cache": None,
    "persist_result": None,
    "result_storage": None,
    "result_storage_key": None,
    "result_serializer": None,
    "cache_result_in_memory": True,
}
_OPTIONS = (
    "name",
    "description",
    "task_run_name",
    "retries",
    "retry_delay_seconds",
    "retry_jitter_factor",
    "retry_condition_fn",
    "timeout_seconds",
    "log_prints",
    "tags",
    "resources",
    *HOOK_OPTIONS,
    *CACHE_OPTIONS,
    "on_commit",
    "on_rollback",
)


def check_reserved(fn: Callable[..., Any], what: str) -> inspect.Signature | None:
    """Refuse a function that declares a parameter braid reserves; return its signature."""
    import inspect  # at decoration, not at `import braid`

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    for name in RESERVED_PARAMETERS:
        if name in sig.parameters:
            raise errors.ReservedParameterName(
                f"{what} {getattr(fn, '__name__', fn)!r} declares a parameter named {name!r}, "
                f"which braid reserves as a keyword of .submit()/.map()/calls; rename it"
            )
    return sig


def _check_options(owner: str, opts: dict[str, Any]) -> None:
    retries = opts.get("retries", 0)
    if not isinstance(retries, int) or retries < 0:
        raise errors.ConfigurationError(f"{owner}: retries must be an int >= 0, got {retries!r}")
    timeout = opts.get("timeout_seconds")
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise errors.ConfigurationError(
            f"{owner}: timeout_seconds must be a number > 0 or None, got {timeout!r}"
        )
    delay = opts.get("retry_delay_seconds", 0)
    if not (callable(delay) or isinstance(delay, (int, float, list, tuple))):
        raise errors.ConfigurationError(
            f"{owner}: retry_delay_seconds must be a number, a list of numbers or a callable, "
            f"got {delay!r}"
        )
    jitter = opts.get("retry_jitter_factor")
    if jitter is not None and (not isinstance(jitter, (int, float)) or jitter < 0):
        raise errors.ConfigurationError(
            f"{owner}: retry_jitter_factor must be a number >= 0, got {jitter!r}"
        )


class Task(HookDecorators, Generic[R]):
    """A function made into a task: call it, ``.submit()`` it, or ``.map()`` it.

    Calling runs it now in the caller's thread and returns its value (or raises);
    ``.submit()`` hands it to the current runner and returns a :class:`TaskFuture` at
    once; ``.map()`` submits one run per element and returns a :class:`FutureList`.
    """

    def __init__(
        self,
        fn: Callable[..., R],
        name: str | None = None,
        description: str | None = None,
        task_run_name: str | Callable[[], str] | None = None,
        retries: int = 0,
        retry_delay_seconds: float | list[float] | Callable[[int], list[float]] = 0,
        retry_jitter_factor: float | None = None,
        retry_condition_fn: Callable[..., bool] | None = None,
        timeout_seconds: float | None = None,
        log_prints: bool | None = None,
        tags: Iterable[str] | None = None,
        resources: dict[str, Any] | ResourceHints | None = None,
        on_completion: Iterable[Hook] | None = None,
        on_failure: Iterable[Hook] | None = None,
        on_crashed: Iterable[Hook] | None = None,
        on_cancellation: Iterable[Hook] | None = None,
        on_running: Iterable[Hook] | None = None,
        on_commit: Iterable[Callable[..., Any]] | None = None,
        on_rollback: Iterable[Callable[..., Any]] | None = None,
        **cache_options: Any,
    ) -> None:
        if not callable(fn):
            raise errors.ConfigurationError(f"@task needs a function, got {fn!r}")
        self.fn = fn
        self.name = name or cast(str, getattr(fn, "__name__", type(fn).__name__))
        import inspect

        self.description = description if description is not None else inspect.getdoc(fn)
        self.task_run_name = task_run_name
        self.retries = retries
        self.retry_delay_seconds = retry_delay_seconds
        self.retry_jitter_factor = retry_jitter_factor
        self.retry_condition_fn = retry_condition_fn
        self.timeout_seconds = timeout_seconds
        self.log_prints = log_prints
        self.tags = frozenset(tags or ())
        self.resources = hints_from(resources, f"task {self.name!r}")
        #: the state change hooks (None when there are none: nothing to check per run)
        self.hooks: StateHooks | None = StateHooks.from_options(
            f"task {self.name!r}",
            {
                "on_completion": on_completion,
                "on_failure": on_failure,
                "on_crashed": on_crashed,
                "on_cancellation": on_cancellation,
                "on_running": on_running,
            },
        )
        unknown = set(cache_options) - set(CACHE_OPTIONS)
        if unknown:
            raise errors.ConfigurationError(
                f"task {self.name!r}: unknown option(s) {sorted(unknown)}; "
                f"known: {', '.join(_OPTIONS)}"
            )
        for option, default in CACHE_OPTIONS.items():
            setattr(self, option, cache_options.get(option, default))
        #: whether any caching or result option is set (else nothing is looked up per run)
        self.cache_configured = env_persists() or any(
            getattr(self, k) != d for k, d in CACHE_OPTIONS.items()
        )
        #: transaction hooks: ``hook(transaction)`` when the enclosing transaction commits
        #: or rolls back (the task run's own child transaction)
        self.on_commit_hooks: list[Callable[..., Any]] = list(on_commit or ())
        self.on_rollback_hooks: list[Callable[..., Any]] = list(on_rollback or ())
        _check_options(f"task {self.name!r}", self.__dict__)
        if task_run_name is not None and not (
            isinstance(task_run_name, str) or callable(task_run_name)
        ):
            raise errors.ConfigurationError(
                f"task {self.name!r}: task_run_name must be a str template or a callable"
            )
        self._signature = check_reserved(fn, "task")
        self._shape = _shape_of(self._signature)
        self.is_async = inspect.iscoroutinefunction(fn)
        functools.update_wrapper(self, fn, updated=())

    # -- pickling: by reference when importable, else by value without the cache ------
    def __reduce__(self) -> tuple[Any, ...]:
        module, qualname = getattr(self, "__module__", None), getattr(self, "__qualname__", "")
        if module and module != "__main__" and "<" not in qualname:
            obj: Any = sys.modules.get(module)
            for part in qualname.split("."):
                obj = getattr(obj, part, None)
            if obj is self:
                return (_import_task, (module, qualname))
        state = self.__dict__.copy()
        state["_signature"] = None
        state.pop("__wrapped__", None)
        state.pop("_blob", None)
        state.pop("_cache_options", None)
        # cloudpickle names by-value code "<dynamic-code>": keep the real file for tracebacks
        state["_source_file"] = getattr(getattr(self.fn, "__code__", None), "co_filename", None)
        return (_rebuild_task, (state,))

    # -- options -------------------------------------------------------------------
    def with_options(self, **options: Any) -> Task[R]:
        """A copy of this task with some options replaced; unknown options are refused."""
        unknown = set(options) - set(_OPTIONS)
        if unknown:
            raise errors.ConfigurationError(
                f"task {self.name!r}: unknown option(s) {sorted(unknown)}; "
                f"known: {', '.join(_OPTIONS)}"
            )
        current = {
            k: getattr(self, k)
            for k in _OPTIONS
            if k not in HOOK_OPTIONS and k not in ("on_commit", "on_rollback")
        }
        current["on_commit"] = self.on_commit_hooks
        current["on_rollback"] = self.on_rollback_hooks
        if self.hooks is not None:
            current.update(self.hooks.options())
        current.update(options)
        return Task(self.fn, **current)

    def cache_options_for(self, flow: Any) -> Any:
        """The run's caching settings under ``flow`` (None: not persisted), made once."""
        memo: dict[int, Any] = self.__dict__.setdefault("_cache_options", {})
        key = id(flow)
        if key not in memo:
            from braid.caching import resolve_cache_options

            memo[key] = resolve_cache_options(self, flow)
        return memo[key]

    def on_commit(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: call ``fn(transaction)`` when the enclosing transaction commits."""
        self.on_commit_hooks.append(fn)
        self.__dict__.pop("_blob", None)
        return fn

    def on_rollback(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: call ``fn(transaction)`` when the enclosing transaction rolls back."""
        self.on_rollback_hooks.append(fn)
        self.__dict__.pop("_blob", None)
        return fn

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The parameters by name, defaults applied (used for names and messages)."""
        sig = self._signature
        if sig is None:
            import inspect

            sig = self._signature = inspect.signature(self.fn)
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise errors.ParameterBindError(f"task {self.name!r}: {exc}") from None
        bound.apply_defaults()
        return dict(bound.arguments)

    # -- making calls --------------------------------------------------------------
    def _check_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Refuse arguments that cannot bind: cheap counts and names first, then bind()
        (which raises ParameterBindError saying why) only if something looks off."""
        shape = self.__dict__.get("_shape")
        if shape is None:
            if self._signature is not None:
                self.bind(args, kwargs)
            return
        names, required, known, kwonly_required, var_pos, var_kw = shape
        if not kwargs and not kwonly_required and len(required) <= len(args) <= len(names):
            return  # the common case: positional arguments that fit
        ok = var_pos or len(args) <= len(names)
        if ok and kwargs and not var_kw:
            ok = all(k in known for k in kwargs)
        if ok and len(args) < len(required):
            ok = all(name in kwargs for name in required[len(args) :])
        if ok and kwonly_required:
            ok = all(name in kwargs for name in kwonly_required)
        if ok and kwargs and len(args) > 0:
            ok = not any(k in kwargs for k in names[: len(args)])
        if not ok:
            self.bind(args, kwargs)

    def _make_call(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], wait_for: Any, ctx: RunContext | None
    ) -> tuple[TaskCall, Sequence[TaskFuture[Any]]]:
        shape = self.__dict__.get("_shape")
        if kwargs or shape is None or shape[3] or not len(shape[1]) <= len(args) <= len(shape[0]):
            self._check_arguments(args, kwargs)  # positional arguments that fit need not
        else:
            kwargs = _NO_KWARGS  # one empty dict for every live call (nothing writes to it)
        upstreams: Sequence[TaskFuture[Any]]
        if len(args) == 1 and not kwargs and not wait_for and isinstance(args[0], TaskFuture):
            # a chain's link: its one argument is a future (extract()'s answer, shared)
            found = None
            upstreams, args, must, resolve = args, ONE_UPSTREAM_ARGS, REQUIRED_ONE, FLAT
        else:
            found = extract(args, kwargs, wait_for)
            upstreams, must, resolve = (), None, NOTHING
        run_id = _getrandbits(128)
        if found is not None:
            args, kwargs, ex = found
            # a tuple: kept by the run while it is live, 40 bytes less than the list
            upstreams, must = tuple(ex.upstreams), ex.must_succeed
            resolve = FLAT if ex.flat else DEEP
        run_name = None
        if self.task_run_name is not None and not upstreams and isinstance(self.task_run_name, str):
            run_name = render_run_name(self, args, kwargs, run_id)
        flow_run = ctx.flow_run if ctx is not None else None
        call = TaskCall(self, args, kwargs, must, resolve, run_id, run_name, flow_run)
        if ctx is not None and ctx.log_prints:
            call.log_prints = True
        hints = current_hints(self.resources)
        ctx_tags = _current_tags()
        flow = ctx.flow if ctx is not None else None
        txns = _modules.get("braid.transactions")  # None until someone imported it
        if (
            hints is not None
            or ctx_tags
            or txns is not None
            or self.cache_configured
            or (flow is not None and flow.persists_results)
        ):
            call.extra = self._extras(ctx, flow, hints, ctx_tags, txns)
        return call, upstreams

    def _make_calls(
        self,
        rows: list[tuple[tuple[Any, ...], dict[str, Any]]],
        wait_for: Any,
        ctx: RunContext | None,
    ) -> tuple[list[TaskCall], list[Sequence[TaskFuture[Any]]]]:
        """The calls of one ``.map()``, as ``_make_call`` makes each: what is the same for
        every row (its argument shape, the run context, tags, hints) is looked at once."""
        if not rows:
            return [], []
        self._check_arguments(*rows[0])  # every row has the same shape
        flow_run = ctx.flow_run if ctx is not None else None
        log_prints = ctx is not None and ctx.log_prints
        hints = current_hints(self.resources)
        ctx_tags = _current_tags()
        flow = ctx.flow if ctx is not None else None
        txns = _modules.get("braid.transactions")
        extras = (
            hints is not None
            or ctx_tags
            or txns is not None
            or self.cache_configured
            or (flow is not None and flow.persists_results)
        )
        named = isinstance(self.task_run_name, str)
        calls: list[TaskCall] = []
        ups: list[Sequence[TaskFuture[Any]]] = []
        none: tuple[TaskFuture[Any], ...] = ()
        atomic = ATOMIC_TYPES
        for args, kwargs in rows:
            if not wait_for and len(args) == 1 and not kwargs and type(args[0]) in atomic:
                found = None  # extract()'s answer for one plain value, without the call
            else:
                found = extract(args, kwargs, wait_for)
            run_id = _getrandbits(128)
            if found is None:
                call = TaskCall(self, args, kwargs, None, NOTHING, run_id, None, flow_run)
                upstreams: Sequence[TaskFuture[Any]] = none
                if named:
                    call.run_name = render_run_name(self, args, kwargs, run_id)
            else:
                args, kwargs, ex = found
                upstreams = ex.upstreams
                resolve = FLAT if ex.flat else DEEP
                call = TaskCall(
                    self, args, kwargs, ex.must_succeed, resolve, run_id, None, flow_run
                )
                if named and not upstreams:
                    call.run_name = render_run_name(self, args, kwargs, run_id)
            if log_prints:
                call.log_prints = True
            if extras:
                call.extra = self._extras(ctx, flow, hints, ctx_tags, txns)
            calls.append(call)
            ups.append(upstreams)
        return calls, ups

    def _map_signature(self) -> inspect.Signature | None:
        import inspect

        return self._signature or inspect.signature(self.fn)

    def _extras(
        self, ctx: RunContext | None, flow: Any, hints: Any, ctx_tags: tuple[str, ...], txns: Any
    ) -> dict[str, Any] | None:
        """What a call carries besides its arguments: resource hints, the tags of the
        blocks it was submitted in, its cache options, its transaction."""
        extra: dict[str, Any] = {}
        if hints is not None:
            extra["resources"] = hints
        if ctx_tags:
            extra["tags"] = ctx_tags
        if self.cache_configured or (flow is not None and flow.persists_results):
            options = self.cache_options_for(flow)
            if options is not None:
                runner = ctx.task_runner if ctx is not None else None
                if runner is not None and getattr(runner, "address", None):
                    check_store_reaches(options, runner)
                extra["cache"] = options
        if txns is not None:
            txn = txns.get_transaction()
            if txn is not None:
                extra["txn"] = txn
        return extra or None

    def __call__(
        self, *args: Any, return_state: bool = False, wait_for: Any = None, **kwargs: Any
    ) -> Any:
        """Run the task now, in this thread; return its value or raise its exception.

        An ``async def`` task returns a coroutine to await.  Futures in the arguments
        are waited for first.  ``return_state=True`` returns the final State instead.
        """
        ctx = current_run.get()
        call, upstreams = self._make_call(args, kwargs, wait_for, ctx)
        nested = ctx.task_runner if ctx is not None else None
        if self.is_async:
            return self._call_async(call, upstreams, nested, return_state)
        states = None
        if upstreams:
            for u in upstreams:
                u.wait()
            states = [u.state for u in upstreams]
        state = run_task(call, states, nested_runner=nested)
        if call.extra is not None and "txn" in call.extra:  # staged as a submitted run is
            from braid.core.cached import stage_in_transaction

            stage_in_transaction(call, state)
        if ctx is not None and ctx.record is not None:
            ctx.record.add(DirectRun(call, state, upstreams))
        return state if return_state else _direct_result(state)

    async def _call_async(
        self, call: TaskCall, upstreams: Sequence[TaskFuture[Any]], nested: Any, return_state: bool
    ) -> Any:
        states = None
        if upstreams:
            import asyncio

            for u in upstreams:
                if not u.done():
                    await asyncio.to_thread(u.wait)
            states = [u.state for u in upstreams]
        state = await run_task_async(call, states, nested_runner=nested)
        ctx = current_run.get()
        if ctx is not None and ctx.record is not None:
            ctx.record.add(DirectRun(call, state, upstreams))
        return state if return_state else _direct_result(state)

    @overload
    def submit(
        self, *args: Any, return_state: Literal[False] = ..., wait_for: Any = ..., **kwargs: Any
    ) -> TaskFuture[R]: ...

    @overload
    def submit(
        self, *args: Any, return_state: Literal[True], wait_for: Any = ..., **kwargs: Any
    ) -> State: ...

    @overload
    def submit(
        self, *args: Any, return_state: bool, wait_for: Any = ..., **kwargs: Any
    ) -> TaskFuture[R] | State: ...

    def submit(
        self, *args: Any, return_state: bool = False, wait_for: Any = None, **kwargs: Any
    ) -> TaskFuture[R] | State:
        """Hand one run of the task to the current runner; return its future at once.

        ``wait_for`` futures must be final before it starts (ordering without data).
        ``return_state=True`` waits and returns the final State instead.
        """
        ctx = current_run.get()
        runner = ctx.task_runner if ctx is not None and ctx.task_runner is not None else None
        if runner is None:
            runner = _default_runner()
        call, upstreams = self._make_call(args, kwargs, wait_for, ctx)
        future: TaskFuture[R] = runner.submit(
            call, upstreams, ctx.record if ctx is not None else None
        )
        if return_state:
            future.wait()
            return future.state
        return future

    @overload
    def map(
        self, *args: Any, return_state: Literal[False] = ..., wait_for: Any = ..., **kwargs: Any
    ) -> FutureList[R]: ...

    @overload
    def map(
        self, *args: Any, return_state: Literal[True], wait_for: Any = ..., **kwargs: Any
    ) -> list[State]: ...

    @overload
    def map(
        self, *args: Any, return_state: bool, wait_for: Any = ..., **kwargs: Any
    ) -> FutureList[R] | list[State]: ...

    def map(
        self, *args: Any, return_state: bool = False, wait_for: Any = None, **kwargs: Any
    ) -> FutureList[R] | list[State]:
        """Submit one run per element of the iterable arguments, zipped; return the futures.

        Iterables (not str/bytes; a dict gives its keys; generators are consumed; a
        future whose result is iterable is waited for) are zipped; every other argument
        and anything wrapped in ``unmapped`` goes to every run.
        """
        ctx = current_run.get()
        runner = ctx.task_runner if ctx is not None and ctx.task_runner is not None else None
        if runner is None:
            runner = _default_runner()
        calls, ups = self._make_calls(
            mapping.rows(self.name, self._map_signature, args, kwargs), wait_for, ctx
        )
        futures: FutureList[R] = FutureList(
            runner.map(calls, ups, ctx.record if ctx is not None else None)
        )
        if return_state:
            futures.wait()
            return [f.state for f in futures]
        return futures

    def __repr__(self) -> str:
        return f"<Task {self.name!r}>"


def _shape_of(sig: inspect.Signature | None) -> tuple[Any, ...] | None:
    """What ``_check_arguments`` needs of a signature, or None to check with ``bind()``.

    (positional names, required positional names (a prefix), keyword-only names,
    required keyword-only names, takes *args, takes **kwargs).
    """
    if sig is None:
        return None
    names: list[str] = []
    required: list[str] = []
    kwonly: list[str] = []
    kwonly_required: list[str] = []
    var_pos = var_kw = False
    for p in sig.parameters.values():
        if p.kind is p.POSITIONAL_OR_KEYWORD:
            names.append(p.name)
            if p.default is p.empty:
                required.append(p.name)
        elif p.kind is p.KEYWORD_ONLY:
            kwonly.append(p.name)
            if p.default is p.empty:
                kwonly_required.append(p.name)
        elif p.kind is p.VAR_POSITIONAL:
            var_pos = True
        elif p.kind is p.VAR_KEYWORD:
            var_kw = True
        else:
            return None  # positional-only parameters: let bind() judge
    return (
        tuple(names),
        tuple(required),
        frozenset(names) | frozenset(kwonly),
        tuple(kwonly_required),
        var_pos,
        var_kw,
    )


def _import_task(module: str, qualname: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _rebuild_task(state: dict[str, Any]) -> Task[Any]:
    source = state.pop("_source_file", None)
    t = Task.__new__(Task)
    t.__dict__.update(state)
    code = getattr(t.fn, "__code__", None)
    if source and code is not None and code.co_filename == "<dynamic-code>":
        t.fn.__code__ = _refiled(code, source)
    return t


def _refiled(code: types.CodeType, filename: str) -> types.CodeType:
    """``code`` (and the code objects nested in it) said to come from ``filename``."""
    consts = tuple(
        _refiled(c, filename) if isinstance(c, types.CodeType) else c for c in code.co_consts
    )
    return code.replace(co_filename=filename, co_consts=consts)


def _direct_result(state: State) -> Any:
    if state.is_crashed():
        cause = getattr(state.data, "__cause__", None)
        if isinstance(cause, (KeyboardInterrupt, SystemExit)):
            raise cause
    return state.result()


def _default_runner() -> TaskRunner:
    from braid.core.runner import default_runner

    return default_runner()


def check_store_reaches(options: Any, runner: Any) -> None:
    """Refuse a store on this machine's disk for a runner whose workers may be on other
    hosts (a cluster by an address that is not this machine): they would never see its
    records (:class:`braid.errors.LocalStoreOnRemoteCluster`, at the first submit)."""
    host = str(runner.address).split("://")[-1].rsplit(":", 1)[0].strip("[]")
    if host not in ("127.0.0.1", "localhost", "::1", "auto"):
        from braid.results import check_store_for_remote

        check_store_for_remote(options.store, where=f"the cluster at {runner.address}")


def env_persists() -> bool:
    """``$BRAID_RESULTS_PERSIST_BY_DEFAULT`` (read when a task or flow is made)."""
    import os

    value = os.environ.get("BRAID_RESULTS_PERSIST_BY_DEFAULT", "")
    return value.strip().lower() in ("1", "true", "yes", "on")


def exponential_backoff(backoff_factor: float) -> Callable[[int], list[float]]:
    """Retry delays that double: ``retry_delay_seconds=exponential_backoff(10)`` waits 10,
    20, 40, ... seconds before the 1st, 2nd, 3rd retry (at most 50 delays)."""
    if not isinstance(backoff_factor, (int, float)) or backoff_factor < 0:
        raise errors.ConfigurationError(
            f"exponential_backoff: backoff_factor must be a number >= 0, got {backoff_factor!r}"
        )

    def delays(retries: int) -> list[float]:
        return [backoff_factor * 2**r for r in range(min(retries, 50))]

    return delays


@overload
def task(__fn: Callable[..., R]) -> Task[R]: ...


@overload
def task(**options: Any) -> Callable[[Callable[..., R]], Task[R]]: ...


def task(__fn: Callable[..., R] | None = None, **options: Any) -> Any:
    """Make a function a :class:`Task`; use as ``@task`` or ``@task(name=..., retries=...)``."""
    unknown = set(options) - set(_OPTIONS)
    if unknown:
        raise errors.ConfigurationError(
            f"@task got unknown option(s) {sorted(unknown)}; known: {', '.join(_OPTIONS)}"
        )
    if __fn is not None:
        return Task(__fn, **options)
    return lambda fn: Task(fn, **options)
