"""The run context: which flow run and task run the current code belongs to.

Held in a ``contextvars.ContextVar``, set by the flow call in the caller's thread
and by the engine wherever a task runs, so nested submission and
``get_run_logger()`` work on every runner.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import types
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from braid import errors

if TYPE_CHECKING:
    import uuid

    from braid.core.tasks import Task

__all__ = [
    "disable_run_logger",
    "FlowRunContext",
    "TaskRunContext",
    "current_tags",
    "tags",
    "FlowRunInfo",
    "TaskRunInfo",
    "RunContext",
    "get_run_context",
    "get_run_logger",
    "default_run_name",
]


class FlowRunInfo:
    """What a task or flow can know about its flow run (small: it travels with every call).

    ``parameters`` travel with calls to other processes only when they pickle to at
    most :data:`SHIPPED_PARAMETERS_LIMIT` bytes; past that, reading them on a remote
    worker raises :class:`braid.errors.MissingContextError` saying why.
    """

    __slots__ = (
        "id",
        "name",
        "flow_name",
        "tags",
        "version",
        "parent_flow_run_id",
        "root_flow_run_id",
        "run_count",
        "_params",
        "_blob",
    )

    def __init__(
        self,
        id: str,
        name: str,
        flow_name: str,  # noqa: A002
        parameters: Mapping[str, Any] | None = None,
        tags: tuple[str, ...] = (),
        version: str | None = None,
        parent_flow_run_id: str | None = None,
        root_flow_run_id: str | None = None,
        run_count: int = 1,
    ) -> None:
        self.id = id
        self.name = name
        self.flow_name = flow_name
        self.tags = tags
        self.version = version
        self.parent_flow_run_id = parent_flow_run_id
        self.root_flow_run_id = root_flow_run_id or id
        self.run_count = run_count
        self._params: Mapping[str, Any] | None = parameters
        self._blob: bytes | None = None  # the pickled parameters, made once when shipped

    @property
    def parameters(self) -> dict[str, Any]:
        """The flow run's parameters by name."""
        params = self._params
        if params is None:
            blob = self._blob
            if blob is None:
                raise errors.MissingContextError(
                    f"the parameters of flow run {self.name!r} are too large to travel with "
                    f"every task call (over {SHIPPED_PARAMETERS_LIMIT} bytes pickled), so "
                    f"tasks on other processes cannot read them; pass what the task needs "
                    f"as its own arguments"
                )
            import pickle

            params = self._params = pickle.loads(blob)
        return dict(params)

    def __reduce__(self) -> tuple[Any, ...]:
        blob = self._blob
        if blob is None and self._params:
            blob = self._blob = _ship(self._params)
        return (
            _rebuild_flow_run_info,
            (
                self.id,
                self.name,
                self.flow_name,
                self.tags,
                self.version,
                self.parent_flow_run_id,
                self.root_flow_run_id,
                self.run_count,
                blob if self._params else b"",
            ),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FlowRunInfo) and (self.id, self.name, self.flow_name) == (
            other.id,
            other.name,
            other.flow_name,
        )

    def __hash__(self) -> int:
        return hash((self.id, self.name, self.flow_name))

    def __repr__(self) -> str:
        return f"FlowRunInfo(id={self.id!r}, name={self.name!r}, flow_name={self.flow_name!r})"


#: flow parameters pickled to more bytes than this do not travel with task calls
SHIPPED_PARAMETERS_LIMIT = 4096
_TOO_LARGE = b"\x00too-large"


def _ship(params: Mapping[str, Any]) -> bytes:
    try:
        import cloudpickle

        blob: bytes = cloudpickle.dumps(dict(params))
    except Exception:  # noqa: BLE001 - unpicklable parameters simply do not travel
        return _TOO_LARGE
    return blob if len(blob) <= SHIPPED_PARAMETERS_LIMIT else _TOO_LARGE


def _rebuild_flow_run_info(
    id: str,
    name: str,
    flow_name: str,  # noqa: A002
    tags: tuple[str, ...],
    version: str | None,
    parent: str | None,
    root: str | None,
    run_count: int,
    blob: bytes,
) -> FlowRunInfo:
    info = FlowRunInfo(id, name, flow_name, None, tags, version, parent, root, run_count)
    if not blob:
        info._params = {}  # noqa: SLF001 - its own class, being rebuilt
    elif blob != _TOO_LARGE:
        info._blob = blob  # noqa: SLF001 - its own class, being rebuilt
    return info


