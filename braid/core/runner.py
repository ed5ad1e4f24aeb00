"""The runner contract: what a task runner writes, and what the core does for it.

A runner writes four public methods and the core does everything else::

    class MyRunner(TaskRunner):
        capabilities = Capabilities(...)     data the core and the conformance suite read
        def duplicate(self): ...             a fresh, unstarted copy, same configuration
        def start(self): ...                 acquire a pool, a client (optional)
        def stop(self, abandon): ...         release them; every run is final already
        def dispatch(self, run): ...         send one runnable run to a worker; there:
                                               if run.begin(): run.finish(run.execute(self))

The core (:mod:`braid.core.runs`) owns the run table: ``submit``/``map`` accept a
call and make its future, wait for upstreams that are not native to the backend,
keep the live set, drain at flow end, abandon on an interrupt or a flow time-out
(queued runs CANCELLED, running ones CRASHED), and re-dispatch a run that waits out
a retry delay when the runner ``reschedules_retries``.

Backends with more to offer declare it through optional protocols, checked with
``isinstance``: :class:`NativeDependencies` (Dask futures, Ray refs order runs on the
cluster), :class:`BatchDispatch` (one message for a whole ``.map()``),
:class:`NewFuture` (a future class of their own), :class:`CancelsRuns` (cancel on
the backend and say which runs may have started).  A worker thread that blocks on
a future gives its slot back through :class:`braid.core.futures.WorkerSlot`.
"""

from __future__ import annotations

import atexit
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from braid import errors
from braid.core.calls import TaskCall
from braid.core.contract import (
    BatchDispatch,
    CancelsRuns,
    Capabilities,
    ChecksCalls,
    NativeDependencies,
    NewFuture,
)
from braid.core.futures import TaskFuture
from braid.core.limited import RunLimits
from braid.core.runs import Run, RunTable

if TYPE_CHECKING:
    from braid.core.records import FlowRunRecord

__all__ = [
    "BatchDispatch",
    "CancelsRuns",
    "Capabilities",
    "ChecksCalls",
    "NativeDependencies",
    "NewFuture",
    "Run",
    "TaskRunner",
    "default_runner",
    "drain_default_runner",
    "new_flow_runner",
    "set_default_runner_class",
]


