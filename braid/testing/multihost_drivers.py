"""Drivers of the multi-host tests: run as ``python -m braid.testing.multihost_drivers``.

``ENGINE ADDRESS COMMAND [options]``, ENGINE ``dask`` or ``ray``.  Every command prints
JSON lines on stdout, each with an ``event``; the test reads them (and injects its
faults between them):

- ``wait-cpus --n N``: Ray only; waits until the cluster offers N CPUs, all free
  (nothing left running), then prints ``cpus``.
- ``scenario``: connects (``ready``), submits ``--n`` mapped tasks of ``--pause`` s and
  a ``--chain``-long chain (``submitted``), waits for every run, and prints ``result``:
  the count of runs per final state, the correct results, what the caller saw (the
  flow's value or its error), the wall time.  ``--mode raw`` does the same with the raw
  engine (``client.map``/``client.submit``, ``ray.remote``).  ``--flow-timeout`` and
  ``--task-timeout`` set braid's time-outs; ``--payload-kb`` makes each mapped result
  that big, and ``--read-after S`` waits until every run completed (``completed``),
  sleeps S s (the test kills a node meanwhile), then reads every result.

Every wait is bounded by ``--deadline``: a driver still waiting then reports
``"hung": true`` and exits.  Ray drivers must run where a raylet runs (the head's
network namespace in the tests); the Dask driver runs anywhere the scheduler is
reachable.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections import Counter
from typing import Any

from braid import task, unmapped

__all__ = [
    "work",
    "link",
    "raw_work",
    "raw_link",
    "main",
    "scheduler_summary",
    "ray_runner",
    "die_once",
]


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


# -- the tasks (importable by name on every worker) --------------------------------------
def raw_work(i: int, pause: float, payload_kb: int = 0) -> Any:
    time.sleep(pause)
    if payload_kb:
        return (2 * i, b"x" * (payload_kb * 1024))
    return 2 * i


def raw_link(prev: int, pause: float) -> int:
    time.sleep(pause)
    return prev + 1


def die_once(marker: str) -> str:
    """Kill this worker process the first time (``marker`` records it), then succeed."""
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        os._exit(1)
    return "survived"


work = task(raw_work, name="work")
link = task(raw_link, name="link")


def _value(v: Any) -> Any:
    return v[0] if isinstance(v, tuple) else v


# -- braid ---------------------------------------------------------------------------------
def _runner(engine: str, address: str) -> Any:
    if engine == "dask":
        from braid.adapters.dask import DaskTaskRunner

        return DaskTaskRunner(address=address)
    from braid.adapters.ray import RayTaskRunner

    return RayTaskRunner(address=address)


#: the scenario's futures, for a summary even when the flow hangs
_held: dict[str, Any] = {}


def _hang_summary() -> dict:
    """What the runs of a hung braid scenario are doing (states never block)."""
    runs = _held.get("mapped", []) + _held.get("chain", [])
    states = Counter(f"{f.state.type.value}/{f.state.name}" for f in runs)
    waiting = [repr(f) for f in runs if not f.state.is_final()][:5]
    return {"runs": len(runs), "states": dict(states), "waiting": waiting}


def run_braid(args: argparse.Namespace) -> dict:
    from braid import flow
    from braid import wait as braid_wait

    runner = _runner(args.engine, args.address)
    mapped_task, link_task = (
        (work, link)
        if args.task_timeout is None
        else (
            work.with_options(timeout_seconds=args.task_timeout),
            link.with_options(timeout_seconds=args.task_timeout),
        )
    )
    held = _held

    @flow(task_runner=runner, name="warm-up")
    def warm_up() -> list:
        return work.map(range(4), unmapped(0.0)).result()

    warm_up()
    emit("ready")

    @flow(task_runner=runner, name="scenario", timeout_seconds=args.flow_timeout)
    def scenario() -> Any:
        mapped = mapped_task.map(range(args.n), unmapped(args.pause), unmapped(args.payload_kb))
        chain = [link_task.submit(0, args.pause)]
        for _ in range(args.chain - 1):
            chain.append(link_task.submit(chain[-1], args.pause))
        held["mapped"], held["chain"] = list(mapped), chain
        emit("submitted", at=time.time())
        if args.read_after is not None:
            braid_wait(held["mapped"] + chain)
            emit("completed")
            time.sleep(args.read_after)
        return [_value(v) for v in mapped.result()], chain[-1].result()

    start = time.monotonic()
    seen: dict[str, Any] = {}
    try:
        value = scenario()
        seen["returned"] = True
        seen["value_correct"] = value == ([2 * i for i in range(args.n)], args.chain)
    except BaseException as exc:  # noqa: BLE001 - what the caller saw is the outcome
        seen["raised"] = type(exc).__name__
        seen["module"] = type(exc).__module__
        seen["message"] = str(exc)[:400]
    seen["wall"] = round(time.monotonic() - start, 2)
    runs = held.get("mapped", []) + held.get("chain", [])
    states = Counter(f"{f.state.type.value}/{f.state.name}" for f in runs)
    samples: dict[str, list[str]] = {}
    ended: dict[str, float] = {}
    for f in runs:
        s = f.state
        if not s.is_completed():
            key = f"{s.type.value}/{s.name}"
            seen_here = samples.setdefault(key, [])
            if len(seen_here) < 8:
                seen_here.append(f"{f.task_run_name}: {s.message}"[:300])
            ended[key] = min(ended.get(key, float("inf")), s.timestamp_seconds or 0.0)
    correct = sum(
        1
        for i, f in enumerate(held.get("mapped", []))
        if f.state.is_completed() and _value(f.state.result(False)) == 2 * i
    )
    correct += sum(
        1
        for i, f in enumerate(held.get("chain", []))
        if f.state.is_completed() and f.state.result(False) == i + 1
    )
    return {
        "runs": len(runs),
        "final": sum(1 for f in runs if f.state.is_final()),
        "states": dict(states),
        "correct": correct,
        "samples": samples,
        "first_ended": ended,
        **seen,
    }


# -- the raw engines -----------------------------------------------------------------------
def run_raw_dask(args: argparse.Namespace) -> dict:
    import distributed

    client = distributed.Client(args.address, set_as_default=False, timeout=30)
    client.gather(client.map(raw_work, range(4), pause=0.0, pure=False))
    emit("ready")
    start = time.monotonic()
    mapped = client.map(
        raw_work, range(args.n), pause=args.pause, payload_kb=args.payload_kb, pure=False
    )
    chain = [client.submit(raw_link, 0, args.pause, pure=False)]
    for _ in range(args.chain - 1):
        chain.append(client.submit(raw_link, chain[-1], args.pause, pure=False))
    emit("submitted")
    futures = mapped + chain
    if args.read_after is not None:
        distributed.wait(futures)
        emit("completed")
        time.sleep(args.read_after)
    seen: dict[str, Any] = {}
    try:
        results = client.gather(futures)
        seen["returned"] = True
    except BaseException as exc:  # noqa: BLE001
        results = None
        seen["raised"] = type(exc).__name__
        seen["module"] = type(exc).__module__
        seen["message"] = str(exc)[:400]
    seen["wall"] = round(time.monotonic() - start, 2)
    states = Counter(f.status for f in futures)
    correct = 0
    expected = [2 * i for i in range(args.n)] + [i + 1 for i in range(args.chain)]
    if results is not None:
        correct = sum(1 for r, e in zip(results, expected, strict=True) if _value(r) == e)
    else:
        correct = sum(
            1
            for f, e in zip(futures, expected, strict=True)
            if f.status == "finished" and _value(_safe(f.result, 5)) == e
        )
    client.close(timeout=10)
    return {
        "runs": len(futures),
        "final": sum(1 for f in futures if f.done()),
        "states": dict(states),
        "correct": correct,
        **seen,
    }


def _safe(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except BaseException:  # noqa: BLE001
        return None


def run_raw_ray(args: argparse.Namespace) -> dict:
    import ray

    rw, rl = ray.remote(raw_work), ray.remote(raw_link)
    ray.get([rw.remote(i, 0.0) for i in range(4)])
    emit("ready")
    start = time.monotonic()
    mapped = [rw.remote(i, args.pause, args.payload_kb) for i in range(args.n)]
    chain = [rl.remote(0, args.pause)]
    for _ in range(args.chain - 1):
        chain.append(rl.remote(chain[-1], args.pause))
    emit("submitted")
    refs = mapped + chain
    if args.read_after is not None:
        ray.wait(refs, num_returns=len(refs), fetch_local=False)
        emit("completed")
        time.sleep(args.read_after)
    expected = [2 * i for i in range(args.n)] + [i + 1 for i in range(args.chain)]
    states: Counter[str] = Counter()
    correct = 0
    first_error: str | None = None
    for ref, e in zip(refs, expected, strict=True):
        try:
            v = ray.get(ref)
        except Exception as exc:  # noqa: BLE001
            states[type(exc).__name__] += 1
            first_error = first_error or f"{type(exc).__name__}: {str(exc)[:300]}"
            continue
        states["finished"] += 1
        correct += _value(v) == e
    seen: dict[str, Any] = (
        {"returned": True}
        if first_error is None
        else {"raised": first_error.split(":")[0], "message": first_error}
    )
    return {
        "runs": len(refs),
        "final": len(refs),
        "states": dict(states),
        "correct": correct,
        "wall": round(time.monotonic() - start, 2),
        **seen,
    }


def ray_runner() -> Any:
    """A RayTaskRunner of the cluster at ``$BRAID_MULTIHOST_RAY_ADDRESS``: the runner the
    conformance suite gets (``--braid-runner braid.testing.multihost_drivers:ray_runner``)."""
    import ray

    from braid.adapters.ray import RayTaskRunner

    address = os.environ["BRAID_MULTIHOST_RAY_ADDRESS"]
    if not ray.is_initialized():  # once per session: runners use it and leave it running
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    return RayTaskRunner(address=address)


def scheduler_summary(dask_scheduler: Any = None) -> dict:
    """On a Dask scheduler: how many workers and tasks it has (the harness asks)."""
    return {
        "workers": len(dask_scheduler.workers),
        "tasks": len(dask_scheduler.tasks),
        "addresses": sorted(dask_scheduler.workers),
    }


# -- commands ------------------------------------------------------------------------------
def wait_cpus(args: argparse.Namespace) -> None:
    import ray

    deadline = time.monotonic() + args.timeout
    cpus = free = 0.0
    while time.monotonic() < deadline:
        cpus = ray.cluster_resources().get("CPU", 0.0)
        free = ray.available_resources().get("CPU", 0.0)
        if cpus == args.n and free == args.n:
            break
        time.sleep(0.5)
    emit("cpus", cpus=cpus, free=free)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m braid.testing.multihost_drivers")
    parser.add_argument("engine", choices=["dask", "ray"])
    parser.add_argument("address")
    parser.add_argument("command", choices=["scenario", "wait-cpus"])
    parser.add_argument("--mode", choices=["braid", "raw"], default="braid")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--chain", type=int, default=100)
    parser.add_argument("--pause", type=float, default=0.003)
    parser.add_argument("--payload-kb", type=int, default=0)
    parser.add_argument("--read-after", type=float, default=None)
    parser.add_argument("--flow-timeout", type=float, default=None)
    parser.add_argument("--task-timeout", type=float, default=None)
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--deadline", type=float, default=150)
    args = parser.parse_args(argv)
    if args.engine == "ray":
        import ray

        ray.init(address=args.address, log_to_driver=False, logging_level=logging.ERROR)
    if args.command == "wait-cpus":
        wait_cpus(args)
        return
    box: list[dict] = []

    def body() -> None:
        if args.mode == "braid":
            box.append(run_braid(args))
        elif args.engine == "dask":
            box.append(run_raw_dask(args))
        else:
            box.append(run_raw_ray(args))

    t = threading.Thread(target=body, daemon=True)
    start = time.monotonic()
    t.start()
    t.join(args.deadline)
    if t.is_alive():
        emit("result", hung=True, wall=round(time.monotonic() - start, 2), **_hang_summary())
        sys.stdout.flush()
        os._exit(3)
    emit("result", hung=False, **(box[0] if box else {"error": "driver body failed"}))
    sys.stdout.flush()
    os._exit(0)  # a client or Ray connection left in a bad state must not hold the exit


if __name__ == "__main__":
    main()
