"""Running one fault scenario: start a driver, inject the fault mid-run, read the outcome.

A scenario's driver is ``braid.testing.multihost_drivers`` (in the head's namespace for
Ray, in this one for Dask); the fault is injected from here, between its events.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

from . import clusters, harness

FAULTS = [
    "worker-killed",
    "node-killed",
    "partition-10s",
    "partition",
    "scheduler-killed",
    "frozen",
]

#: the latency-loss fault: every packet into w1 held this long, this fraction dropped
#: (inbound only: a round trip to w1 takes DELAY_MS longer)
DELAY_MS, LOSS = 50, 0.02

#: a Ray driver whose head died exits after this long (Ray's default is 60 s)
RAY_DRIVER_ENV = {"RAY_gcs_rpc_server_reconnect_timeout_s": "10"}


def inject(cluster: Any, fault: str, spare: list[int]) -> None:
    """Do ``fault`` to worker host w1 (or to the scheduler / head); mark what to heal."""
    hosts: harness.Hosts = cluster.hosts
    w = hosts.w1
    if fault == "worker-killed":
        if isinstance(cluster, clusters.DaskCluster):
            pid = cluster.worker_pid(w)
        else:
            pids = cluster.worker_pids(w)
            if not pids:
                raise RuntimeError("no Ray worker process on w1")
            pid = pids[0]
        os.kill(pid, signal.SIGKILL)  # the nanny / raylet starts another
    elif fault == "node-killed":
        hosts.kill_host(w)
    elif fault == "partition-10s":
        hosts.link_down(w)
        timer = threading.Timer(10, hosts.link_up, [w])
        timer.daemon = True
        timer.start()
    elif fault == "partition":
        hosts.link_down(w)
    elif fault == "scheduler-killed":
        # every process of the scheduler's host but the Ray driver under test
        pids = [p for p in hosts.pids(hosts.sched) if p not in spare]
        hosts.signal_pids(pids, signal.SIGKILL)
        hosts.sched.dirty = True
    elif fault == "frozen":
        hosts.freeze(w)
    elif fault == "latency-loss":
        hosts.delay(w, DELAY_MS, LOSS)
        return  # the node stays sound: heal_network undoes the delay, no restart
    else:
        raise ValueError(fault)
    w.dirty = True


def run(
    cluster: Any,
    mode: str,
    fault: str | None,
    *args: str,
    delay: float = 1.5,
    on: str | None = "submitted",
    deadline: float = 150,
) -> dict:
    """Run the scenario driver in ``mode`` (braid or raw), inject ``fault`` ``delay`` s
    after the driver's ``on`` event (before it starts for None), and return its result."""
    return run_modes(cluster, [mode], fault, *args, delay=delay, on=on, deadline=deadline)[mode]


def run_modes(
    cluster: Any,
    modes: list[str],
    fault: str | None,
    *args: str,
    delay: float = 1.5,
    on: str | None = "submitted",
    deadline: float = 150,
) -> dict[str, dict]:
    """Run one driver per mode at once (braid and raw side by side, sharing the cluster
    and the fault: one recovery wait for both), inject ``fault`` ``delay`` s after every
    driver's ``on`` event (before the drivers start for None: the whole run under the
    fault), and return each driver's result, with ``fault_at`` (and ``driver_died`` when
    Ray ended the driver)."""
    ray = isinstance(cluster, clusters.RayCluster)
    hosts: harness.Hosts = cluster.hosts
    procs = {}
    fault_at = None
    results: dict[str, dict] = {}
    if fault is not None and on is None:
        fault_at = time.time()
        inject(cluster, fault, [])
    try:
        for mode in modes:
            argv = [
                "ray" if ray else "dask",
                cluster.address,
                "scenario",
                "--mode",
                mode,
                "--deadline",
                str(deadline),
                *args,
            ]
            procs[mode] = hosts.driver(
                hosts.sched if ray else None, argv, RAY_DRIVER_ENV if ray else None
            )
        for proc in procs.values():
            harness.read_event(proc, "ready", 120)
        if on is not None:
            for proc in procs.values():
                harness.read_event(proc, on, 120)
        if fault is not None and on is not None:
            time.sleep(delay)
            fault_at = time.time()
            inject(cluster, fault, [p.pid for p in procs.values()])
        for mode, proc in procs.items():
            try:
                results[mode] = harness.read_event(proc, "result", deadline + 30)
            except RuntimeError as exc:  # Ray ends a driver that lost its head
                results[mode] = {
                    "driver_died": True,
                    "error": str(exc)[-600:],
                    "final": None,
                    "runs": None,
                    "wall": None,
                }
    finally:
        for mode, proc in procs.items():
            code = harness.stop_driver(proc, 20)
            if mode in results:
                results[mode]["exit"] = code
    for r in results.values():
        r["fault_at"] = fault_at
    return results


def brief(engine: str, fault: str, mode: str, r: dict) -> dict:
    """The outcome row of a scenario: runs final, lost, wall, what the user saw."""
    saw = (
        "returned"
        if r.get("returned")
        else (
            f"{r.get('raised')}: {r.get('message', '')[:160]}"
            if r.get("raised")
            else (
                "driver ended by the engine"
                if r.get("driver_died")
                else ("hung" if r.get("hung") else "?")
            )
        )
    )
    return {
        "engine": engine,
        "fault": fault,
        "mode": mode,
        "runs": r.get("runs"),
        "final": r.get("final"),
        "correct": r.get("correct"),
        "lost": None if r.get("runs") is None else r["runs"] - (r.get("correct") or 0),
        "wall": r.get("wall"),
        "saw": saw,
        "states": r.get("states"),
        "waiting": r.get("waiting"),
    }


def assert_bounded(r: dict, bound: float) -> None:
    """Every run final, the driver returned or raised a braid error within ``bound`` s."""
    assert not r.get("hung"), f"the flow hung: {r}"
    assert r["final"] == r["runs"], f"runs left unfinished: {r}"
    assert r["wall"] is not None and r["wall"] < bound, r
    if r.get("raised"):
        assert r.get("module") == "braid.errors", f"not a braid error: {r}"


def recovered(r: dict, n: int, chain: int) -> bool:
    """Whether every result arrived, correct."""
    return bool(r.get("returned")) and r.get("correct") == n + chain


def run_latency_loss(cluster: Any, deadline: float = 150) -> tuple[dict[str, dict], float, dict]:
    """braid and raw side by side, w1 under the latency-loss fault for the whole run
    (warm-up included); each driver's result, the connect time to w1 (ms) measured
    while the fault held, and what the delaying program did.  The fault is undone
    before this returns; skips where it cannot be made."""
    import pytest

    why = harness.why_no_delay()
    if why is not None:
        pytest.skip(why)
    hosts: harness.Hosts = cluster.hosts
    try:
        out = run_modes(cluster, ["braid", "raw"], "latency-loss", on=None, deadline=deadline)
        connect_ms = hosts.connect_ms(hosts.w1)
    except harness.DelayUnavailable as exc:
        pytest.skip(str(exc))
    finally:
        counts = hosts.undelay(hosts.w1) or {}
    return out, connect_ms, counts


def assert_latency_loss_was_real(connect_ms: float, counts: dict) -> None:
    """The fault did what it says: round trips to w1 took DELAY_MS longer, the program
    held and dropped packets and stopped cleanly."""
    assert connect_ms >= 0.9 * DELAY_MS, f"connect to w1 took {connect_ms:.1f} ms"
    assert counts.get("exit") == 0, counts
    assert counts["queued"] > 1000 and counts["dropped"] > 0, counts
    assert counts["verdict_errors"] == 0, counts
