"""The worker side of :class:`~braid.adapters.dask.DaskTaskRunner`: what a braid task runs
as on a Dask worker, and :func:`get_dask_client`.

Every braid task is the Dask task ``run_call(call_bytes, log_level, log_topic,
header_topic, announce, *upstreams)`` under the run's key.  Dask has already replaced
the ``distributed.Future`` objects among ``upstreams`` by their values, which are the
pickled final States returned by the upstream runs; upstreams from other runners
arrive as pickled States too.  The engine does the rest.

Two small things travel to the submitting client as Dask events, on the worker's one
ordered stream to the scheduler: the run's log records, each as it is made (on
``log_topic``, the driver's: Dask's own way of forwarding worker logs,
``Worker.log_event`` to ``Client.subscribe_topic``), and the run's *header* (on
``header_topic``, the submitting client's): its final State without the result, or
the whole State when it did not complete (an exception, small).  A result pickled in
at most ``INLINE_BYTES`` travels with its header; a larger one stays on the worker
until someone reads it or a downstream run takes it.

Records go before the key finishes.  Headers leave in batches (:class:`_Headers`):
each Dask event costs the worker, the scheduler and the client a message, so while
the worker has more runs to do, the headers of the runs it ended wait for the next
(at most :data:`BATCH_SECONDS` or :data:`BATCH_SIZE` headers later); a worker with
nothing else to run sends at once.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import weakref
from collections.abc import Iterator
from typing import Any

from distributed import get_worker, rejoin, secede
from distributed.worker import thread_state

from braid import errors
from braid.core.context import current_run
from braid.core.engine import name_lane, run_pickled_state
from braid.core.futures import worker_slot
from braid.core.hooks import HOOKS_RAN
from braid.core.logs import dumps_records
from braid.core.serialization import dumps_state
from braid.core.states import State

__all__ = ["run_call", "get_dask_client"]

_nested_runners: dict[str, Any] = {}
_nested_lock = threading.Lock()

#: a completed run whose pickled State is at most this many bytes sends it along with
#: its header (as Ray returns small results to their owner directly): reading it then
#: needs no round trip to the worker; a larger result stays on the worker until read
INLINE_BYTES = 4096

#: the kinds of braid events on a client's topic: (HEADERS, ((key, header), ...), "")
#: with each header the header bytes, or (header bytes, pickled State) for a small
#: result; (LOGS, where, pickled records) and (STARTED, key, worker address)
HEADERS, LOGS, STARTED = "braid-headers", "braid-logs", "braid-started"

#: the longest a run's header waits on its worker for others to go with it
BATCH_SECONDS = 0.01
#: the most headers one event carries
BATCH_SIZE = 64

#: makes the runner that tasks submitted from a run on this worker go to; set by
#: ``braid.adapters.dask.runner`` when it is imported (the package imports it first)
nested_runner_factory: Any = None

#: the driver's log topic for the run executing here; children submitted from the run
#: send their records there too
current_log_topic: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "braid_dask_log_topic", default=None
)
#: records are pickled inside the State; a payload without this name holds none


class _SecedeHook:
    """Gives the Dask worker thread back while the task blocks on a braid future.

    ``secede()`` opens a slot for another task (so a task that waits for its own
    children never deadlocks a one-thread worker); ``rejoin()`` waits for a slot
    before the task goes on.  Only the task's own thread may secede: a helper thread
    (a task with a time-out runs its body in one) has no Dask slot to give back.
    Waits inside ``get_dask_client()`` / ``worker_client()`` have seceded already.
    """

    __slots__ = ("_thread", "_depth", "seceded")

    def __init__(self) -> None:
        self._thread = threading.get_ident()
        self._depth = 0  # waits in progress on the task's thread
        self.seceded = False  # whether the outermost one seceded (and must rejoin)

    def release(self) -> None:
        if threading.get_ident() != self._thread:
            return
        self._depth += 1
        if self._depth == 1:
            try:
                secede()
            except (KeyError, AttributeError, ValueError):  # seceded already / no slot
                return
            self.seceded = True

    def reacquire(self) -> None:
        if threading.get_ident() != self._thread:
            return
        self._depth -= 1
        if self._depth == 0 and self.seceded:
            self.seceded = False
            rejoin()


def _nested_runner() -> Any:
    """The runner tasks submitted from this worker go to: one per worker, made lazily."""
    address = get_worker().address
    runner = _nested_runners.get(address)
    if runner is None:
        with _nested_lock:
            runner = _nested_runners.get(address)
            if runner is None:
                runner = _nested_runners[address] = nested_runner_factory()
    return runner


def run_call(
    call_bytes: bytes,
    log_level: int,
    log_topic: str | None,
    header_topic: str | None,
    announce: bool,
    *upstreams: Any,
) -> bytes:
    """Run one pickled braid call on this Dask worker; return its pickled final State.

    Never raises for the task itself (the engine turns every outcome into a State),
    so a Dask error on this key always means Dask could not run it (a dead worker).
    ``announce``: tell the client the run started here (it has a time-out, which the
    client then bounds even if this worker stops answering).  ``upstreams`` come last,
    as arguments of their own: Dask resolves futures there without a container.
    """
    key = get_worker().get_current_task() if header_topic is not None else None
    if announce and header_topic is not None:
        try:
            get_worker().log_event(header_topic, (STARTED, key, get_worker().address))
        except Exception:  # noqa: BLE001 - the engine's own time-out still applies
            pass
    hook = _SecedeHook()
    previous = getattr(worker_slot, "hook", None)
    worker_slot.hook = hook
    token = current_log_topic.set(log_topic)
    _name_lane()
    try:
        level: int | None = log_level
        sink = None if log_topic is None else _EventSink(log_topic)
        if get_worker().address.startswith("inproc://"):
            # a worker thread of the driver's own process (LocalCluster(processes=False)):
            # its records are handled here as they are made, as on threads, once
            level, sink = None, None
        state, payload = run_pickled_state(call_bytes, upstreams, _nested_runner(), level, sink)
        if header_topic is not None:
            _send_header(header_topic, key, _header(state, payload))
    finally:
        current_log_topic.reset(token)
        worker_slot.hook = previous
        if hook.seceded:  # never leave the pool short of a thread
            rejoin()
    return payload


def _header(state: State, payload: bytes) -> bytes | tuple[bytes, bytes]:
    """How the run ended, for the submitting client: the State without its result, or
    with it when the pickled State is at most :data:`INLINE_BYTES` (then reading it
    costs no fetch)."""
    if not state.is_completed():
        return payload  # the whole failed state: an exception, small
    light = state.copy(data=None)
    # log records travel apart; a note that the run's hooks ran stays
    # (and the attempts retried in place, for the run's record)
    extra = state.extra
    kept = {k: extra[k] for k in (HOOKS_RAN, "attempts") if k in extra} if extra else None
    light.extra = kept or None
    header = dumps_state(light)
    if len(payload) <= INLINE_BYTES:
        return (header, payload)
    return header


class _Headers:
    """The headers of runs that ended on one worker, not sent yet, by client topic.

    A run's thread adds its header and sends the batch itself when the worker has no
    other run ready or running (so a lone run's client hears at once), or when the
    batch is full; otherwise a timer on the worker's event loop sends it within
    :data:`BATCH_SECONDS`.  Sending from the event loop costs no wake-up of it.
    """

    __slots__ = ("worker", "lock", "waiting", "count", "armed")

    def __init__(self, worker: Any) -> None:
        self.worker: weakref.ref[Any] = weakref.ref(worker)  # no cycle: it goes with its worker
        self.lock = threading.Lock()
        self.waiting: dict[str, list[tuple[Any, Any]]] = {}
        self.count = 0
        self.armed = False  # a timer will send what is waiting

    def add(self, worker: Any, topic: str, key: Any, header: Any) -> None:
        """Queue one run's header for ``topic``; send the batch now if it is time."""
        state = getattr(worker, "state", None)
        busy = state is not None and (
            len(state.executing) > 1 or len(state.ready) > 0 or len(state.constrained) > 0
        )
        with self.lock:
            self.waiting.setdefault(topic, []).append((key, header))
            self.count += 1
            if busy and self.count < BATCH_SIZE:
                arm, batches = not self.armed, None
                self.armed = True
            else:
                arm, batches = False, self._take()
        if batches is not None:
            _send(worker, batches)
        elif arm:
            try:
                worker.loop.add_callback(self._arm)
            except Exception:  # noqa: BLE001 - the worker is closing: send what waits now
                self.flush()

    def _take(self) -> dict[str, list[tuple[Any, Any]]]:
        waiting, self.waiting, self.count = self.waiting, {}, 0
        return waiting

    def _arm(self) -> None:
        worker = self.worker()
        if worker is not None:
            worker.loop.call_later(BATCH_SECONDS, self.flush)

    def flush(self) -> None:
        """Send every waiting header (on the worker's event loop, from its timer)."""
        with self.lock:
            self.armed = False
            batches = self._take()
        worker = self.worker()
        if worker is not None:
            _send(worker, batches)


def _send(worker: Any, batches: dict[str, list[tuple[Any, Any]]]) -> None:
    for topic, items in batches.items():
        try:
            worker.log_event(topic, (HEADERS, tuple(items), ""))
        except Exception:  # noqa: BLE001 - the client then fetches the States instead
            pass


#: each worker's header batch; a batch holds its worker weakly, so both go together
_batches: weakref.WeakKeyDictionary[Any, _Headers] = weakref.WeakKeyDictionary()


def _send_header(topic: str, key: Any, header: Any) -> None:
    """Queue a run's header in the batch of the worker this run is on."""
    worker = get_worker()
    batch = _batches.get(worker)
    if batch is None:
        with _nested_lock:
            batch = _batches.get(worker)
            if batch is None:
                batch = _batches[worker] = _Headers(worker)
    batch.add(worker, topic, key, header)


_lane_named = threading.local()


def _name_lane() -> None:
    """Lanes of the run record: the Dask worker's address, once per worker thread."""
    if not getattr(_lane_named, "done", False):
        _lane_named.done = True
        try:
            name_lane(f"dask {get_worker().address}")
        except Exception:  # noqa: BLE001 - the engine's default lane name will do
            pass


class _EventSink:
    """A run's log records, published one by one on the driver's topic as they are made."""

    __slots__ = ("topic", "worker")

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.worker: Any = None

    def put(self, record: logging.LogRecord) -> None:
        worker = self.worker
        if worker is None:
            worker = self.worker = get_worker()
        worker.log_event(self.topic, (LOGS, worker.address, dumps_records([record])))

    def flush(self) -> None:
        pass  # events leave on the stream that later reports the key finished


@contextlib.contextmanager
def get_dask_client(timeout: float | str | None = None) -> Iterator[Any]:
    """Yield a ``distributed.Client`` for Dask collections, inside a task or a flow.

    Inside a task running on a Dask worker it is the worker's client, and the task
    secedes from the worker's thread pool for the block (Dask's ``worker_client``), so
    computing collections there never deadlocks the worker.  In a flow body running on
    a :class:`DaskTaskRunner` it is that runner's client.  Elsewhere it raises
    :class:`braid.errors.MissingContextError`.
    """
    try:
        get_worker()
        on_worker = getattr(thread_state, "key", None) is not None
    except ValueError:
        on_worker = False
    if on_worker:
        from distributed import worker_client

        with worker_client(timeout=timeout) as client:
            yield client
        return
    ctx = current_run.get()
    runner = ctx.task_runner if ctx is not None else None
    client = getattr(runner, "client", None)
    if client is None:
        raise errors.MissingContextError(
            "get_dask_client() needs a task running on a Dask worker or a flow running on "
            "a DaskTaskRunner"
        )
    yield client
