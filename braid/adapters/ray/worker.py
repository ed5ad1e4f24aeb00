"""The worker side of RayTaskRunner: the body of every Ray task, and how it waits.

Each braid task run is one Ray task with two return objects::

    execute(call_bytes, log_level, *upstream payloads)      on a Ray worker
      -> header    (small; the only object the driver is sent when the run ends)
            (state bytes, needs_data, log records)
            state bytes: the final State without its data when COMPLETED with a
                         result over INLINE_LIMIT (the data stays in the payload),
                         else the whole final State
            log records: None, or the run's records where the driver has no log
                         channel (they normally travel live: see logstream)
      -> payload   the pickled final State, with the result: downstream Ray tasks get
                   it as an argument (worker to worker); the driver fetches it only
                   when something reads the result

Runs may share one Ray task (``execute_many``, see ``braid.adapters.ray.batching``):
one list of headers, then one payload per run; a run whose upstream ran before it in
the same task is given that upstream's payload from here.

While a task waits on several futures (``braid.wait``/``as_completed``), the hook
installed here waits in ``ray.wait`` on their header refs, which gives the task's
CPU back to Ray for as long as it blocks, so parents waiting on children never
starve them.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import ray

from braid.adapters.ray.future import RAY_WAIT
from braid.adapters.ray.logstream import RaySink
from braid.adapters.ray.starts import announce
from braid.core.engine import name_lane, run_pickled_state
from braid.core.futures import worker_slot
from braid.core.logs import dumps_records
from braid.core.serialization import dumps_result
from braid.core.states import State

__all__ = ["execute", "execute_many", "Header"]

#: what a run's first return object holds: (state bytes, needs_data, pickled records)
Header = tuple[bytes, bool, "bytes | None"]

#: results pickled to at most this many bytes travel in the header too, sparing the
#: driver a second round trip in .result(); larger ones stay in the object store
INLINE_LIMIT = 64 * 1024


def execute(
    call_bytes: bytes,
    log_level: int,
    *upstream_payloads: Any,
    starts: str | None = None,
    key: str | None = None,
) -> tuple[Header, bytes]:
    """Run the call; return its header and its pickled final State (never raises for it).

    ``starts``: the name of the driver's start board (the run has a time-out the driver
    bounds); the run announces its start there under ``key``.
    """
    if starts is not None and key is not None:
        announce(starts, key)
    previous = getattr(worker_slot, "hook", None)
    worker_slot.hook = RAY_WAIT
    _name_lane()
    try:
        state, payload, records = _run(call_bytes, upstream_payloads, log_level)
    finally:
        worker_slot.hook = previous
    return _header(state, payload, records), payload


def execute_many(
    calls: list[bytes],
    log_level: int,
    *upstreams: Any,
    plan: list[list[int]] | None = None,
) -> tuple[Any, ...]:
    """Run several calls one after another, in order; return their headers (one list:
    the driver's only object) followed by each run's pickled final State.

    ``plan[n]`` (None: no run has upstreams) gives run ``n``'s upstreams in slot order:
    ``j >= 0`` is ``upstreams[j]`` (a payload Ray resolved, or a State), ``j < 0`` the
    pickled final State of run ``-j - 1`` of this batch, which ran before it here.
    """
    previous = getattr(worker_slot, "hook", None)
    worker_slot.hook = RAY_WAIT
    _name_lane()
    headers: list[Header] = []
    payloads: list[bytes] = []
    try:
        for n, call_bytes in enumerate(calls):
            ups: tuple = ()
            if plan is not None and plan[n]:
                ups = tuple(upstreams[j] if j >= 0 else payloads[-j - 1] for j in plan[n])
            state, payload, records = _run(call_bytes, ups, log_level)
            headers.append(_header(state, payload, records))
            payloads.append(payload)
    finally:
        worker_slot.hook = previous
    return (headers, *payloads)


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


def _run(
    call_bytes: bytes,
    upstream_payloads: tuple,
    log_level: int,
) -> tuple[State, bytes, list | None]:
    """The engine on the pickled call: its State, the pickled State, and its log records
    that could not go live (the driver has no channel)."""
    sink = RaySink()
    state, payload = run_pickled_state(
        call_bytes, upstream_payloads, _worker_runner(), log_level, sink
    )
    return state, payload, sink.kept or None


def _header(state: State, payload: bytes, records: list | None) -> Header:
    if state.is_completed() and len(payload) > INLINE_LIMIT:
        head, needs_data = dumps_result(state.copy(data=None)), True
    else:  # a small result or an exception: the driver gets it with the header, no fetch
        head, needs_data = payload, False
    return head, needs_data, _pickle_records(records)


def _pickle_records(records: list | None) -> bytes | None:
    if not records:
        return None
    try:
        return dumps_records(records)
    except Exception:  # noqa: BLE001 - losing records must not fail the run
        return None


# -- the runner that tasks submitted from inside a task go to ------------------------------
_worker_runner_lock = threading.Lock()
_worker_runner_instance: Any = None

#: makes the runner of tasks submitted from a run on this worker; set by
#: ``braid.adapters.ray.runner`` when it is imported (the package imports it first)
nested_runner_factory: Any = None


def _worker_runner() -> Any:
    """One per worker process, on the Ray the worker is connected to; never exited,
    so it never stops that Ray."""
    global _worker_runner_instance
    runner = _worker_runner_instance
    if runner is None:
        with _worker_runner_lock:
            if _worker_runner_instance is None:
                runner = nested_runner_factory()
                runner.__enter__()
                _worker_runner_instance = runner
            runner = _worker_runner_instance
    return runner
