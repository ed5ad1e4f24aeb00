"""DaskTaskRunner: task runs as Dask tasks, ordered by the Dask scheduler.

How a call travels::

    driver                                             Dask cluster
    ------                                             ------------
    submit(call, upstreams)
      dumps_call(call)          (unpicklable input fails here: SerializationError)
      resources hints -> resources={...}   (refused here if no worker offers them)
      upstreams from other runners, not final? -- wait in their done-callbacks --+
      |                                                                          |
      v   (map(): one client.map for the whole batch)                            |
    client.submit(run_call, call_bytes, [dask futures | pickled States], level,  <+
                  key="<task name>-<run id hex>")  ----------------------------->  scheduler
      returns DaskFuture (PENDING)                                 waits for upstream keys,
                                                                   moves their data worker
                                                                   to worker, then on a worker:
                                                        run_call -> run_pickled -> State bytes
    Dask done-callback (Dask's callback thread)   <-------------- key finished / erred
      DaskFuture settles: done(), wait(), callbacks fire; nothing is fetched
    run's log records   <-------------- Dask event on this client's topic (before the key ends)
    .state / .result()  -- first access fetches the pickled State
    __exit__: drain (wait until every accepted run settled), fetch the States of
      futures still referenced (the client is about to close), close what we made

Upstream braid futures of the same client are passed as ``distributed.Future`` s in
a list argument (Dask resolves futures inside lists), so the scheduler orders the
runs and the driver never touches intermediate data.  A worker that dies mid-run
is Dask's business (it reschedules); a run that kills every worker it lands on
ends with Dask's ``KilledWorker``, which becomes a CRASHED state with
:class:`braid.errors.WorkerLost`.
"""

from __future__ import annotations

import importlib
import logging
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import distributed

from braid import errors
from braid.adapters.dask.future import SETTLED, DaskFuture, state_from_error, state_from_payload
from braid.adapters.dask.worker import current_log_topic, run_call
from braid.core.engine import TaskCall
from braid.core.futures import TaskFuture
from braid.core.logs import driver_level, replay
from braid.core.serialization import dumps_call, dumps_state, loads
from braid.core.states import Cancelled, Crashed, State
from braid.runners.base import Capabilities, LiveRuns, TaskRunner, call_when_final

__all__ = ["DaskTaskRunner"]

logger = logging.getLogger("braid.dask")

