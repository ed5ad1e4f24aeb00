"""RayTaskRunner: every task run is one Ray task returning a small header and the State.

How a call travels::

    driver                                              Ray worker process
    ------                                              ------------------
    submit(call, upstreams)
      dumps_call(call) -> bytes    (SerializationError here, at submit)
      upstream is a RayTaskFuture with a live ref --> its data ref is passed as a
      |                                               top-level argument: Ray starts
      |                                               the task once it is ready and
      |                                               ships it worker to worker
      |                                               (never via the driver)
      upstream of another runner, not final --> add_done_callback; the last one to
      |                                         finish dispatches (no thread waits);
      |                                         its State is passed as a value
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
      header -> logs replayed, future settled; the result is fetched from the
                data ref only when ``.result()`` or ``state.data`` is read
      Ray error (worker died, ...) -> CRASHED with errors.WorkerLost, or, when the
                                      error is an upstream's, run again with that
                                      upstream's State so the engine decides
                                      (UpstreamFailed, or allow_failure)

Retries, time-outs, naming and failure propagation all happen in the engine on the
worker; Ray's own retries are off (``max_retries=0``) so a dead worker is reported,
not silently re-run with side effects repeated.

Which Ray, and who stops it: a runner uses the Ray this process is already connected
to (a worker's, or one the user started) and never shuts that down.  Otherwise it
starts a local Ray, or connects to ``address``, and that Ray is shut down when the
last braid runner using it exits; so nested flows and concurrent flow runs sharing
it never lose it under them.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import ray
from ray.exceptions import RayError, RayTaskError, TaskCancelledError

from braid import errors
from braid.adapters.ray.future import RayTaskFuture
from braid.adapters.ray.options import ray_options
from braid.adapters.ray.worker import execute
from braid.core import logs
from braid.core.context import default_run_name
from braid.core.engine import TaskCall
from braid.core.futures import TaskFuture
from braid.core.serialization import dumps_call
from braid.core.states import Cancelled, Crashed, State
from braid.runners.base import Capabilities, LiveRuns, TaskRunner, call_when_final

__all__ = ["RayTaskRunner"]

# ray.init keywords that only make sense when starting a new local Ray; Ray refuses
# some of them when connecting, and ignores the others silently.
_LOCAL_ONLY = frozenset({
    "num_cpus", "num_gpus", "resources", "labels", "object_store_memory", "_system_config",
    "include_dashboard", "dashboard_host", "dashboard_port", "_node_name",
    "_enable_object_reconstruction",
})


# max_retries=0: a task's retries are braid's (the engine's), for user errors only.
# num_returns=2: a small header for the driver, the result for downstream tasks.
_remote_execute = ray.remote(max_retries=0, num_returns=2)(execute)


# -- which Ray, and who shuts it down ------------------------------------------------
class _RayUse:
    """Counts the runners using a Ray that braid started or connected (module-wide).

    braid shuts Ray down when the last runner using such a Ray exits; a Ray that
    was initialised by anyone else (the user, a Ray worker) is only ever used.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.owned = False
        self.users = 0

    def acquire(self, address: str | None, init_kwargs: Mapping[str, Any]) -> bool:
        """Make sure Ray is initialised; True if this use must later be released."""
        with self.lock:
            if ray.is_initialized():
                if address is not None:
                    _check_same_cluster(address)
                if self.owned:
                    self.users += 1
                    return True
                return False
            kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
            if address is None:
                kwargs["include_dashboard"] = False
            else:
                kwargs["address"] = address
            kwargs.update(init_kwargs)
            try:
                ray.init(**kwargs)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                where = f"the Ray cluster at {address!r}" if address else "a local Ray"
                raise errors.ConfigurationError(
                    f"RayTaskRunner could not start or connect to {where}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            self.owned, self.users = True, 1
            return True

    def release(self) -> None:
        with self.lock:
            self.users -= 1
            if self.users == 0 and self.owned:
                self.owned = False
                ray.shutdown()


_ray_use = _RayUse()


def _check_same_cluster(address: str) -> None:
    if address == "auto":
        return
    current = ray.get_runtime_context().gcs_address
    if _host_port(current) != _host_port(address):
        raise errors.ConfigurationError(
            f"RayTaskRunner(address={address!r}): this process is already connected to the "
            f"Ray cluster at {current!r}, and a process can use one Ray at a time; use "
            f"that address, or run the flow in another process"
        )


def _host_port(address: str) -> tuple[str, str]:
    host, _, port = address.rpartition(":")
    try:
        host = socket.gethostbyname(host)
    except OSError:
        pass
    return host, port


# -- the runner ----------------------------------------------------------------------
class _Run:
    """A call accepted by the runner, with its upstream futures and its own future."""

    __slots__ = ("call", "payload", "upstreams", "future", "native", "dispatched")

    def __init__(self, call: TaskCall, payload: bytes, upstreams: Sequence[TaskFuture],
                 future: RayTaskFuture) -> None:
        self.call = call
        self.payload = payload
        self.upstreams = upstreams
        self.future = future
        self.native: list[int] = []   # upstream slots passed to Ray as ObjectRefs
        self.dispatched = False


class RayTaskRunner(TaskRunner):
    """Runs every task run as a Ray task, on a local Ray or the cluster at ``address``.

    ``address`` is a Ray cluster's GCS address (``host:port``, as printed by
    ``ray start --head``) or ``"auto"``; ``None`` starts a local Ray unless this
    process is already connected to one.  ``init_kwargs`` go to ``ray.init`` (e.g.
    ``{"num_cpus": 2}``); the dashboard is off unless ``include_dashboard=True``.  A
    Ray the runner started or connected is shut down when the last braid runner
    using it exits; a Ray initialised by anyone else is left running.
    """

    capabilities = Capabilities(requires_pickling=True, native_dependencies=True, remote=True)

    def __init__(self, address: str | None = None,
                 init_kwargs: Mapping[str, Any] | None = None) -> None:
        super().__init__()
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
                "RayTaskRunner: pass the address as RayTaskRunner(address=...), not in "
                "init_kwargs"
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

    def duplicate(self) -> RayTaskRunner:
        return type(self)(self.address, self.init_kwargs)

    def __repr__(self) -> str:
        return f"RayTaskRunner(address={self.address!r}, init_kwargs={self.init_kwargs!r})"

    # -- lifecycle -------------------------------------------------------------------
    def _start(self) -> None:
        self._holds_ray = _ray_use.acquire(self.address, self.init_kwargs)
        self._runs = LiveRuns()
        self._cancel_reason: str | None = None

    def _stop(self, abandon: bool, reason: str) -> None:
        try:
            if abandon:
                self._abandon(reason)
            else:
                self._runs.drain()
        finally:
            if self._holds_ray:
                self._holds_ray = False
                _ray_use.release()

    def _abandon(self, reason: str) -> None:
        """Cancel runs that cannot have started, crash the others; do not wait."""
        self._cancel_reason = reason
        runs = [run for _, run in self._runs.take_all()]
        # decided for every run before any is settled: settling one makes it "done"
        started = [run.dispatched and all(run.upstreams[i].done() for i in run.native)
                   for run in runs]
        for run, may_run in zip(runs, started, strict=True):
            future = run.future
            ref = future._ref
            if may_run:  # Ray does not say whether it is queued or running: say both
                message = f"stopped while running or queued in Ray: {reason}"
                future._finish(Crashed(errors.Crash(message), message))
            else:
                future._finish(Cancelled(f"cancelled before it started: {reason}"))
            if ref is not None:
                try:  # a queued Ray task never starts; a running one gets KeyboardInterrupt
                    ray.cancel(ref)
                except Exception:  # noqa: BLE001 - Ray may already be going away
                    pass

    def _final(self, future: RayTaskFuture) -> None:
        self._runs.settle(future, _nothing)  # the future is final: count it off

    # -- submitting -------------------------------------------------------------------
    def submit(self, call: TaskCall, upstreams: Sequence[TaskFuture]) -> TaskFuture:
        if not self._started:
            raise self._not_started()
        payload = dumps_call(call)
        future = RayTaskFuture(call.task, call.run_name, call.run_id, self._ray_error,
                               self._final)
        run = _Run(call, payload, upstreams, future)
        self._runs.add(future, run)
        # Ray waits for upstreams it holds; the others (other runners') are waited for here
        foreign = [u for u in upstreams if _native_ref(u) is None]
        call_when_final(foreign, lambda: self._dispatch(run))
        return future

    def _dispatch(self, run: _Run, replaced: Mapping[int, State] | None = None) -> None:
        """Hand ``run`` to Ray: upstream refs as arguments, other upstreams as States."""
        future = run.future
        if self._cancel_reason is not None or future.done():
            future._finish(Cancelled(f"cancelled before it started: {self._cancel_reason}"))
            return
        args: list[Any] = []
        native: list[int] = []
        for i, u in enumerate(run.upstreams):
            ref = None if replaced and i in replaced else _native_ref(u)
            if ref is not None:
                args.append(ref)
                native.append(i)
            else:
                args.append(replaced[i] if replaced and i in replaced else u.state)
        run.native = native
        call = run.call
        hints = (call.extra or {}).get("resources")
        name = _ray_name(call)
        try:
            header_ref, data_ref = _remote_for(call.task.name, hints).remote(
                run.payload, logs.driver_level(), *args)
        except Exception as exc:  # noqa: BLE001 - e.g. invalid resources, Ray gone away
            message = f"Ray refused task run {name!r}: {type(exc).__name__}: {exc}"
            crash = errors.Crash(message)
            crash.__cause__ = exc
            future._finish(Crashed(crash, message))
            return
        run.dispatched = True
        future._attach(header_ref, data_ref)

    # -- Ray errors -------------------------------------------------------------------
    def _ray_error(self, future: RayTaskFuture, exc: RayError) -> None:
        """A run's ref holds a Ray error: its worker died, or an upstream's did."""
        run = self._runs.get(future)
        if run is None:
            return
        if run.native and self._cancel_reason is None:
            future._detach()
            threading.Thread(target=self._recover, args=(run, exc), daemon=True,
                             name="braid-ray-recover").start()
            return
        future._finish(_failure_state(exc, run.call))

    def _recover(self, run: _Run, exc: RayError) -> None:
        """Run again with the States of upstreams whose worker died, or report the crash.

        Ray fails a task whose argument is an error without running it; the engine,
        given that upstream's CRASHED state, decides what braid promises instead
        (UpstreamFailed, or the exception under ``allow_failure``).
        """
        broken: dict[int, State] = {}
        for i in run.native:
            u = run.upstreams[i]
            TaskFuture.wait(u)  # the lock, not ray.get: the ref may be the errored one
            if _native_ref(u) is None:
                broken[i] = u.state
        if broken:
            self._dispatch(run, broken)
        else:
            run.future._finish(_failure_state(exc, run.call))


_remote_cache: dict[tuple, Any] = {}


def _remote_for(task_name: str, hints: Any) -> Any:
    """The remote function named after the task, with its resource options, made once.

    Ray builds a new wrapper (a class, and a validation of the options) on every
    ``.options()`` call: ~100 µs, as much as the rest of a submit.  Runs of one task
    with the same hints share one wrapper, so Ray's tools show the task's name; braid's
    run names are in braid's own records and logs.
    """
    key = (task_name,) if hints is None else (
        task_name, hints.cpus, hints.gpus, hints.memory, tuple(sorted(hints.custom.items())))
    remote = _remote_cache.get(key)
    if remote is None:
        if len(_remote_cache) > 4096:
            _remote_cache.clear()
        remote = _remote_cache[key] = _remote_execute.options(name=task_name,
                                                              **ray_options(hints))
    return remote


def _nothing() -> None:
    pass


def _ray_name(call: TaskCall) -> str:
    """The name Ray shows for the run: braid's run name, known here unless its template
    needs upstream results (then the task's name)."""
    if call.run_name is not None:
        return call.run_name
    if call.task.task_run_name is None:
        return default_run_name(call.task.name, call.run_id)
    return call.task.name


def _native_ref(u: TaskFuture) -> Any:
    """The ObjectRef a downstream Ray task can take for upstream ``u`` (its result), or None."""
    return u._data_ref if isinstance(u, RayTaskFuture) else None


def _failure_state(exc: BaseException, call: TaskCall) -> State:
    """Translate a Ray error into braid's: never let a Ray exception reach the user."""
    name = call.run_name or call.task.name
    cause = exc.cause if isinstance(exc, RayTaskError) and exc.cause is not None else exc
    if isinstance(cause, TaskCancelledError):
        message = f"task run {name!r}: its Ray task was cancelled"
        err: errors.BraidError = errors.Crash(message)
    elif isinstance(exc, RayTaskError):
        message = (f"task run {name!r}: the Ray task failed outside the task's code: "
                   f"{type(cause).__name__}: {cause}")
        err = errors.Crash(message)
    else:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        message = (f"task run {name!r}: the Ray worker running it was lost "
                   f"({type(exc).__name__}: {first})")
        err = errors.WorkerLost(message)
    err.__cause__ = cause
    return Crashed(err, message)
