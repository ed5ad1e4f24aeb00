"""The run context: which flow run and task run the current code belongs to.

Held in a ``contextvars.ContextVar``, set by the flow call in the caller's thread
and by the engine wherever a task runs, so nested submission and
``get_run_logger()`` work on every runner.
"""

from __future__ import annotations

import contextvars
import logging
import types
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from braid import errors

if TYPE_CHECKING:
    import uuid

    from braid.core.tasks import Task

__all__ = [
    "FlowRunInfo",
    "TaskRunInfo",
    "RunContext",
    "get_run_context",
    "get_run_logger",
    "default_run_name",
]


class FlowRunInfo:
    """What a task or flow can know about its flow run (small: it travels with every call)."""

    __slots__ = ("id", "name", "flow_name")

    def __init__(self, id: str, name: str, flow_name: str) -> None:  # noqa: A002
        self.id = id
        self.name = name
        self.flow_name = flow_name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FlowRunInfo) and (self.id, self.name, self.flow_name) == (
            other.id, other.name, other.flow_name)

    def __hash__(self) -> int:
        return hash((self.id, self.name, self.flow_name))

    def __repr__(self) -> str:
        return f"FlowRunInfo(id={self.id!r}, name={self.name!r}, flow_name={self.flow_name!r})"


class TaskRunInfo:
    """What a running task can know about itself: id, name, attempt (1-based), parameters."""

    __slots__ = ("_id", "explicit_name", "attempt", "_task", "_args", "_kwargs", "_params")
    _params: dict[str, Any] | None

    def __init__(self, run_id: int, name: str | None, task: Task[Any], attempt: int,
                 args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._id = run_id
        #: the name if it was given or rendered; None while it is the default one
        self.explicit_name = name
        self.attempt = attempt
        self._task, self._args, self._kwargs, self._params = task, args, kwargs, None

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
        return self._task.name

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


def default_run_name(task_name: str, run_id: int) -> str:
    """The name of a task run whose task has no ``task_run_name``: ``<task>-<8 hex>``."""
    return f"{task_name}-{run_id & 0xFFFFFFFF:08x}"


_NO_PARAMETERS: Any = types.MappingProxyType({})


class RunContext:
    """The current run: ``flow_run`` (or None in a task submitted outside a flow),
    ``task_run`` (None in a flow body), and the runner that nested submits go to."""

    __slots__ = ("flow_run", "task_run", "task_runner", "log_prints", "flow", "parameters",
                 "record")

    def __init__(self, flow_run: FlowRunInfo | None, task_run: TaskRunInfo | None,
                 task_runner: Any = None, log_prints: bool = False, flow: Any = None,
                 parameters: dict[str, Any] | None = None, record: Any = None) -> None:
        self.flow_run = flow_run
        self.task_run = task_run
        self.task_runner = task_runner
        self.log_prints = log_prints
        self.flow = flow
        # a task run's context has no flow parameters: share one empty, read-only mapping
        self.parameters: Mapping[str, Any] = (_NO_PARAMETERS if parameters is None
                                              else parameters)
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


def _ensure_console() -> None:
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
    handler.setFormatter(logging.Formatter(
        "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(run_label)s - %(message)s", "%H:%M:%S"
    ))
    handler.addFilter(_label)
    logger.addHandler(handler)


def _label(record: logging.LogRecord) -> bool:
    task_run = getattr(record, "task_run_name", None)
    flow_run = getattr(record, "flow_run_name", None)
    record.run_label = (f"Task run {task_run!r}" if task_run
                        else f"Flow run {flow_run!r}" if flow_run else record.name)
    return True


def run_logger_for(ctx: RunContext) -> RunLoggerAdapter:
    _ensure_console()
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
        raise errors.MissingContextError(
            "get_run_logger() was called outside a flow or task run; inside plain code use "
            "logging.getLogger(__name__)"
        )
    return run_logger_for(ctx)