class TaskRunner(ABC):
    """Runs task calls somewhere and hands back futures; enter it before submitting.

    ``__exit__`` returns when every accepted run is final (it drains), except when
    leaving because of an interrupt or a flow time-out: then queued runs end
    CANCELLED and running ones CRASHED, and it returns at once.
    """

    # set on the class; an instance may set its own (ThreadPoolTaskRunner(check_pickling=True))
    capabilities: Capabilities = Capabilities()
    _table: RunTable | None = None

    # -- what a runner writes ---------------------------------------------------------
    @abstractmethod
    def duplicate(self) -> TaskRunner:
        """A fresh, unstarted runner with the same configuration."""

    def start(self) -> None:  # noqa: B027 - optional
        """Acquire what runs need (a pool, a client); called by ``__enter__``."""

    def stop(self, abandon: bool) -> None:  # noqa: B027 - optional
        """Release what ``start`` acquired; every run is final when it is called.

        ``abandon`` is True when the flow was interrupted or timed out: workers may
        still be running abandoned calls, and should be stopped without waiting.
        """

    @abstractmethod
    def dispatch(self, run: Run) -> None:
        """Send a runnable ``run`` to a worker; called from any thread, must not block.

        The worker calls ``run.begin()`` (False: drop it), runs the call
        (``run.execute(...)`` in this process, or the engine where it lands) and
        reports with ``run.finish(state)``.
        """

    # -- what the core does -----------------------------------------------------------
    @property
    def started(self) -> bool:
        """Whether the runner is entered and accepts runs."""
        return self._table is not None

    def submit(
        self,
        call: TaskCall,
        upstreams: Sequence[TaskFuture[Any]] = (),
        record: FlowRunRecord | None = None,
    ) -> TaskFuture[Any]:
        """Start ``call`` once every future in ``upstreams`` is final; return its future."""
        table = self._table
        if table is None:
            raise self._not_started()
        return table.accept(call, upstreams, record)

    def map(
        self,
        calls: Sequence[TaskCall],
        upstreams: Sequence[Sequence[TaskFuture[Any]]],
        record: FlowRunRecord | None = None,
    ) -> list[TaskFuture[Any]]:
        """Submit many calls; a runner that takes batches gets the runnable ones at once."""
        table = self._table
        if table is None:
            raise self._not_started()
        return table.accept_many(calls, upstreams, record)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every accepted run is final, at most ``timeout`` seconds; True if
        they all are (the runner stays started: ``__exit__`` still ends it)."""
        table = self._table
        if table is None:
            return True
        return table.drain(timeout)

    def __enter__(self) -> TaskRunner:
        if self._table is not None:
            raise errors.ConfigurationError(
                f"{type(self).__name__} is already started; use runner.duplicate() for "
                f"another concurrent use"
            )
        table = RunTable(self)  # checks the declared capabilities before starting
        self.start()
        try:
            table.limits = RunLimits.for_runner(self)
        except BaseException:
            self.stop(True)
            raise
        self._table = table
        # while started, submit is the table's accept itself: one call less per .submit()
        self.submit = table.accept  # type: ignore[method-assign]
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        table = self._table
        if table is None:
            return
        abandon = exc_type is not None and (
            not issubclass(exc_type, Exception) or issubclass(exc_type, errors.FlowTimeout)
        )
        try:
            if abandon:
                table.abandon(
                    "the flow timed out"
                    if issubclass(exc_type, errors.FlowTimeout)
                    else f"the flow was interrupted ({exc_type.__name__})"
                )
            else:
                try:
                    table.drain()
                except BaseException as err:  # interrupted while draining: abandon after all
                    abandon = True
                    table.abandon(f"the flow was interrupted ({type(err).__name__})")
                    raise
        finally:
            self._table = None
            del self.submit  # the class's again: it raises RunnerNotStarted
            try:
                if table.limits is not None:
                    table.limits.close()
            finally:
                self.stop(abandon)

    def __eq__(self, other: object) -> bool:
        """Runners are equal when they are of one class with the same configuration (so
        ``runner.duplicate() == runner``)."""
        return type(self) is type(other) and _config(self) == _config(other)

    def __hash__(self) -> int:
        return hash(type(self))

    def _not_started(self) -> errors.RunnerNotStarted:
        return errors.RunnerNotStarted(
            f"{type(self).__name__} is not started: use it as `with runner:` or pass it to "
            f"@flow(task_runner=...)"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _config(runner: TaskRunner) -> dict[str, Any]:
    """A runner's configuration: its public, non-callable attributes."""
    return {k: v for k, v in vars(runner).items() if not k.startswith("_") and not callable(v)}


# -- the default runner -----------------------------------------------------------------
_default_class: Callable[[], TaskRunner] | None = None
_default: TaskRunner | None = None
_default_lock = threading.Lock()


def set_default_runner_class(factory: Callable[[], TaskRunner]) -> None:
    """Name the runner flows use when they name none (``braid`` sets its thread pool)."""
    global _default_class
    _default_class = factory


def new_flow_runner(spec: Any) -> TaskRunner:
    """A fresh, unstarted runner for one flow run: a duplicate of ``spec``, an instance of
    it (a class), or of the default class (``None``)."""
    if spec is None:
        if _default_class is None:
            raise errors.ConfigurationError("no default task runner is set (import braid)")
        return _default_class()
    if isinstance(spec, TaskRunner):
        return spec.duplicate()
    runner = spec()
    if not isinstance(runner, TaskRunner):
        raise errors.ConfigurationError(f"task_runner {spec!r} did not make a TaskRunner")
    return runner


def default_runner() -> TaskRunner:
    """The process-wide runner for tasks submitted outside any flow (started on first use).

    At interpreter exit it drains, so runs submitted outside a flow are not lost.
    """
    global _default
    runner = _default
    if runner is not None:
        return runner
    with _default_lock:
        if _default is None:
            made = new_flow_runner(None)
            made.__enter__()
            atexit.register(drain_default_runner)
            _default = made
        return _default


def drain_default_runner() -> None:
    """Wait for every run submitted outside a flow, then stop the default runner."""
    global _default
    runner, _default = _default, None
    if runner is not None:
        runner.__exit__(None, None, None)


def _forget_default_in_child() -> None:
    # a forked child inherits the parent's started default runner but none of its
    # threads: it must start its own
    global _default, _default_lock
    _default = None
    _default_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_default_in_child)
