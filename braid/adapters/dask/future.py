"""DaskFuture: a braid future backed by a ``distributed.Future``, and the translation of
Dask's outcomes into braid States.

The Dask future's value is always the pickled final State of the run (the engine
never raises for the task), so a Dask *error* on a braid key means Dask could not
run it: a worker died (``KilledWorker``) or the cluster dropped the key.  Those
become CRASHED states carrying :class:`braid.errors.WorkerLost`, with the Dask
exception as ``__cause__``.  This module is the one place where Dask's exceptions
are translated into braid's.
"""

from __future__ import annotations

from concurrent.futures import CancelledError
from typing import Any

from distributed import KilledWorker

from braid import errors
from braid.core.futures import TaskFuture
from braid.core.serialization import loads
from braid.core.states import Crashed, DeferredState, Failed, State, UpstreamFailedState

__all__ = ["DaskFuture", "state_from_dask"]


class DaskFuture(TaskFuture):
    """A task run on a Dask cluster; its ``distributed.Future`` holds the pickled State.

    ``state`` never blocks and never fetches: PENDING until the Dask future is done,
    then the final State from the run's header (a small event the worker sent).  A
    COMPLETED run's result stays on the cluster until ``result()`` (or
    ``state.data``) reads it; while this object lives, the cluster keeps it.
    """

    __slots__ = ("dask_future", "key")

    def __init__(self, task: Any, name: str | None, run_id: int, key: str) -> None:
        super().__init__(task, name, run_id)
        #: the ``distributed.Future`` of the run, once handed to the cluster
        self.dask_future: Any = None
        #: the Dask key of this run (task name and run id, as on the dashboard)
        self.key = key

    def unfetched(self) -> bool:
        """Whether the run completed and its result has not been brought here yet."""
        state = self.state
        return isinstance(state, DeferredState) and not state.fetched()

    def needs_fetch(self) -> bool:
        """Whether the run completed and its result is still on the cluster."""
        return self.unfetched()

    @classmethod
    def prefetch(cls, futures: list[TaskFuture[Any]]) -> None:
        """Bring the results of completed runs here in one ``gather`` per client."""
        by_client: dict[int, list[DaskFuture]] = {}
        for f in futures:
            if isinstance(f, DaskFuture) and f.dask_future is not None and f.unfetched():
                by_client.setdefault(id(f.dask_future.client), []).append(f)
        for group in by_client.values():
            try:
                payloads = group[0].dask_future.client.gather([f.dask_future for f in group])
            except Exception:  # noqa: BLE001 - each is fetched (or fails) by itself later
                continue
            for f, payload in zip(group, payloads, strict=True):
                state = f.state
                if isinstance(state, DeferredState):
                    state.prefetched(_loaded(payload, f.task_run_name or f.key))

    def __repr__(self) -> str:
        return f"<DaskFuture {self.task_run_name or self.key} {self.state.name}>"


def state_from_dask(future: DaskFuture, header: bytes | tuple[bytes, bytes] | None) -> State:
    """The final State of a run, from its header if it came, else from its Dask future
    (which must be done).

    A header with the pickled State attached (a small result) needs no fetch; without
    a header (it was lost, or the run was recomputed elsewhere) the State is fetched
    from the cluster now.
    """
    if header is not None:  # sent by the worker as the run ended: Dask may lag behind
        full = None
        if isinstance(header, tuple):
            header, full = header
        try:
            light: State = loads(header)
        except Exception:  # noqa: BLE001 - e.g. an exception class not importable here
            return Fetch(future)()
        if not light.is_completed():
            return light
        # every run's record keeps these two: one string each for all runs, not one per run
        light.name = _shared(light.name)
        light.where = _shared(light.where)
        fetch = Fetch(future, light.task_run_name)
        state = DeferredState.wrap(light, fetch)
        if full is not None:
            state.prefetched(_loaded(full, fetch.name))
        return state
    return Fetch(future)()


class Fetch:
    """Fetches the full State of a run (its result included) from the cluster.

    It holds the run's ``distributed.Future`` and the names its messages use, never
    the :class:`DaskFuture`: the future holds the run's state, which holds this, and
    that cycle would keep every completed run's future (and its result on the
    cluster) until the next full garbage collection.
    """

    __slots__ = ("dask_future", "key", "name", "task_name")

    def __init__(self, future: DaskFuture, name: str | None = None) -> None:
        self.dask_future: Any = future.dask_future
        self.key = future.key
        self.name: str = name or future.task_run_name or future.key
        self.task_name: str = getattr(future.task, "name", "task")

    def __call__(self) -> State:
        d = self.dask_future
        status = d.status
        try:
            if status in ("finished", "lost", "pending", "cancelled"):
                # a result lost with its worker is recomputed by Dask while this client
                # holds the key: d.result() waits for that instead of declaring it lost; a
                # cancelled one raises the CancelledError that carries Dask's reason
                return _loaded(d.result(), self.name)
            return state_from_error(self, d.exception(), status)
        except Exception as exc:  # noqa: BLE001 - e.g. the client closed meanwhile
            return state_from_error(self, exc, d.status)


_SHARED: dict[str, str] = {}


def _shared(text: str | None) -> str | None:
    """One string object for equal ``text`` (state names, worker addresses: few values)."""
    if text is None or len(_SHARED) >= 4096:
        return text
    return _SHARED.setdefault(text, text)


def _loaded(payload: bytes, name: str) -> State:
    try:
        state: State = loads(payload)
    except Exception as exc:  # noqa: BLE001 - e.g. the result's class is not importable here
        err = errors.SerializationError(
            f"task run {name!r}: its final state could not be "
            f"unpickled in this process: {type(exc).__name__}: {exc}"
        )
        err.__cause__ = exc
        return Failed(err)
    return state


def state_from_error(run: Fetch, exc: BaseException | None, status: str) -> State:
    """The braid State of a run whose Dask future ended in error, cancelled or lost."""
    name, key = run.name, run.key
    if isinstance(exc, KilledWorker):
        culprit = exc.args[0] if exc.args else key
        err = errors.WorkerLost(
            f"task run {name!r}: the Dask workers running "
            f"{'it' if culprit == key else repr(culprit)} died ({exc})"
        )
        err.__cause__ = exc
        crashed = Crashed(err)
        if culprit != key:
            # Dask errs every dependent of a task that killed its workers
            return UpstreamFailedState(crashed, f"task {run.task_name!r}")
        return crashed
    lost: errors.BraidError
    if exc is None or isinstance(exc, CancelledError) or status in ("cancelled", "lost"):
        # Dask's reason, e.g. "scheduler-connection-lost" when the client lost the scheduler
        reason = getattr(exc, "reason", None)
        why = (
            f"Dask's reason: {reason!r}"
            if reason and reason != "unknown"
            else ("its worker or the scheduler was lost")
        )
        lost = errors.WorkerLost(
            f"task run {name!r}: the Dask cluster dropped it (status {status!r}); {why}"
        )
    else:
        lost = errors.Crash(
            f"task run {name!r}: Dask could not run it: {type(exc).__name__}: {exc}"
        )
    lost.__cause__ = exc
    return Crashed(lost)
