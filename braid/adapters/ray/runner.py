"""RayTaskRunner: every task run is one Ray task returning a small header and the State.

How a call travels::

    driver                                              Ray worker process
    ------                                              ------------------
    core: submit pickles the call (SerializationError here, at submit); check_call
      refuses resources no Ray node offers
    dispatch(run)
      upstream is a RayTaskFuture with a live ref --> its data ref is passed as a
      |                                               top-level argument: Ray starts
      |                                               the task once it is ready and
      |                                               ships it worker to worker
      |                                               (never via the driver)
      upstream of another runner, not final --> the core waits in its callbacks, then
      |                                         dispatches; its State is passed as a value
      v
    execute.options(name=<run name>, num_cpus=..., resources=..., num_returns=2)
            .remote(call_bytes, log_level, *upstream data refs/States)
                                          ───────>  run_task(call, upstream States,
                                                      nested_runner=<RayTaskRunner on
                                                      this worker's Ray>)
                                                    -> header: final State without its
                                                       result, log records (small)
                                                    -> data: pickled final State (user
                                                       errors inside, traceback attached)
    header_ref.future() callback          <───────  (only the header comes back)
      header -> logs replayed, run.finish(state); the result is fetched from the
                data ref only when ``.result()`` or ``state.data`` is read
      Ray error (worker died, ...) -> CRASHED with errors.WorkerLost, or, when the
                                      error is an upstream's, run again with that
                                      upstream's State so the engine decides
                                      (UpstreamFailed, or allow_failure)

Runs that would only queue in Ray share Ray tasks, up to 16 in one (a big ``.map()``,
submits made while runs queue up, a chain's next links joining their upstream's task;
:mod:`braid.adapters.ray.batching`): one list of headers comes back for them, and one
result object per run.

Retries of task exceptions, time-outs, naming and failure propagation all happen in
the engine on the worker.  System failures are Ray's: a Ray task lost with its worker
process or node is re-run by Ray up to ``max_retries`` times (Ray's default, 3), and a
result lost with a node is rebuilt by lineage when something reads it; only a run Ray
gives up on ends CRASHED with ``errors.WorkerLost``.  ``retry_exceptions=False``: the
engine never raises for the task, so Ray never retries a task's own exception.

Which Ray, and who stops it: a runner uses the Ray this process is already connected
to (a worker's, or one the user started) and never shuts that down.  Otherwise it
starts a local Ray, or connects to ``address``, and that Ray is shut down when the
last braid runner using it exits; so nested flows and concurrent flow runs sharing
it never lose it under them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import ray

from braid import errors
from braid.adapters.overdue import GRACE, overdue_timer, time_limit
from braid.adapters.ray import logstream, remotes, worker
from braid.adapters.ray.batching import Batcher
from braid.adapters.ray.connection import ray_use
from braid.adapters.ray.future import RayTaskFuture
from braid.adapters.ray.options import check_resources, current_max_retries, current_ray_options
from braid.adapters.ray.outcomes import failure_state, native_ref, ray_name, read_header, refuse
from braid.adapters.ray.remotes import DEFAULT_MAX_RETRIES
from braid.adapters.ray.starts import StartWatch
from braid.core import logs
from braid.core.calls import TaskCall
from braid.core.context import current_run
from braid.core.contract import Capabilities
from braid.core.futures import TaskFuture
from braid.core.runner import Run, TaskRunner
from braid.core.states import Crashed, State, TimedOut
from braid.core.timers import Timer

__all__ = ["RayTaskRunner"]

#: how long a runner that abandons its runs waits for their last log records
ABANDON_LOG_WAIT = 1.0

# ray.init keywords that only make sense when starting a new local Ray; Ray refuses
# some of them when connecting, and ignores the others silently.
_LOCAL_ONLY = frozenset(
    {
        "num_cpus",
        "num_gpus",
        "resources",
        "labels",
        "object_store_memory",
        "_system_config",
        "include_dashboard",
        "dashboard_host",
        "dashboard_port",
        "_node_name",
        "_enable_object_reconstruction",
    }
)


# -- the runner ----------------------------------------------------------------------
class RayTaskRunner(TaskRunner):
    """Runs every task run as a Ray task, on a local Ray or the cluster at ``address``.

    ``address`` is a Ray cluster's GCS address (``host:port``, as printed by
    ``ray start --head``) or ``"auto"``; ``None`` starts a local Ray unless this
    process is already connected to one.  ``init_kwargs`` go to ``ray.init`` (e.g.
    ``{"num_cpus": 2}``); the dashboard is off unless ``include_dashboard=True``.  A
    Ray the runner started or connected is shut down when the last braid runner
    using it exits; a Ray initialised by anyone else is left running.

    ``max_retries`` (default 3, Ray's own; ``remote_options(max_retries=...)``
    overrides it for the tasks submitted in its block) is how often Ray re-runs a task
    whose worker process or node was lost, as raw Ray does; a result lost with a node
    is rebuilt the same way (lineage) when it is read.  Such a re-run repeats the
    task's side effects.  braid's own ``retries`` are separate: they count the task's
    exceptions (and time-outs), on the worker, and Ray never retries an exception
    (``retry_exceptions=False``).  A run Ray gives up on ends CRASHED with
    :class:`braid.errors.WorkerLost` naming the run and Ray's reason; runs downstream
    of it end ``UpstreamFailed``.  ``max_retries=0`` reports the first loss instead.
    """

    capabilities = Capabilities(requires_pickling=True, native_dependencies=True, remote=True)
    _session: Any = None  # the Ray connection of the current start (see _session_token)

    def __init__(
        self,
        address: str | None = None,
        init_kwargs: Mapping[str, Any] | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
    ) -> None:
        if not isinstance(max_retries, int) or max_retries < -1:
            raise errors.ConfigurationError(
                f"RayTaskRunner: max_retries must be an int >= 0 (or -1: retry for ever), "
                f"got {max_retries!r}"
            )
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise errors.ConfigurationError(
                f"RayTaskRunner: address must be a 'host:port' string, 'auto' or None, "
                f"got {address!r}"
            )
        if address is not None and address.startswith("ray://"):
            raise errors.ConfigurationError(
                f"RayTaskRunner: address {address!r} is a Ray Client address, which braid "
                f"does not use; pass the cluster's GCS address 'host:port' (the one "
                f"`ray start --head` prints)"
            )
        if init_kwargs is not None and not isinstance(init_kwargs, Mapping):
            raise errors.ConfigurationError(
                f"RayTaskRunner: init_kwargs must be a dict of ray.init keywords, "
                f"got {init_kwargs!r}"
            )
        kwargs = dict(init_kwargs or {})
        if "address" in kwargs:
            raise errors.ConfigurationError(
                "RayTaskRunner: pass the address as RayTaskRunner(address=...), not in init_kwargs"
            )
        if address is not None and address != "auto":
            local = sorted(set(kwargs) & _LOCAL_ONLY)
            if local:
                raise errors.ConfigurationError(
                    f"RayTaskRunner: init_kwargs {local} configure a new local Ray and "
                    f"cannot apply when connecting to the cluster at {address!r}; set them "
                    f"on `ray start` instead"
                )
        self.address = address
        self.init_kwargs = kwargs
        self.max_retries = max_retries

    def duplicate(self) -> RayTaskRunner:
        return type(self)(self.address, self.init_kwargs, self.max_retries)

    def __repr__(self) -> str:
        retries = (
            ""
            if self.max_retries == DEFAULT_MAX_RETRIES
            else (f", max_retries={self.max_retries!r}")
        )
        return f"RayTaskRunner(address={self.address!r}, init_kwargs={self.init_kwargs!r}{retries})"

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """Use the Ray this process is connected to, or start / connect one."""
        self._holds_ray = ray_use.acquire(self.address, self.init_kwargs)
        logstream.attach()  # records of runs reach this driver while they run
        self._session = _session_token()
        self._stopping = False
        self._abandoning: set[Run] = set()
        self._limits: dict[str, tuple[Run, float]] = {}  # runs with a time-out, not started
        self._watch_lock = threading.Lock()
        self._settling: set[Any] = set()  # header refs being taken (callback or a waiter)
        self._settle_lock = threading.Lock()
        self._starts: StartWatch | None = None
        self._overdue: Timer[Any] | None = None
        # a flow with a time-out: every run announces where it starts, so runs the
        # time-out leaves running are named with their node and worker process
        self._where: dict[str, tuple[str, float]] | None = {} if _flow_has_timeout() else None
        self._batcher = Batcher(self, _cluster_cpus())

    def stop(self, abandon: bool) -> None:
        """Release the Ray this runner started or connected (the last user shuts it down)."""
        self._stopping = True
        self._batcher.stop()
        with self._watch_lock:
            starts, overdue = self._starts, self._overdue
            self._starts = self._overdue = None
            self._limits.clear()
        if starts is not None:
            starts.stop()
        if overdue is not None:
            overdue.stop(5)
        # every record of this runner's runs is replayed by now (abandoning: at most
        # ABANDON_LOG_WAIT s more, as the flow's time-out or interrupt is due)
        logstream.detach(ABANDON_LOG_WAIT if abandon else logstream.FLUSH_TIMEOUT)
        if self._holds_ray:
            self._holds_ray = False
            ray_use.release()

    def cancel(self, runs: Sequence[Run]) -> Collection[Run]:
        """Cancel the runs' Ray tasks; return those that may be running (Ray cannot say
        whether a task is queued or running once its arguments are ready)."""
        self._stopping = True
        # the core ends these runs next (CANCELLED or CRASHED, with its reason); the Ray
        # errors the cancellation causes meanwhile must not end them first
        self._abandoning = set(runs)
        # decided for every run before any is cancelled
        started = [run for run in runs if self._may_run(run)]
        where, starts = self._where, self._starts
        if where is not None and starts is not None:
            starts.collect(timeout=1)  # the latest announcements (bounded: Ray may lag)
            # every run announces its start: the others are queued
            started = [run for run in started if _key(run) in where]
            for run in started:  # name where each is left running
                at, since = where[_key(run)]
                name = run.future.task_run_name or str(run.future.task_run_id)
                message = (
                    f"task run {name!r}: stopped while running on Ray {at} (started "
                    f"{time.monotonic() - since:.1f} s ago, not reported back since), "
                    f"abandoned with its flow"
                )
                run.finish(Crashed(errors.Crash(message), message))
        else:
            # Ray runs at most as many as it has CPUs; runs are listed in the order they
            # were dispatched, and Ray starts them about in that order: the rest queued
            slots = _cluster_cpus()
            if slots:
                started = started[:slots]
        for run in runs:
            ref = run.future.ref if isinstance(run.future, RayTaskFuture) else None
            if ref is not None:
                try:  # a queued Ray task never starts; a running one gets KeyboardInterrupt
                    ray.cancel(ref)
                except Exception:  # noqa: BLE001 - Ray may already be going away
                    pass
        return started

    @staticmethod
    def _may_run(run: Run) -> bool:
        future = run.future
        if not isinstance(future, RayTaskFuture) or future.ref is None:
            return False
        return all(run.upstreams[i].done() for i in future.native_slots)

    # -- submitting -------------------------------------------------------------------
    def new_future(self, call: TaskCall) -> RayTaskFuture:
        """A RayTaskFuture for the call."""
        future = RayTaskFuture(call.task, call.run_name, call.run_id)
        future.session = self._session
        return future

    def check_call(self, call: TaskCall) -> None:
        """Refuse resources the cluster lacks; keep the submitting code's
        ``remote_options(max_retries=...)`` with the call."""
        check_resources(call)
        retries = current_max_retries()
        if retries is not None:
            call.extra = {**(call.extra or {}), "ray_max_retries": retries}
        others = current_ray_options()
        if others:  # remote_options(max_calls=..., scheduling_strategy=..., ...)
            call.extra = {**(call.extra or {}), "ray_options": others}

    def limits_backend(self) -> Any:
        """Concurrency limits for a flow run on this Ray: a named actor per limit on the
        cluster, shared by every driver of it (slots of a dead holder lapse)."""
        from braid.concurrency import RayLimits

        return RayLimits()

    def is_native(self, future: TaskFuture) -> bool:
        """Whether Ray itself waits for ``future`` (a run of Ray with a live data ref, or
        held in one of this runner's pending batches, which its downstream joins or has
        sent first)."""
        if isinstance(future, RayTaskFuture) and future.ref is None:
            batch = future.held
            if batch is not None and batch.owner is self._batcher:
                return True
            self._batcher.send_held(future)  # another runner's batch: its data ref, now
        return native_ref(future, self._session) is not None

    def dispatch(self, run: Run, replaced: Mapping[int, State] | None = None) -> None:
        """Hand ``run`` to Ray, alone or sharing a Ray task with the next submits when
        this runner's runs already queue up (see :mod:`braid.adapters.ray.batching`)."""
        if replaced is None and self._batcher.offer(run):
            return
        self.send_one(run, replaced)

    # -- for braid.adapters.ray.batching --------------------------------------------
    @property
    def watches_starts(self) -> bool:
        """Whether every run announces its start (a flow with a time-out)."""
        return self._where is not None

    @property
    def stopping(self) -> bool:
        """Whether the runner is stopping or abandoning its runs."""
        return self._stopping

    def backlog(self) -> int:
        """How many runs of this runner are not final yet."""
        table = self._table
        return len(table.live) if table is not None else 0

    @property
    def session(self) -> Any:
        """The Ray connection of this start (refs of another one are dead)."""
        return self._session

    def outcome_handler(self, run: Run, batch_upstreams: tuple = ()) -> Any:
        """What the header ref of ``run`` calls when it is ready; ``batch_upstreams``:
        the futures whose Ray objects the run's batch took (a batch they fail for
        another run's sake is sent again, see ``_recover``)."""
        if batch_upstreams:
            return _BatchOutcome(self, run, batch_upstreams)
        return _Outcome(self, run)

    def send_one(self, run: Run, replaced: Mapping[int, State] | None = None) -> None:
        """Hand ``run`` to Ray: upstream refs as arguments, other upstreams as States."""
        future = run.future
        call = run.call
        if not isinstance(future, RayTaskFuture) or call is None:
            return
        args: list[Any] = []
        native: list[int] = []
        for i, u in enumerate(run.upstreams):
            if isinstance(u, RayTaskFuture) and u.held is not None:
                self._batcher.send_held(u)  # its Ray object, before this run takes it
            ref = None if replaced and i in replaced else native_ref(u, self._session)
            if ref is not None:
                args.append(ref)
                native.append(i)
            else:
                args.append(replaced[i] if replaced and i in replaced else u.state)
        extra = call.extra or {}
        hints = extra.get("resources")
        retries = extra.get("ray_max_retries", self.max_retries)
        try:
            header_ref, data_ref = remotes.remote_for(
                call.task.name, hints, retries, extra.get("ray_options")
            ).remote(run.payload, logs.driver_level(), *args, **self._watch(run))
        except Exception as exc:  # noqa: BLE001 - e.g. invalid resources, Ray gone away
            refuse(run, exc)
            return
        future.native_slots = native
        future.attach(header_ref, data_ref, _Outcome(self, run))

    def dispatch_many(self, runs: Sequence[Run]) -> None:
        """Hand a map's ready runs to Ray: runs of one task with the same options share
        Ray tasks when the map is big enough for the cluster (see
        :mod:`braid.adapters.ray.batching`); the others go one by one."""
        self._batcher.dispatch_many(runs)

    def settle(self, run: Run, ref: Any, outcome: Any, batch_upstreams: tuple = ()) -> None:
        """Take the outcome of header ``ref`` (a header or a Ray error) unless stale or late."""
        future = run.future
        if not isinstance(future, RayTaskFuture):
            return
        # Ray's done-callback and a waiter's ray.get may both bring it: one takes it
        with self._settle_lock:
            if ref is not future.ref or future.done() or ref in self._settling:
                return
            self._settling.add(ref)
        try:
            outcome = future.own_header(outcome)
            if isinstance(outcome, BaseException):
                self._ray_error(run, outcome, batch_upstreams)
                return
            state, records = read_header(outcome, future)
            # replayed now, not when someone reads the result: unread runs log too
            logs.replay(records, "ray")
            future.header_state = state
            run.finish(state)
            if self._where is not None:
                self._where.pop(_key(run), None)
        finally:
            with self._settle_lock:
                self._settling.discard(ref)

    # -- runs whose node stops answering (braid.adapters.overdue) ----------------------
    def _watch(self, run: Run) -> dict[str, str]:
        """For a run with a time limit: the keywords that make it announce its start."""
        call = run.call
        limit = time_limit(call.task) if call is not None else None
        if (limit is None and self._where is None) or call is None:
            return {}
        with self._watch_lock:
            if self._stopping:
                return {}
            if self._starts is None:
                try:
                    self._starts = StartWatch(self._started)
                except Exception:  # noqa: BLE001 - then the engine's own limit only
                    return {}
                self._overdue = overdue_timer(self._overdue_run)
            key = f"{call.run_id:x}"
            if limit is not None:
                self._limits[key] = (run, limit)
            return {"starts": self._starts.name, "key": key}

    def _started(self, key: str, where: str) -> None:
        """A watched run started ``where``: end it if it is not final in time."""
        with self._watch_lock:
            entry = self._limits.pop(key, None)
            overdue = self._overdue
            if self._where is not None:
                self._where[key] = (where, time.monotonic())
        if entry is not None and overdue is not None:
            run, limit = entry
            overdue.add(time.monotonic() + limit + GRACE, (run, where, limit))

    def _overdue_run(self, item: tuple[Run, str, float]) -> None:
        run, where, limit = item
        future = run.future
        if not isinstance(future, RayTaskFuture) or future.done() or run.call is None:
            return
        ref, name = future.ref, future.task_run_name or ray_name(run.call)
        message = (
            f"task run {name!r} exceeded its time limit of {limit:g} s: it started on Ray "
            f"{where}, which has not reported back since (frozen or unreachable?)"
        )
        run.finish(TimedOut(message, errors.TaskTimeout(message)))
        if ref is not None:
            try:  # runs waiting for its result then end UpstreamFailed (see _recover)
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - the run is final either way
                pass

    # -- Ray errors -------------------------------------------------------------------
    def _ray_error(self, run: Run, exc: BaseException, batch_upstreams: tuple = ()) -> None:
        """A run's ref holds a Ray error: its worker died, or an upstream's did (its own,
        or, in a batch, another run's: ``batch_upstreams``)."""
        future = run.future
        assert isinstance(future, RayTaskFuture) and run.call is not None
        if run in self._abandoning:
            return
        if self._stopping:  # abandoning: the run table ends every run (cancel, crash)
            return
        if future.native_slots or batch_upstreams:
            future.detach()
            threading.Thread(
                target=self._recover,
                args=(run, exc, batch_upstreams),
                daemon=True,
                name="braid-ray-recover",
            ).start()
            return
        run.finish(failure_state(exc, run.call))

    def _recover(self, run: Run, exc: BaseException, batch_upstreams: tuple = ()) -> None:
        """Run again with the States of upstreams whose worker died, or report the crash.

        Ray fails a task whose argument is an error without running it; the engine,
        given that upstream's CRASHED state, decides what braid promises instead
        (UpstreamFailed, or the exception under ``allow_failure``).  An upstream in the
        same batch counts as one (it ends first, by the same rule).  A batched run none
        of whose upstreams broke, in a batch that never ran because another run's
        upstream broke, is sent again alone.
        """
        broken: dict[int, State] = {}
        future = run.future
        slots = future.native_slots if isinstance(future, RayTaskFuture) else []
        for i in slots:
            if self._broke(run.upstreams[i]):
                broken[i] = run.upstreams[i].state
        if broken:
            self.dispatch(run, broken)
        elif any([self._broke(u) for u in batch_upstreams]):
            self.dispatch(run, {})
        elif run.call is not None:
            run.finish(failure_state(exc, run.call))

    def _broke(self, u: TaskFuture) -> bool:
        """Wait for upstream ``u``; whether it ended without a result in Ray."""
        TaskFuture.wait(u)  # the lock, not ray.get: the ref may be the errored one
        # an upstream that crashed, or whose own upstream failed: Ray passes its error
        # on, and the engine turns its State into UpstreamFailed
        return native_ref(u, self._session) is None or not u.state.is_completed()