#: how braid's standard hints are named as Dask worker resources (custom names pass as
#: they are); workers must declare them, e.g. ``dask worker --resources "GPU=1"``.
RESOURCE_NAMES = {"cpus": "CPU", "gpus": "GPU", "memory": "MEMORY"}


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

    def __init__(self, address: str | None = None, cluster_class: type | str | None = None,
                 cluster_kwargs: Mapping[str, Any] | None = None,
                 adapt_kwargs: Mapping[str, Any] | None = None,
                 client_kwargs: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        if address is not None:
            if not isinstance(address, str) or not address:
                raise errors.ConfigurationError(
                    f"DaskTaskRunner: address must be a scheduler address like "
                    f"'tcp://127.0.0.1:8786', got {address!r}"
                )
            given = [n for n, v in (("cluster_class", cluster_class),
                                    ("cluster_kwargs", cluster_kwargs),
                                    ("adapt_kwargs", adapt_kwargs)) if v is not None]
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
        for name, value in (("cluster_kwargs", cluster_kwargs), ("adapt_kwargs", adapt_kwargs),
                            ("client_kwargs", client_kwargs)):
            if value is not None and not isinstance(value, Mapping):
                raise errors.ConfigurationError(
                    f"DaskTaskRunner: {name} must be a dict, got {value!r}"
                )
        self.address = address
        self.cluster_class = cluster_class
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.adapt_kwargs = dict(adapt_kwargs) if adapt_kwargs is not None else None
        self.client_kwargs = dict(client_kwargs or {})
        self._on_worker_client = False
        self._client: Any = None
        self._cluster: Any = None

    @classmethod
    def _on_worker(cls) -> DaskTaskRunner:
        """A started runner on the client of the Dask worker this code runs on.

        Tasks running on the cluster submit their children through it.  It never
        closes that client (the worker owns it) and is never exited.
        """
        runner = cls()
        runner._on_worker_client = True
        runner.__enter__()
        return runner

    def duplicate(self) -> DaskTaskRunner:
        runner = type(self)(self.address, self.cluster_class,
                            self.cluster_kwargs or None, self.adapt_kwargs,
                            self.client_kwargs or None)
        runner._on_worker_client = self._on_worker_client
        return runner

    def __repr__(self) -> str:
        if self.address is not None:
            return f"DaskTaskRunner(address={self.address!r})"
        if self._on_worker_client:
            return "DaskTaskRunner(<worker client>)"
        name = self.cluster_class if isinstance(self.cluster_class, str) else (
            getattr(self.cluster_class, "__name__", "LocalCluster"))
        return f"DaskTaskRunner(cluster_class={name!r})"

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` of the started runner (None before it starts)."""
        return self._client

    # -- lifecycle ----------------------------------------------------------------------
    def _start(self) -> None:
        self._live = LiveRuns()  # accepted, not settled
        self._held: weakref.WeakSet[DaskFuture] = weakref.WeakSet()  # settled, not fetched
        self._offered: dict[str, float] = {}
        self._log_topic: str | None = None
        if self._on_worker_client:
            self._client = distributed.get_client()
            return
        client_kwargs = {"set_as_default": False, **self.client_kwargs}
        try:
            if self.address is not None:
                self._client = distributed.Client(self.address, **client_kwargs)
            else:
                self._cluster = self._make_cluster()
                self._client = distributed.Client(self._cluster, **client_kwargs)
        except (OSError, TimeoutError) as exc:
            self._close_owned()
            where = self.address or "the cluster it started"
            raise errors.BraidError(
                f"DaskTaskRunner could not connect to {where}: {type(exc).__name__}: {exc}"
            ) from exc
        except BaseException:
            self._close_owned()
            raise
        self._log_topic = f"braid-logs-{self._client.id}"
        self._client.subscribe_topic(self._log_topic, _replay_event)
        self._log_dashboard()

    def _make_cluster(self) -> Any:
        cls = self.cluster_class
        if cls is None:
            cls = distributed.LocalCluster
        elif isinstance(cls, str):
            module, _, name = cls.rpartition(".")
            try:
                cls = getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError) as exc:
                raise errors.ConfigurationError(
                    f"DaskTaskRunner: cluster_class {self.cluster_class!r} cannot be "
                    f"imported: {exc}"
                ) from exc
        kwargs = dict(self.cluster_kwargs)
        if cls is distributed.LocalCluster:
            # processes give real parallelism and make forwarding logs safe; a private
            # dashboard port avoids "port 8787 in use" warnings from a second cluster
            kwargs.setdefault("processes", True)
            kwargs.setdefault("dashboard_address", "127.0.0.1:0")
        cluster = cls(**kwargs)
        if self.adapt_kwargs is not None:
            cluster.adapt(**self.adapt_kwargs)
        return cluster

    def _log_dashboard(self) -> None:
        try:
            services = self._client.scheduler_info(n_workers=0).get("services", {})
            link = self._client.dashboard_link if "dashboard" in services else None
        except Exception:  # noqa: BLE001 - the link is a courtesy, never a failure
            link = None
        if link:
            logger.info("Dask dashboard: %s", link)

    def _stop(self, abandon: bool, reason: str) -> None:
        try:
            if abandon:
                self._abandon(reason)
            else:
                self._live.drain()
            # the client closes below: fetch what the caller may still read
            self._fetch_many([f for f in list(self._held) if f._state is SETTLED])
        finally:
            self._close_owned()

    def _close_owned(self) -> None:
        client, self._client = self._client, None
        cluster, self._cluster = self._cluster, None
        if self._on_worker_client:
            return
        try:
            if client is not None:
                client.close()
        finally:
            if cluster is not None:
                cluster.close()

    def _abandon(self, reason: str) -> None:
        """Cancel what has not started, mark what runs CRASHED, and return at once."""
        live = [f for f, _ in self._live.take_all()]
        submitted = [f for f in live if f._dask is not None]
        running: set = set()
        if submitted:
            keys = [f._key for f in submitted]
            try:
                found = self._client.run_on_scheduler(_task_states, keys, callback_timeout=5)
                running = {k for k, s in found.items() if s == "processing"}
            except Exception:  # noqa: BLE001 - unknown: treat every submitted run as running
                running = set(keys)
            try:
                self._client.cancel([f._dask for f in submitted], force=True)
            except Exception:  # noqa: BLE001 - the client closes next anyway
                pass
        message_run = f"stopped while running: {reason}"
        for f in live:
            if f._key in running:
                f._finish(Crashed(errors.Crash(message_run), message_run))
            else:
                f._finish(Cancelled(f"cancelled before it started: {reason}"))

    # -- submitting ---------------------------------------------------------------------
    def submit(self, call: TaskCall, upstreams: Sequence[TaskFuture]) -> TaskFuture:
        if not self._started:
            raise self._not_started()
        payload = dumps_call(call)
        resources = self._resources_for(call)
        future = self._accept(call)
        self._when_ready((future, payload, upstreams, resources, self._topic()))
        return future

    def map(self, calls: Sequence[TaskCall],
            upstreams: Sequence[Sequence[TaskFuture]]) -> list[TaskFuture]:
        """Submit many calls; those whose upstreams are on this cluster (or final) go in
        one ``client.map`` per set of resources, so a map costs one round trip."""
        if not self._started:
            raise self._not_started()
        payloads = [dumps_call(c) for c in calls]  # fail before accepting any run
        resources = [self._resources_for(c) for c in calls]
        futures = [self._accept(c) for c in calls]
        topic = self._topic()
        batches: dict[Any, list] = {}
        for item in zip(futures, payloads, upstreams, resources, [topic] * len(calls),
                        strict=True):
            if self._waiting_on(item[2]):
                self._when_ready(item)
            else:
                batches.setdefault(_freeze(item[3]), []).append(item)
        for items in batches.values():
            self._send(items)
        return futures

    def _topic(self) -> str | None:
        """Where the run's log records go: this client's topic, or (for a child submitted
        on a worker) the topic of the driver that submitted its parent."""
        return self._log_topic or current_log_topic.get()

    def _accept(self, call: TaskCall) -> DaskFuture:
        future = DaskFuture(call.task, call.run_name, call.run_id, self,
                            f"{call.task.name}-{call.run_id:032x}")
        self._live.add(future)
        return future

    def _waiting_on(self, upstreams: Sequence[TaskFuture]) -> list[TaskFuture]:
        """The upstreams this run must wait for here: not final and not on this client."""
        client = self._client
        return [u for u in upstreams
                if not u.done() and not (isinstance(u, DaskFuture) and u._dask is not None
                                         and u._dask.client is client)]

    def _when_ready(self, item: tuple) -> None:
        """Send ``(future, payload, upstreams, resources, topic)`` once its upstreams
        that live elsewhere are final."""
        call_when_final(self._waiting_on(item[2]), lambda: self._send([item]))

    def _upstream_arg(self, u: TaskFuture) -> Any:
        """A ``distributed.Future`` for an upstream on this client, else its pickled State."""
        d = getattr(u, "_dask", None)
        if (d is not None and d.client is self._client and d.status in ("pending", "finished")
                and (u._state is SETTLED or not u._state.is_final())):
            return d
        return dumps_state(u.state, getattr(u.task, "name", "task"))

    def _send(self, items: list) -> None:
        """Hand runs to the scheduler: one ``submit``, or one ``map`` for a batch (the
        items of a batch share their resources and log topic)."""
        client = self._client
        level = driver_level()
        resources, topic = items[0][3], items[0][4]
        try:
            if client is None:
                raise errors.RunnerNotStarted("the DaskTaskRunner stopped before the run")
            arg_lists = [[self._upstream_arg(u) for u in item[2]] for item in items]
            if len(items) == 1:
                dask_futures = [client.submit(run_call, items[0][1], arg_lists[0], level, topic,
                                              key=items[0][0]._key, pure=False,
                                              resources=resources)]
            else:
                n = len(items)
                dask_futures = client.map(run_call, [it[1] for it in items], arg_lists,
                                          [level] * n, [topic] * n,
                                          key=[it[0]._key for it in items],
                                          pure=False, resources=resources)
        except Exception as exc:  # noqa: BLE001 - the runs end CRASHED, never pending
            for item in items:
                err = errors.Crash(f"Dask did not accept the run: {type(exc).__name__}: {exc}")
                err.__cause__ = exc
                self._settle(item[0], Crashed(err))
            return
        for item, d in zip(items, dask_futures, strict=True):
            future = item[0]
            future._dask = d
            d.add_done_callback(lambda _d, f=future: self._settle(f, SETTLED))

    def _settle(self, future: DaskFuture, state: State) -> None:
        """The run is over on the cluster (or will never get there): count it off."""
        def finish() -> None:
            if state is SETTLED:
                self._held.add(future)
            future._finish(state)

        self._live.settle(future, finish)  # does nothing for a run already abandoned

    # -- fetching states ------------------------------------------------------------------
    def _materialize(self, future: DaskFuture) -> None:
        """Fetch the State of one settled run (the caller holds its fetch lock)."""
        d = future._dask
        status = d.status
        try:
            if status in ("finished", "lost", "pending"):
                # a result lost with its worker is recomputed by Dask while this client
                # holds the key: d.result() waits for that instead of declaring it lost
                state = state_from_payload(d.result())
            else:
                state = state_from_error(future, d.exception(), status)
        except Exception as exc:  # noqa: BLE001 - e.g. the client closed meanwhile
            state = state_from_error(future, exc, d.status)
        future._set_fetched(state)
        self._held.discard(future)

    def _fetch_many(self, futures: list[DaskFuture]) -> None:
        """Fetch many settled States in one gather (runs that erred one by one)."""
        finished = [f for f in futures if f._dask.status == "finished"]
        if len(finished) > 1 and self._client is not None:
            try:
                payloads = self._client.gather([f._dask for f in finished])
            except Exception:  # noqa: BLE001 - fall back to one by one below
                payloads = None
            if payloads is not None:
                for f, payload in zip(finished, payloads, strict=True):
                    if f._state is SETTLED:
                        f._set_fetched(state_from_payload(payload))
        for f in futures:
            f.state  # noqa: B018 - fetches what the gather did not

    # -- resources --------------------------------------------------------------------------
    def _resources_for(self, call: TaskCall) -> dict | None:
        """Dask ``resources=`` for the call's hints; refuse hints no worker can satisfy.

        Dask would leave such a task waiting forever ("no-worker"), so the check
        happens at submit, against the workers connected now (refreshed only when a
        hint is not met by what was seen before).  Clusters that adapt are not checked:
        their workers come and go.
        """
        hints = call.extra.get("resources") if call.extra else None
        if hints is None or hints.is_empty():
            return None
        wanted: dict[str, float] = {}
        for field, dask_name in RESOURCE_NAMES.items():
            value = getattr(hints, field)
            if value:
                wanted[dask_name] = value
        for name, value in hints.custom.items():
            if value:
                wanted[name] = value
        if not wanted or self.adapt_kwargs is not None:
            return wanted or None
        if not self._satisfied(wanted):
            self._offered = self._worker_resources()
            if not self._satisfied(wanted):
                raise errors.ConfigurationError(
                    f"task {call.task.name!r} asks for Dask resources {wanted}, but no worker "
                    f"of the cluster offers them (the largest offers: {self._offered or 'none'}"
                    f"); start workers with them, e.g. `dask worker --resources "
                    f"\"GPU=1\"` or LocalCluster(resources={{'GPU': 1}}).  braid names cpus, "
                    f"gpus and memory {RESOURCE_NAMES}"
                )
        return wanted

    def _satisfied(self, wanted: dict[str, float]) -> bool:
        offered = self._offered
        return all(offered.get(k, 0) >= v for k, v in wanted.items())

    def _worker_resources(self) -> dict[str, float]:
        offered: dict[str, float] = {}
        workers = self._client.scheduler_info(n_workers=-1).get("workers", {})
        for info in workers.values():
            for name, amount in (info.get("resources") or {}).items():
                offered[name] = max(offered.get(name, 0), amount)
        return offered


def _replay_event(event: tuple) -> None:
    """Hand log records a worker published (``(timestamp, pickled (where, records))``)
    to this process's loggers."""
    where, records = loads(event[1])
    replay(records, where)


def _freeze(resources: dict | None) -> Any:
    return None if resources is None else tuple(sorted(resources.items()))


def _task_states(keys: list, dask_scheduler: Any = None) -> dict:
    """On the scheduler: the state of each key ("processing" means on a worker)."""
    tasks = dask_scheduler.tasks
    return {k: tasks[k].state if k in tasks else None for k in keys}
