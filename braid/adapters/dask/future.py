"""DaskFuture: a braid future backed by a ``distributed.Future``, and the translation of
Dask's outcomes into braid States.

The Dask future's value is always the pickled final State of the run (the engine
never raises for the task), so a Dask *error* on a braid key means Dask could not
run it: a worker died (``KilledWorker``) or the cluster dropped the key.  Those
become CRASHED states carrying :class:`braid.errors.WorkerLost`, with the Dask
exception as ``__cause__``.
"""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError
from typing import Any

from distributed import KilledWorker

from braid import errors
from braid.core.futures import TaskFuture, _finish_lock
from braid.core.serialization import loads
from braid.core.states import Crashed, State, StateType, UpstreamFailedState

__all__ = ["DaskFuture", "SETTLED"]

#: the marker state of a future whose Dask future is done but whose State has not been
#: fetched yet.  It is final (so ``done()``, ``wait()`` and callbacks behave as for any
#: finished future); ``DaskFuture.state`` replaces it by the real State on first access.
SETTLED = State(StateType.COMPLETED, "Settled", "", None, 0.0)

_fetch_locks = [threading.Lock() for _ in range(16)]


class DaskFuture(TaskFuture):
    """A task run on a Dask cluster; its ``distributed.Future`` holds the pickled State.

    ``state`` never blocks on the run: PENDING until the Dask future is done.  Once it
    is, the first access to ``state`` (or ``result()``) fetches the pickled State from
    the cluster and caches it (log records came earlier, as events); nothing is fetched
    for runs whose state nobody asks for (their data moves worker to worker).  While
    this object lives, the cluster keeps the result; once it is garbage, braid's
    reference to the Dask key goes with it and Dask may release the data.
    """

    __slots__ = ("_dask", "_runner", "_key", "_batch")

    def __init__(self, task: Any, name: str | None, run_id: int, runner: Any,
                 key: str) -> None:
        super().__init__(task, name, run_id)
        self._dask: Any = None      # distributed.Future, once handed to the cluster
        self._runner = runner
        self._key = key
        self._batch: list | None = None  # the futures of the same .map() call

    @property
    def key(self) -> str:
        """The Dask key of this run (task name and run id, as on the dashboard)."""
        return self._key

    @property
    def state(self) -> State:
        """The run's current state; fetches it from the cluster on first access once done."""
        state = self._state
        if state is SETTLED:
            with _fetch_locks[self._id & 15]:
                if self._state is SETTLED:
                    self._runner._materialize(self)
            state = self._state
        return state

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any:
        """Wait for the run and return its value, or raise its exception.

        Same contract as :meth:`TaskFuture.result`; the value is fetched from the
        cluster the first time it is needed.
        """
        if not self.done():
            self.wait(timeout)
            if not self.done():
                raise errors.WaitTimeout(
                    f"task run {self.task_run_name or self.task_run_id!s} is not final "
                    f"after {timeout} s (state {self._state.name})"
                )
        return self.state.result(raise_on_failure)

    def _set_fetched(self, state: State) -> None:
        """Replace the SETTLED marker by the fetched State (callers hold the fetch lock)."""
        with _finish_lock:
            if self._state is not SETTLED:
                return
            self._state = state
        if self._name is None:
            self._name = state.task_run_name

    def __repr__(self) -> str:
        return f"<DaskFuture {self._name or self._key} {self._state.name}>"


def state_from_payload(payload: bytes) -> State:
    """The State a finished Dask run returned."""
    return loads(payload)


def state_from_error(future: DaskFuture, exc: BaseException | None, status: str) -> State:
    """The braid State of a run whose Dask future ended in error, cancelled or lost."""
    name = future.task_run_name or future.key
    if isinstance(exc, KilledWorker):
        culprit = exc.args[0] if exc.args else future.key
        err = errors.WorkerLost(
            f"task run {name!r}: the Dask workers running "
            f"{'it' if culprit == future.key else repr(culprit)} died ({exc})"
        )
        err.__cause__ = exc
        crashed = Crashed(err)
        if culprit != future.key:
            # Dask errs every dependent of a task that killed its workers
            return UpstreamFailedState(crashed, f"task {future.task.name!r}")
        return crashed
    err: errors.BraidError
    if exc is None or isinstance(exc, CancelledError) or status in ("cancelled", "lost"):
        err = errors.WorkerLost(
            f"task run {name!r}: the Dask cluster dropped it (status {status!r}); its "
            f"worker or the scheduler was lost"
        )
    else:
        err = errors.Crash(
            f"task run {name!r}: Dask could not run it: {type(exc).__name__}: {exc}"
        )
    err.__cause__ = exc
    return Crashed(err)