def _key(run: Run) -> str:
    """The key a run announces its start under."""
    return f"{run.call.run_id:x}" if run.call is not None else ""


def _flow_has_timeout() -> bool:
    """Whether the flow run entering this runner has a ``timeout_seconds``."""
    ctx = current_run.get()
    return getattr(getattr(ctx, "flow", None), "timeout_seconds", None) is not None


def _cluster_cpus() -> int:
    """How many CPUs the Ray cluster has (0 when Ray cannot say)."""
    try:
        return int(ray.cluster_resources().get("CPU", 0))
    except Exception:  # noqa: BLE001 - Ray may be going away: assume every run started
        return 0


class _Outcome:
    """What a run's header ref calls when it is ready (no closure per run)."""

    __slots__ = ("runner", "run")

    def __init__(self, runner: RayTaskRunner, run: Run) -> None:
        self.runner = runner
        self.run = run

    def __call__(self, ref: Any, outcome: Any) -> None:
        self.runner.settle(self.run, ref, outcome)


class _BatchOutcome(_Outcome):
    """As :class:`_Outcome`, for a run of a batch that took upstreams' Ray objects."""

    __slots__ = ("upstreams",)

    def __init__(self, runner: RayTaskRunner, run: Run, upstreams: tuple) -> None:
        super().__init__(runner, run)
        self.upstreams = upstreams

    def __call__(self, ref: Any, outcome: Any) -> None:
        self.runner.settle(self.run, ref, outcome, self.upstreams)


def _session_token() -> tuple[str, str, str]:
    """This process's Ray connection: cluster (GCS address), job and node.  A fresh
    ``ray.init`` or a new cluster gives a new token."""
    ctx = ray.get_runtime_context()
    return (str(ctx.gcs_address), str(ctx.get_job_id()), str(ctx.get_node_id()))


worker.nested_runner_factory = RayTaskRunner
