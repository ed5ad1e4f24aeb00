"""DaskTaskRunner: task runs as Dask tasks, ordered by the Dask scheduler.

How a call travels::

    driver                                             Dask cluster
    ------                                             ------------
    core: submit pickles the call (SerializationError here); check_call refuses
      resources no worker offers; upstreams of other runners: wait in callbacks
    dispatch / dispatch_many (one client.map for a .map())
      client.submit(run_call, call_bytes, level, log topic, header topic, announce,
                    *[dask futures | pickled States], key="<task>-<run id hex>") -->  scheduler
                                                                   waits for upstream keys,
                                                                   moves their data worker
                                                                   to worker, then on a worker:
                                                        run_call -> engine -> State bytes
    headers event (Dask's event stream)  <-------------  the States without their results,
                                                         batched while the worker is busy
    log records event                     <-------------  (sent as they are made)
    settler thread: run.finish(header state)   a small result came with the header;
      a larger one stays on the cluster: .result() / state.data fetch it then (a run
      whose Dask future ends without a header is found by a sweep and fetched)
    stop: futures still referenced get their results brought here (the client
      closes), then the client (and the cluster, when this runner made it) close

Upstream braid futures of the same client are passed as ``distributed.Future``
arguments (Dask resolves them to their values), so the scheduler orders the
runs and the driver never touches intermediate data.  A worker that dies mid-run
is Dask's business (it reschedules); a run that kills every worker it lands on
ends with Dask's ``KilledWorker``, which becomes a CRASHED state with
:class:`braid.errors.WorkerLost`.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import weakref
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import distributed

from braid import errors
from braid.adapters.dask import worker
from braid.adapters.dask.cluster import (
    CONNECT_TIMEOUT,
    check_workers_have_braid,
    make_cluster,
    new_client,
    reachable,
    task_states,
)
from braid.adapters.dask.future import DaskFuture, state_from_dask
from braid.adapters.dask.inflight import InFlight
from braid.adapters.dask.resources import ResourceCheck, freeze, resources_of
from braid.adapters.dask.worker import current_log_topic, run_call
from braid.adapters.overdue import GRACE, overdue_timer, time_limit
from braid.core.calls import TaskCall
from braid.core.contract import Capabilities
from braid.core.futures import TaskFuture
from braid.core.logs import driver_level, replay
from braid.core.runner import Run, TaskRunner
from braid.core.serialization import dumps_state, loads
from braid.core.states import Crashed, State, TimedOut, UpstreamFailedState
from braid.core.timers import Timer

__all__ = ["DaskTaskRunner"]

logger = logging.getLogger("braid.dask")


class DaskTaskRunner(TaskRunner):
    """Runs task runs on a Dask cluster: an existing one by ``address``, or one it starts.

    With ``address`` (``"tcp://host:port"``) it connects to a running scheduler and
    never closes that cluster.  Otherwise it starts ``cluster_class`` (a class or a
    dotted path; default ``distributed.LocalCluster`` with worker processes) with
    ``cluster_kwargs``, calls ``cluster.adapt(**adapt_kwargs)`` if given, and closes
    the cluster on exit.  ``client_kwargs`` go to ``distributed.Client``; the client
    is not made Dask's default unless ``client_kwargs={"set_as_default": True}`` (use
    :func:`get_dask_client` for Dask collections).  Every flow run gets its own
    duplicate, hence its own client (and its own cluster, when this runner starts one).
    """

    capabilities = Capabilities(requires_pickling=True, native_dependencies=True, remote=True)

    def __init__(
        self,
        address: str | None = None,
        cluster_class: type | str | None = None,
        cluster_kwargs: Mapping[str, Any] | None = None,
        adapt_kwargs: Mapping[str, Any] | None = None,
        client_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if address is not None:
            if not isinstance(address, str) or not address:
                raise errors.ConfigurationError(
                    f"DaskTaskRunner: address must be a scheduler address like "
                    f"'tcp://127.0.0.1:8786', got {address!r}"
                )
            given = [
                n
                for n, v in (
                    ("cluster_class", cluster_class),
                    ("cluster_kwargs", cluster_kwargs),
                    ("adapt_kwargs", adapt_kwargs),
                )
                if v is not None
            ]
            if given:
                raise errors.ConfigurationError(
                    f"DaskTaskRunner: address={address!r} connects to an existing cluster, "
                    f"so {', '.join(given)} cannot apply; pass either address or the "
                    f"cluster options"
                )
        if cluster_class is not None and not (
            isinstance(cluster_class, type)
            or (isinstance(cluster_class, str) and "." in cluster_class)
        ):
            raise errors.ConfigurationError(
                f"DaskTaskRunner: cluster_class must be a class or a dotted path like "
                f"'dask_jobqueue.SLURMCluster', got {cluster_class!r}"
            )
        for name, value in (
            ("cluster_kwargs", cluster_kwargs),
            ("adapt_kwargs", adapt_kwargs),
            ("client_kwargs", client_kwargs),
        ):
            if value is not None and not isinstance(value, Mapping):
                raise errors.ConfigurationError(
                    f"DaskTaskRunner: {name} must be a dict, got {value!r}"
                )
        self.address = address
        self.cluster_class = cluster_class
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.adapt_kwargs = dict(adapt_kwargs) if adapt_kwargs is not None else None
        self.client_kwargs = dict(client_kwargs or {})
        self.on_worker_client = False
        self._client: Any = None
        self._cluster: Any = None

    @classmethod
    def on_worker(cls) -> DaskTaskRunner:
        """A started runner on the client of the Dask worker this code runs on.

        Tasks running on the cluster submit their children through it.  It never
        closes that client (the worker owns it) and is never exited.
        """
        runner = cls()
        runner.on_worker_client = True
        runner.__enter__()
        return runner

    def duplicate(self) -> DaskTaskRunner:
        runner = type(self)(
            self.address,
            self.cluster_class,
            self.cluster_kwargs or None,
            self.adapt_kwargs,
            self.client_kwargs or None,
        )
        runner.on_worker_client = self.on_worker_client
        return runner

    def __repr__(self) -> str:
        if self.address is not None:
            return f"DaskTaskRunner(address={self.address!r})"
        if self.on_worker_client:
            return "DaskTaskRunner(<worker client>)"
        name = (
            self.cluster_class
            if isinstance(self.cluster_class, str)
            else (getattr(self.cluster_class, "__name__", "LocalCluster"))
        )
        return f"DaskTaskRunner(cluster_class={name!r})"

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` of the started runner (None before it starts)."""
        return self._client

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Connect to the cluster (or start one) and subscribe to this client's events."""
        self._held: weakref.WeakSet[DaskFuture] = weakref.WeakSet()  # completed, unread
        self._resources = ResourceCheck()
        self._log_topic: str | None = None
        self._abandoning = False
        self._headers_lock = threading.Lock()
        self._limits: dict[str, tuple[Run, float]] = {}  # runs with a time-out, not started
        self._overdue: Timer[Any] | None = None
        if self.on_worker_client:
            self._client = distributed.get_client()
        else:
            client_kwargs = {"set_as_default": False, **self.client_kwargs}
            try:
                if self.address is not None:
                    reachable(self.address)
                    client_kwargs.setdefault("timeout", CONNECT_TIMEOUT)
                    self._client = new_client(self.address, client_kwargs)
                else:
                    self._cluster = make_cluster(
                        self.cluster_class, self.cluster_kwargs, self.adapt_kwargs
                    )
                    self._client = new_client(self._cluster, client_kwargs)
            except errors.ClusterUnreachable:
                self._close_owned()
                raise
            except (OSError, TimeoutError) as exc:
                self._close_owned()
                where = self.address or "the cluster it started"
                raise errors.ClusterUnreachable(
                    f"DaskTaskRunner could not connect to {where}: {type(exc).__name__}: {exc}"
                ) from exc
            except BaseException:
                self._close_owned()
                raise
            self._log_topic = self._client.id
            self._log_dashboard()
            if self.address is not None:
                try:
                    check_workers_have_braid(self._client, self.address)
                except BaseException:
                    self._close_owned()
                    raise
        # the client's own topic: Dask drops its events when the client goes away.  A
        # worker's shared client subscribes to nothing (its children's states are fetched
        # when they end): nothing is left subscribed when that worker shuts down
        self._header_topic: str | None = None
        self._inflight: InFlight | None = None
        if not self.on_worker_client:
            self._header_topic = self._client.id
            self._inflight = InFlight(self._end)
            self._client.subscribe_topic(self._header_topic, self._on_event)

    def _log_dashboard(self) -> None:
        try:
            services = self._client.scheduler_info(n_workers=0).get("services", {})
            link = self._client.dashboard_link if "dashboard" in services else None
        except Exception:  # noqa: BLE001 - the link is a courtesy, never a failure
            link = None
        if link:
            logger.info("Dask dashboard: %s", link)

    def stop(self, abandon: bool) -> None:
        """Bring here the results of runs still referenced, then close what we made."""
        overdue, self._overdue = self._overdue, None
        if overdue is not None:
            overdue.stop(5)
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            inflight.stop()
        try:
            if not abandon:
                gc.collect()  # runs nobody holds any more must not be fetched
                self._fetch_many([f for f in list(self._held) if f.unfetched()])
        finally:
            self._close_owned()

    def _close_owned(self) -> None:
        client, self._client = self._client, None
        cluster, self._cluster = self._cluster, None
        if self.on_worker_client:
            return
        try:
            if client is not None:
                try:  # else the scheduler reports the client's removal to a closed comm
                    client.unsubscribe_topic(client.id)
                except Exception:  # noqa: BLE001 - closing matters, not the courtesy
                    pass
                client.close()
        finally:
            if cluster is not None:
                cluster.close()

    def cancel(self, runs: Sequence[Run]) -> Collection[Run]:
        """Cancel dispatched runs on the cluster; return those a worker was running."""
        # the core ends every live run next (CANCELLED or CRASHED, with its reason): what
        # Dask reports for them meanwhile (cancelled, upstream lost) must not end them first
        self._abandoning = True
        futures = {
            run.future.key: run
            for run in runs
            if isinstance(run.future, DaskFuture) and run.future.dask_future is not None
        }
        if not futures:
            return ()
        dask_futures = [run.future.dask_future for run in futures.values()]
        try:
            found = self._client.run_on_scheduler(task_states, list(futures), callback_timeout=5)
            running = [futures[k] for k, (s, _, _) in found.items() if s == "processing"]
        except Exception:  # noqa: BLE001 - unknown: treat every dispatched run as running
            found, running = {}, list(futures.values())
        for run in running:
            _, where, silent = found.get(run.future.key, (None, None, None))
            if where is not None:  # say where it was left running, and how long silent
                name = run.future.task_run_name or run.future.key
                message = (
                    f"task run {name!r}: stopped while running on Dask worker {where} "
                    f"(last heard from {silent:.1f} s ago), abandoned with its flow"
                )
                run.finish(Crashed(errors.Crash(message), message))
        try:
            self._client.cancel(dask_futures, force=True)
        except Exception:  # noqa: BLE001 - the client closes next anyway
            pass
        return running

    # -- submitting ---------------------------------------------------------------------
    def new_future(self, call: TaskCall) -> DaskFuture:
        """A DaskFuture keyed ``<task name>-<run id>``."""
        return DaskFuture(
            call.task, call.run_name, call.run_id, f"{call.task.name}-{call.run_id:032x}"
        )

    def limits_backend(self) -> Any:
        """Concurrency limits for a flow run on this cluster: Dask semaphores on the
        scheduler, shared by every client of it (two flows share a name's slots)."""
        from braid.concurrency import DaskLimits

        return DaskLimits(self._client)

    def is_native(self, future: TaskFuture) -> bool:
        """Whether ``future`` is a run on this client (the scheduler orders it)."""
        return (
            isinstance(future, DaskFuture)
            and future.dask_future is not None
            and future.dask_future.client is self._client
        )

    def check_call(self, call: TaskCall) -> None:
        """Refuse, at submit, resources no worker of the cluster offers."""
        resources = self._resources.for_call(call, self._client, self.adapt_kwargs is not None)
        if resources is not None:
            call.extra = {**(call.extra or {}), "dask_resources": resources}

    def dispatch(self, run: Run) -> None:
        """Hand one runnable run to the scheduler."""
        self._send([run])

    def dispatch_many(self, runs: Sequence[Run]) -> None:
        """Hand many runs to the scheduler: one ``client.map`` per set of resources and
        number of upstreams (each upstream is an argument of its own)."""
        batches: dict[Any, list[Run]] = {}
        for run in runs:
            batches.setdefault((freeze(resources_of(run)), len(run.upstreams)), []).append(run)
        for batch in batches.values():
            self._send(batch)

    def _topic(self) -> str | None:
        """Where the run's log records go: this client's topic, or (for a child submitted
        on a worker) the topic of the driver that submitted its parent."""
        return self._log_topic or current_log_topic.get()

    def _upstream_arg(self, u: TaskFuture) -> Any:
        """A ``distributed.Future`` for an upstream on this client, else its pickled State."""
        if isinstance(u, DaskFuture):
            d = u.dask_future
            if (
                d is not None
                and d.client is self._client
                and d.status in ("pending", "finished")
                and (not u.done() or u.state.is_completed())
            ):
                return d
        return dumps_state(u.state, getattr(u.task, "name", "task"))

    def _send(self, runs: list[Run]) -> None:
        """Hand runs to the scheduler: one ``submit``, or one ``map`` for a batch (the
        runs of a batch share their resources)."""
        client = self._client
        level = driver_level()
        topic, header_topic = self._topic(), self._header_topic
        resources = resources_of(runs[0])
        futures: list[DaskFuture] = [run.future for run in runs]  # type: ignore[misc]
        inflight = self._inflight
        if inflight is not None:
            for run, f in zip(runs, futures, strict=True):
                inflight.add(f.key, run)
        try:
            if client is None:
                raise errors.RunnerNotStarted("the DaskTaskRunner stopped before the run")
            announce = [self._watch(run) for run in runs]
            if len(runs) == 1:
                f = futures[0]
                dask_futures = [
                    client.submit(
                        run_call,
                        runs[0].payload,
                        level,
                        topic,
                        header_topic,
                        announce[0],
                        *[self._upstream_arg(u) for u in runs[0].upstreams],
                        key=f.key,
                        pure=False,
                        resources=resources,
                    )
                ]
            else:  # a batch's runs have as many upstreams each (see dispatch_many)
                n = len(runs)
                keys = [f.key for f in futures]
                upstreams = [[self._upstream_arg(u) for u in run.upstreams] for run in runs]
                dask_futures = client.map(
                    run_call,
                    [r.payload for r in runs],
                    [level] * n,
                    [topic] * n,
                    [header_topic] * n,
                    announce,
                    *zip(*upstreams, strict=True),
                    key=keys,
                    pure=False,
                    resources=resources,
                )
        except Exception as exc:  # noqa: BLE001 - the runs end CRASHED, never pending
            for run, f in zip(runs, futures, strict=True):
                if inflight is not None:
                    inflight.discard(f.key)
                err = errors.Crash(f"Dask did not accept the run: {type(exc).__name__}: {exc}")
                err.__cause__ = exc
                run.finish(Crashed(err))
            return
        for run, future, d in zip(runs, futures, dask_futures, strict=True):
            run.payload = None
            future.dask_future = d
            if inflight is not None:
                inflight.submitted(future.key)  # its header (or a sweep) ends it
            else:  # a worker's client subscribes to no header: Dask says when it ends
                d.add_done_callback(_Settle(self, run))

    def _on_event(self, event: tuple[Any, Any]) -> None:
        """An event on this client's topic: the headers of runs that ended on a worker,
        log records a worker published, or a run's start; Dask's own are ignored."""
        msg = event[1]
        if not isinstance(msg, tuple) or len(msg) != 3:
            return
        kind, first, second = msg
        if kind == worker.HEADERS:
            inflight = self._inflight
            if inflight is not None:
                for key, header in first:
                    inflight.header(key, header)
        elif kind == worker.LOGS:
            replay(loads(second), first)
        elif kind == worker.STARTED:
            self._started(first, second)

    # -- runs whose worker stops answering ----------------------------------------------
    def _watch(self, run: Run) -> bool:
        """Whether the run has a time limit the driver must bound (it then announces its
        start on the worker)."""
        call = run.call
        limit = time_limit(call.task) if call is not None else None
        if limit is None or not isinstance(run.future, DaskFuture):
            return False
        with self._headers_lock:
            self._limits[run.future.key] = (run, limit)
        return True

    def _started(self, key: str, where: str) -> None:
        """A watched run started on worker ``where``: end it if it is not final in time."""
        with self._headers_lock:
            entry = self._limits.pop(key, None)
            if entry is None:
                return
            if self._overdue is None:
                self._overdue = overdue_timer(self._overdue_run)
            overdue = self._overdue
        run, limit = entry
        overdue.add(time.monotonic() + limit + GRACE, (run, where, limit))

    def _overdue_run(self, item: tuple[Run, str, float]) -> None:
        run, where, limit = item
        future = run.future
        if not isinstance(future, DaskFuture) or future.done():
            return
        name = future.task_run_name or future.key
        message = (
            f"task run {name!r} exceeded its time limit of {limit:g} s: Dask worker "
            f"{where} started it and has not reported back since (frozen or "
            f"unreachable?)"
        )
        d = future.dask_future
        run.finish(TimedOut(message, errors.TaskTimeout(message)))
        client = self._client
        if d is not None and client is not None:
            try:  # its dependents are cancelled with it: they end UpstreamFailed
                client.cancel([d], force=True)
            except Exception:  # noqa: BLE001 - the run is final either way
                pass

    def settle(self, run: Run) -> None:
        """The run's Dask future is done (a worker's client, no header): finish the run."""
        self._end(run, None)

    def _end(self, run: Run, header: bytes | tuple[bytes, bytes] | None) -> None:
        """Finish the run from its header, or (None) from its Dask future, which is done."""
        if self._abandoning:
            return
        future = run.future
        if not isinstance(future, DaskFuture):
            return
        state = _upstream_first(run, state_from_dask(future, header))
        if future.done():
            return
        run.finish(state)
        if state.is_completed():
            self._held.add(future)

    # -- fetching -------------------------------------------------------------------------
    def _fetch_many(self, futures: list[DaskFuture]) -> None:
        """Bring the results of completed runs here in one gather (the client closes)."""
        if not futures or self._client is None:
            return
        try:
            payloads = self._client.gather([f.dask_future for f in futures])
        except Exception:  # noqa: BLE001 - each fetches (or fails) by itself below
            payloads = None
        for i, f in enumerate(futures):
            state = f.state
            if payloads is not None:
                state.prefetched(loads(payloads[i]))
            else:
                state.data  # noqa: B018 - fetches it, or keeps the failure to fetch it


class _Settle:
    """The done-callback of a run's ``distributed.Future`` (no closure per run)."""

    __slots__ = ("runner", "run")

    def __init__(self, runner: DaskTaskRunner, run: Run) -> None:
        self.runner = runner
        self.run = run

    def __call__(self, _d: Any) -> None:
        run, self.run = self.run, None
        if run is not None:
            self.runner.settle(run)


def _upstream_first(run: Run, state: State) -> State:
    """A run Dask dropped because an upstream failed (cancelled with it) ends
    ``UpstreamFailed`` naming that upstream, as if it had run."""
    if not state.is_crashed():
        return state
    for u in run.upstreams:
        if u.done() and not u.state.is_completed():
            call = run.call
            return UpstreamFailedState(u.state, f"task {call.task.name!r}" if call else "task")
    return state


worker.nested_runner_factory = DaskTaskRunner.on_worker
