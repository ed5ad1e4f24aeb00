"""Task calls: the small picklable record of one task run, and its run name.

A :class:`TaskCall` is what every runner moves: the task (pickled once per task),
the arguments with upstream futures replaced by slots, the run id and name, the
attempt, and the little run context a task needs.  It never holds the flow, the
flow's parameters or the runner.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from braid import errors
from braid.core.context import default_run_name

if TYPE_CHECKING:
    from braid.core.context import FlowRunInfo
    from braid.core.tasks import Task

__all__ = ["TaskCall", "render_run_name", "NOTHING", "FLAT", "DEEP"]

#: values of TaskCall.resolve: nothing to resolve, top-level slots only, the deep walk
NOTHING, FLAT, DEEP = 0, 1, 2


class TaskCall:
    """A small picklable record of one task run: what to call, with what, and as whom.

    It never holds the flow, the flow's parameters or the runner.  ``args``/``kwargs``
    may hold :class:`~braid.core.resolve.UpstreamSlot` placeholders (``resolve`` is
    then FLAT or DEEP) filled from the upstream states at run time; ``must_succeed[i]`` says
    whether upstream ``i`` failing stops this run.
    """

    __slots__ = (
        "task",
        "args",
        "kwargs",
        "must_succeed",
        "resolve",
        "run_id",
        "run_name",
        "attempt",
        "flow_run",
        "log_prints",
        "extra",
    )

    def __init__(
        self,
        task: Task[Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        must_succeed: Sequence[bool] | None,
        resolve: int,
        run_id: int,
        run_name: str | None,
        flow_run: FlowRunInfo | None,
    ) -> None:
        self.task = task
        self.args = args
        self.kwargs = kwargs
        self.must_succeed = must_succeed
        self.resolve = resolve
        self.run_id = run_id
        self.run_name = run_name
        self.attempt = 1
        self.flow_run = flow_run
        self.log_prints = False  # the submitting run's log_prints, for tasks that do not say
        self.extra: dict[str, Any] | None = None  # runner-specific hints (resources, ...)

    def __reduce__(self) -> tuple[Any, ...]:
        # the task travels as bytes pickled once per task (see _TaskBlob), not per call
        state = [getattr(self, k) for k in self.__slots__]
        state[0] = _TaskBlob.of(self.task)
        return (_rebuild_call, (tuple(state),))

    def next_attempt(self) -> TaskCall:
        """A copy of this call for the next attempt."""
        new = TaskCall.__new__(TaskCall)
        for k in self.__slots__:
            setattr(new, k, getattr(self, k))
        new.attempt = self.attempt + 1
        return new

    @property
    def upstream_count(self) -> int:
        return len(self.must_succeed) if self.must_succeed else 0


def _rebuild_call(state: tuple[Any, ...]) -> TaskCall:
    call = TaskCall.__new__(TaskCall)
    for k, v in zip(TaskCall.__slots__, state, strict=True):
        setattr(call, k, v)
    if isinstance(call.task, _TaskBlob):
        call.task = call.task.load()
    return call


class _TaskBlob:
    """A task pickled once, shipped with every call of it and unpickled once per process.

    A task defined in ``__main__`` or in a closure pickles by value (its function,
    closure and globals), which costs more than the rest of a call; each task keeps
    its pickled bytes, and each worker process keeps the tasks it loaded by those
    bytes.  Like Dask's function cache, a task's globals are captured when its first
    call is pickled.
    """

    __slots__ = ("blob",)
    _loaded: dict[bytes, Any] = {}

    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    @classmethod
    def of(cls, task: Task[Any]) -> _TaskBlob:
        blob = task.__dict__.get("_blob")
        if blob is None:
            import cloudpickle

            blob = cloudpickle.dumps(task, protocol=5)
            task.__dict__["_blob"] = blob
        return cls(blob)

    def __reduce__(self) -> tuple[type[_TaskBlob], tuple[bytes]]:
        return (_TaskBlob, (self.blob,))

    def load(self) -> Any:
        loaded = _TaskBlob._loaded
        task = loaded.get(self.blob)
        if task is None:
            import cloudpickle

            if len(loaded) > 512:
                loaded.clear()
            task = loaded[self.blob] = cloudpickle.loads(self.blob)
        return task


def render_run_name(
    task: Task[Any], args: tuple[Any, ...], kwargs: dict[str, Any], run_id: int
) -> str:
    """The task run's name: its template formatted with the parameters, or the default."""
    template = task.task_run_name
    if template is None:
        return default_run_name(task.name, run_id)
    if callable(template):
        name = template()
    else:
        params = task.bind(args, kwargs)
        try:
            name = template.format(**params)
        except (KeyError, AttributeError, IndexError, ValueError) as exc:
            raise errors.ConfigurationError(
                f"task {task.name!r}: task_run_name template {template!r} cannot be formatted "
                f"with parameters {sorted(params)}: {type(exc).__name__}: {exc}"
            ) from exc
    if not isinstance(name, str):
        raise errors.ConfigurationError(
            f"task {task.name!r}: task_run_name must give a str, got {type(name).__name__}"
        )
    return name