class TaskRunInfo:
    """What a running task can know about itself: id, name, attempt (1-based), parameters."""

    __slots__ = (
        "_id",
        "explicit_name",
        "attempt",
        "_task",
        "_args",
        "_kwargs",
        "_params",
        "_extra_tags",
    )
    _params: dict[str, Any] | None

    def __init__(
        self,
        run_id: int,
        name: str | None,
        task: Task[Any],
        attempt: int,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        extra_tags: tuple[str, ...] = (),
    ) -> None:
        self._id = run_id
        #: the name if it was given or rendered; None while it is the default one
        self.explicit_name = name
        self.attempt = attempt
        self._task, self._args, self._kwargs, self._params = task, args, kwargs, None
        self._extra_tags = extra_tags

    @property
    def name(self) -> str:
        """The task run's name (its template rendered, or ``<task>-<8 hex>``)."""
        name = self.explicit_name
        if name is None:
            name = self.explicit_name = default_run_name(self._task.name, self._id)
        return name

    @name.setter
    def name(self, value: str) -> None:
        self.explicit_name = value

    @property
    def task_name(self) -> str:
        """The name of the run's task."""
        return self._task.name

    @property
    def task(self) -> Task[Any]:
        """The run's task."""
        return self._task

    @property
    def run_count(self) -> int:
        """The attempt running now (1 for the first)."""
        return self.attempt

    @property
    def tags(self) -> frozenset[str]:
        """The task's tags and those of the ``tags()`` blocks it was submitted in."""
        return self._task.tags | frozenset(self._extra_tags)

    @property
    def id(self) -> uuid.UUID:
        """The task run's id, the same as its future's ``task_run_id``."""
        import uuid

        return uuid.UUID(int=self._id, version=4)

    @property
    def parameters(self) -> dict[str, Any]:
        """The task's parameters by name, with upstream results in place of futures."""
        if self._params is None:
            self._params = self._task.bind(self._args, self._kwargs)
        return self._params

    def __repr__(self) -> str:
        return f"TaskRunInfo(name={self.name!r}, attempt={self.attempt})"


_tags: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("braid_tags", default=())


@contextlib.contextmanager
def tags(*names: str) -> Iterator[frozenset[str]]:
    """Add ``names`` to the tags of every task run and flow run started inside the block.

    Blocks nest (inner tags add to outer ones).  Yields every tag in effect.
    """
    for name in names:
        if not isinstance(name, str):
            raise errors.ConfigurationError(f"tags() takes strings, got {name!r}")
    current = _tags.get()
    token = _tags.set(tuple(dict.fromkeys((*current, *names))))
    try:
        yield frozenset(_tags.get())
    finally:
        _tags.reset(token)


#: ``current_tags()``: the tags of the ``tags()`` blocks the calling code is in (empty
#: outside any); the context variable's own ``get``, so it costs one C call per submit
current_tags: Callable[[], tuple[str, ...]] = _tags.get


def default_run_name(task_name: str, run_id: int) -> str:
    """The name of a task run whose task has no ``task_run_name``: ``<task>-<8 hex>``."""
    return f"{task_name}-{run_id & 0xFFFFFFFF:08x}"


_NO_PARAMETERS: Any = types.MappingProxyType({})


class RunContext:
    """The current run: ``flow_run`` (or None in a task submitted outside a flow),
    ``task_run`` (None in a flow body), and the runner that nested submits go to."""

    __slots__ = (
        "flow_run",
        "task_run",
        "task_runner",
        "log_prints",
        "flow",
        "parameters",
        "record",
    )

    def __init__(
        self,
        flow_run: FlowRunInfo | None,
        task_run: TaskRunInfo | None,
        task_runner: Any = None,
        log_prints: bool = False,
        flow: Any = None,
        parameters: dict[str, Any] | None = None,
        record: Any = None,
    ) -> None:
        self.flow_run = flow_run
        self.task_run = task_run
        self.task_runner = task_runner
        self.log_prints = log_prints
        self.flow = flow
        # a task run's context has no flow parameters: share one empty, read-only mapping
        self.parameters: Mapping[str, Any] = _NO_PARAMETERS if parameters is None else parameters
        self.record = record  # the FlowRunRecord of a flow body's context

    def __repr__(self) -> str:
        return f"RunContext(flow_run={self.flow_run!r}, task_run={self.task_run!r})"

    @property
    def logger(self) -> RunLoggerAdapter:
        """The run logger of this run (as ``get_run_logger()`` inside it)."""
        return run_logger_for(self)


current_run: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar(
    "braid_run", default=None
)


def get_run_context() -> RunContext:
    """Return the context of the flow run or task run that is executing now.

    Raises :class:`braid.errors.MissingContextError` outside any flow or task run.
    """
    ctx = current_run.get()
    if ctx is None:
        raise errors.MissingContextError(
            "get_run_context() was called outside a flow or task run; call it from code "
            "running inside a @flow or @task"
        )
    return ctx


class FlowRunContext:
    """The flow run the calling code belongs to: ``FlowRunContext.get()`` (None outside).

    ``flow_run`` (id, name, parameters, tags, ...), ``flow`` (None inside a task run,
    where the flow object does not travel), ``parameters`` and ``task_runner``.
    """

    __slots__ = ("flow_run", "flow", "parameters", "task_runner")

    def __init__(
        self, flow_run: FlowRunInfo, flow: Any, parameters: Mapping[str, Any], task_runner: Any
    ) -> None:
        self.flow_run = flow_run
        self.flow = flow
        self.parameters = parameters
        self.task_runner = task_runner

    @classmethod
    def get(cls) -> FlowRunContext | None:
        """The current flow run's context, or None outside a flow run."""
        ctx = current_run.get()
        if ctx is None or ctx.flow_run is None:
            return None
        params: Mapping[str, Any] = ctx.parameters if ctx.flow is not None else _NO_PARAMETERS
        return cls(
            ctx.flow_run, ctx.flow, params, ctx.task_runner if ctx.task_run is None else None
        )


