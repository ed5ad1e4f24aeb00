"""The worker side of RayTaskRunner: the body of every Ray task, and how it waits.

Each braid task run is one Ray task with two return objects::

    execute(call_bytes, log_level, *upstream payloads)      on a Ray worker
      -> header    (small; the only object the driver is sent when the run ends)
            (state bytes, needs_data, log records)
            state bytes: the final State without its data when COMPLETED with a
                         result over INLINE_LIMIT (the data stays in the payload),
                         else the whole final State
            log records: the run loggers' records, replayed by the driver on arrival
      -> payload   the pickled final State, with the result: downstream Ray tasks get
                   it as an argument (worker to worker); the driver fetches it only
                   when something reads the result

While a task waits on several futures (``braid.wait``/``as_completed``), the hook
installed here waits in ``ray.wait`` on their header refs, which gives the task's
CPU back to Ray for as long as it blocks, so parents waiting on children never
starve them.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Any

import ray

from braid.core.engine import name_lane, run_pickled, run_task
from braid.core.futures import TaskFuture, worker_slot
from braid.core.logs import capture
from braid.core.serialization import dumps, dumps_result, dumps_state, loads
from braid.core.states import State

if TYPE_CHECKING:
    from braid.adapters.ray.runner import RayTaskRunner

__all__ = ["execute", "Header"]

#: what a run's first return object holds: (state bytes, needs_data, pickled records)
Header = tuple[bytes, bool, "bytes | None"]

#: results pickled to at most this many bytes travel in the header too, sparing the
#: driver a second round trip in .result(); larger ones stay in the object store
INLINE_LIMIT = 64 * 1024
_SLICE = 0.05   # how long one wait lasts when futures of other runners are in the mix
_LAG = 1.0      # how long to let Ray's done-callback settle a future whose ref is ready


def execute(call_bytes: bytes, log_level: int, *upstream_payloads: Any) -> tuple[Header, bytes]:
    """Run the call; return its header and its pickled final State (never raises for it)."""
    previous = getattr(worker_slot, "hook", None)
    worker_slot.hook = _RAY_WAIT
    _name_lane()
    try:
        state, payload, records = _run(call_bytes, upstream_payloads, log_level)
    finally:
        worker_slot.hook = previous
    return _header(state, payload, records), payload


_lane_named = threading.local()


def _name_lane() -> None:
    """Lanes of the run record: the Ray node and worker process, once per thread."""
    if not getattr(_lane_named, "done", False):
        _lane_named.done = True
        try:
            node = ray.get_runtime_context().get_node_id()[:8]
            name_lane(f"ray node {node} / pid {os.getpid()}")
        except Exception:  # noqa: BLE001 - the engine's default lane name will do
            pass


def _run(call_bytes: bytes, upstream_payloads: tuple, log_level: int,
         ) -> tuple[State, bytes, list | None]:
    """``run_pickled``, keeping the State (for the header) and the records apart."""
    try:
        call = loads(call_bytes)
        states = [p if isinstance(p, State) else loads(p) for p in upstream_payloads]
    except Exception:  # noqa: BLE001 - braid's own report of it: a small FAILED state
        payload = run_pickled(call_bytes, upstream_payloads, None, log_level)
        return loads(payload), payload, None
    with capture(log_level) as records:
        state = run_task(call, states, _worker_runner())
    try:
        payload = dumps_result(state)
    except Exception:  # noqa: BLE001 - an unpicklable result: FAILED, naming the culprit
        payload = dumps_state(state, call.task.name)
        state = loads(payload)
    return state, payload, records


def _header(state: State, payload: bytes, records: list | None) -> Header:
    if state.is_completed() and len(payload) > INLINE_LIMIT:
        light = State(state.type, state.name, state.message, None, state._ts)
        light.task_run_name = state.task_run_name
        light.extra = state.extra
        light.started = state.started
        light.where = state.where
        head, needs_data = dumps_result(light), True
    else:  # a small result or an exception: the driver gets it with the header, no fetch
        head, needs_data = payload, False
    return head, needs_data, _pickle_records(records)


def _pickle_records(records: list | None) -> bytes | None:
    if not records:
        return None
    try:
        return dumps(records)
    except Exception:  # noqa: BLE001 - an attribute set via extra= may not pickle
        kept = []
        for record in records:
            try:
                dumps(record)
            except Exception:  # noqa: BLE001 - losing one record must not fail the run
                continue
            kept.append(record)
        return dumps(kept) if kept else None


# -- waiting on several futures inside a task ----------------------------------------------
class _RayWait:
    """The worker-slot hook of threads running a braid task on Ray.

    ``release``/``reacquire`` do nothing: Ray has no slot to hand back by hand, and
    single-future waits go through ``ray.get``, which frees the CPU itself.
    """

    def release(self) -> None:
        pass

    def reacquire(self) -> None:
        pass

    def wait_any(self, futures: list[TaskFuture], timeout: float | None) -> None:
        """Return once one of ``futures`` is final, or after ``timeout`` seconds.

        Futures of this runner are waited on in ``ray.wait`` (the CPU is Ray's
        meanwhile); futures of other runners, or not yet handed to Ray, by short
        waits on their own locks.
        """
        from braid.adapters.ray.future import RayTaskFuture

        deadline = None if timeout is None else time.monotonic() + timeout
        while futures and not any(f.done() for f in futures):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            refs: dict[Any, TaskFuture] = {}
            others: list[TaskFuture] = []
            for f in futures:
                ref = f._ref if isinstance(f, RayTaskFuture) else None
                if ref is None:
                    others.append(f)
                else:
                    refs[ref] = f
            step = _SLICE if left is None else min(left, _SLICE)
            if not refs:
                others[0].wait(step)
                continue
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=left if not others else step,
                                fetch_local=False)
            for ref in ready:
                TaskFuture.wait(refs[ref], _LAG)


_RAY_WAIT = _RayWait()

# -- the runner that tasks submitted from inside a task go to ------------------------------
_worker_runner_lock = threading.Lock()
_worker_runner_instance: RayTaskRunner | None = None


def _worker_runner() -> RayTaskRunner:
    """One per worker process, on the Ray the worker is connected to; never exited,
    so it never stops that Ray."""
    global _worker_runner_instance
    runner = _worker_runner_instance
    if runner is None:
        from braid.adapters.ray.runner import RayTaskRunner

        with _worker_runner_lock:
            if _worker_runner_instance is None:
                runner = RayTaskRunner()
                runner.__enter__()
                _worker_runner_instance = runner
            runner = _worker_runner_instance
    return runner