class TaskRunContext:
    """The task run the calling code belongs to: ``TaskRunContext.get()`` (None outside).

    ``task_run`` (id, name, parameters, tags, attempt), ``task`` and ``parameters``.
    """

    __slots__ = ("task_run", "task", "parameters", "task_runner")

    def __init__(self, task_run: TaskRunInfo, task_runner: Any) -> None:
        self.task_run = task_run
        self.task = task_run.task
        self.parameters = task_run.parameters
        self.task_runner = task_runner

    @classmethod
    def get(cls) -> TaskRunContext | None:
        """The current task run's context, or None outside a task run."""
        ctx = current_run.get()
        if ctx is None or ctx.task_run is None:
            return None
        return cls(ctx.task_run, ctx.task_runner)


if TYPE_CHECKING:
    _LoggerAdapter = logging.LoggerAdapter[logging.Logger]
else:  # LoggerAdapter takes a type argument at run time only from Python 3.11 on
    _LoggerAdapter = logging.LoggerAdapter


class RunLoggerAdapter(_LoggerAdapter):
    """A logger adapter whose records carry ``flow_run_name`` and ``task_run_name``."""

    extra: Mapping[str, object]  # always given (the base allows None)

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = kwargs.get("extra")
        kwargs["extra"] = {**self.extra, **extra} if extra else self.extra
        return msg, kwargs


class _WhenRootHasNoHandlers(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not logging.getLogger().handlers


_console_ready = False


def ensure_console() -> None:
    """Show run records on stderr while the application has not configured logging.

    The ``braid`` logger gets level INFO (if unset) and a console handler that stays
    silent as soon as the root logger has a handler, so nothing is printed twice.
    """
    global _console_ready
    if _console_ready:
        return
    _console_ready = True
    logger = logging.getLogger("braid")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    handler = logging.StreamHandler()
    handler.addFilter(_WhenRootHasNoHandlers())
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(run_label)s - %(message)s", "%H:%M:%S"
        )
    )
    handler.addFilter(_label)
    logger.addHandler(handler)


def quiet_console_here() -> None:
    """In a worker process: never print run records here (they travel to the driver,
    which prints them once); called by the engine where it runs shipped calls."""
    global _console_ready
    _console_ready = True


def _label(record: logging.LogRecord) -> bool:
    task_run = getattr(record, "task_run_name", None)
    flow_run = getattr(record, "flow_run_name", None)
    record.run_label = (
        f"Task run {task_run!r}"
        if task_run
        else f"Flow run {flow_run!r}"
        if flow_run
        else record.name
    )
    return True


def run_logger_for(ctx: RunContext) -> RunLoggerAdapter:
    ensure_console()
    flow_name = ctx.flow_run.name if ctx.flow_run else None
    if ctx.task_run is not None:
        logger = logging.getLogger("braid.task_runs")
        extra = {"flow_run_name": flow_name, "task_run_name": ctx.task_run.name}
    else:
        logger = logging.getLogger("braid.flow_runs")
        extra = {"flow_run_name": flow_name, "task_run_name": None}
    return RunLoggerAdapter(logger, extra)


def get_run_logger() -> RunLoggerAdapter:
    """Return a logger for the current flow or task run; its records carry the run names.

    Raises :class:`braid.errors.MissingContextError` outside any flow or task run.
    """
    ctx = current_run.get()
    if ctx is None:
        if _run_logger_disabled.get():  # disable_run_logger(): a logger that drops all
            silent = logging.getLogger("braid.disabled_run_logger")
            silent.disabled = True
            return RunLoggerAdapter(silent, {"flow_run_name": None, "task_run_name": None})
        raise errors.MissingContextError(
            "get_run_logger() was called outside a flow or task run; inside plain code use "
            "logging.getLogger(__name__)"
        )
    return run_logger_for(ctx)


@contextlib.contextmanager
def disable_run_logger() -> Iterator[None]:
    """Within the block, run loggers drop their records, and ``get_run_logger()`` outside
    any run returns one that drops them instead of raising (to call a task's ``.fn`` or a
    flow's body in a unit test, without a run)."""
    loggers = [logging.getLogger("braid.flow_runs"), logging.getLogger("braid.task_runs")]
    before = [lg.disabled for lg in loggers]
    for lg in loggers:
        lg.disabled = True
    token = _run_logger_disabled.set(True)
    try:
        yield
    finally:
        _run_logger_disabled.reset(token)
        for lg, was in zip(loggers, before, strict=True):
            lg.disabled = was


_run_logger_disabled: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "braid_run_logger_disabled", default=False
)
