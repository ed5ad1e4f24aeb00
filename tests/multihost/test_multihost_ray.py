"""Ray across three hosts (network namespaces): faults, time-outs, lineage, data locality
and the conformance suite, against a Ray head (0 CPUs) and two ``ray start --address``
nodes (1 CPU each), each in its own namespace.

A Ray driver needs a raylet on its own host, and the root namespace has none: every
driver here (braid's and raw Ray's, and the conformance suite's pytest) runs inside the
head's namespace.  The head is set to declare a node dead after ~5 s without health checks
(Ray's default is ~30 s; a cut link took up to a minute here, the failed checks
waiting on TCP): that is what ends a partition or a frozen node for raw Ray and braid
alike.  A driver whose head died is ended by Ray itself, after
``RAY_gcs_rpc_server_reconnect_timeout_s`` (10 s here, 60 s by default).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("ray")

from . import harness, scenarios  # noqa: E402

N, CHAIN = 2000, 100


#: faults after which a Ray task can stay pending in Ray itself for good, raw or braid:
#: a worker request Ray sent to the node just before declaring it dead is never answered
#: nor failed (ray-project/ray#63405), so the task never runs; seen for 3 of 23 braid
#: drivers and 2 of 23 raw ones (both sides: the chain's next link, the only task
#: waiting), so these two record the outcome and check only that the wait is bounded
RAY_MAY_HOLD = {"frozen", "partition"}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("fault", scenarios.FAULTS)
def test_fault(ray_mh, fault, outcome_log):
    """braid and raw Ray side by side, one fault: braid recovers wherever raw does."""
    deadline = 40 if fault in RAY_MAY_HOLD else 150
    out = scenarios.run_modes(ray_mh, ["braid", "raw"], fault, deadline=deadline)
    for mode, r in out.items():
        outcome_log(scenarios.brief("ray", fault, mode, r))
    braid, raw = out["braid"], out["raw"]
    if raw.get("driver_died") and braid.get("driver_died"):
        return  # Ray ended both drivers (a lost head, after the reconnect time-out)
    if fault in RAY_MAY_HOLD and (braid.get("hung") or raw.get("hung")):
        # without a time-out braid waits as long as Ray holds the task; with one it
        # ends on time (the time-out tests below); a hung driver reports its runs
        assert braid.get("hung") or braid.get("returned") or braid.get("raised"), braid
        ray_mh.heal()
        return
    scenarios.assert_bounded(braid, 120)
    ray_mh.heal()  # every CPU free again: nothing left running
    if scenarios.recovered(raw, N, CHAIN):
        assert scenarios.recovered(braid, N, CHAIN), out
    for key, messages in braid.get("samples", {}).items():
        if key == "CRASHED/Crashed":  # WorkerLost names the run
            assert all("task run '" in m for m in messages), braid


def test_results_lost_with_a_node_are_rebuilt(ray_mh, outcome_log):
    """200 results of 100 kB (kept in Ray, not in the header), the node holding half of
    them killed after every run completed: reading them rebuilds them by lineage."""
    out = scenarios.run_modes(
        ray_mh,
        ["braid", "raw"],
        "node-killed",
        "--n",
        "200",
        "--chain",
        "20",
        "--payload-kb",
        "100",
        "--read-after",
        "3",
        on="completed",
        delay=0.5,
    )
    for mode, r in out.items():
        outcome_log(scenarios.brief("ray", "node killed after completion", mode, r))
    assert scenarios.recovered(out["raw"], 200, 20), out
    assert scenarios.recovered(out["braid"], 200, 20), out


def test_frozen_node_task_timeout_ends_the_run_on_time(ray_mh, outcome_log):
    """The run on the frozen node ends TimedOut at its limit (plus 3 s), naming the node,
    before Ray declares the node dead (~8 s here) and re-runs the rest elsewhere."""
    r = scenarios.run(
        ray_mh,
        "braid",
        "frozen",
        "--n",
        "20",
        "--pause",
        "0.6",
        "--chain",
        "2",
        "--task-timeout",
        "1",
        "--flow-timeout",
        "20",
        delay=1.5,
    )
    outcome_log(scenarios.brief("ray", "frozen+task timeout 1 s", "braid", r))
    scenarios.assert_bounded(r, 20 + 6)
    timed_out = r["first_ended"].get("FAILED/TimedOut")
    assert timed_out is not None, f"no run timed out: {r}"
    assert timed_out - r["fault_at"] < 1 + 5, r
    assert ray_mh.hosts.w1.ip in " ".join(r["samples"]["FAILED/TimedOut"]), r


def test_frozen_node_flow_timeout_ends_the_flow_on_time(ray_mh, outcome_log):
    r = scenarios.run(ray_mh, "braid", "frozen", "--flow-timeout", "8")
    outcome_log(scenarios.brief("ray", "frozen+flow timeout 8 s", "braid", r))
    scenarios.assert_bounded(r, 8 + 6)
    assert r["raised"] == "FlowTimeout", r
    assert set(r["states"]) <= {"COMPLETED/Completed", "CANCELLED/Cancelled", "CRASHED/Crashed"}, r


def test_large_results_stay_on_the_cluster(ray_mh):
    argv = [
        "ip",
        "netns",
        "exec",
        ray_mh.hosts.sched.ns,
        sys.executable,
        "-m",
        "braid.testing.locality_driver",
        "ray",
        ray_mh.address,
    ]
    run = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=harness.REPO,
        env={**os.environ, **harness.RAY_ENV},
    )
    assert run.returncode == 0, run.stderr[-4000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["lengths"] == [100 * 2**20] * 2
    assert out["extra_read_mb"] < 5, out
    assert out["rss_grew_mb"] < 30, out


@pytest.mark.timeout(420)  # its pytest gets 400 s; on a loaded machine it takes over 120
def test_conformance_suite(ray_mh):
    """The whole conformance suite, with its pytest as the driver in the head's namespace
    (``--braid-runner`` on a RayTaskRunner of this cluster's address)."""
    argv = [
        "ip",
        "netns",
        "exec",
        ray_mh.hosts.sched.ns,
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:xdist",
        "--pyargs",
        "braid.testing",
        "--braid-runner",
        "braid.testing.multihost_drivers:ray_runner",
    ]
    env = {**os.environ, **harness.RAY_ENV, "BRAID_MULTIHOST_RAY_ADDRESS": ray_mh.address}
    env.pop("PYTEST_XDIST_WORKER", None)
    run = subprocess.run(
        argv, capture_output=True, text=True, timeout=400, cwd=harness.REPO, env=env
    )
    tail = run.stdout[-3000:]
    assert run.returncode == 0, tail + run.stderr[-2000:]
    summary = re.findall(r"^=* ?(\d+ passed.*)$", run.stdout, re.MULTILINE)
    assert summary and not re.search(r"\d+ failed", summary[-1]), tail


@pytest.mark.timeout(240)
def test_latency_and_loss(ray_mh, outcome_log):
    """Every packet into w1 held 50 ms, 2 % of them dropped (``scenarios.DELAY_MS``,
    ``LOSS``: NFQUEUE and braid.testing.netdelay) for the whole run, braid and raw Ray
    side by side: every run of both final and correct, braid's within a bound."""
    out, connect_ms, counts = scenarios.run_latency_loss(ray_mh)
    fault = f"latency {scenarios.DELAY_MS} ms + loss {scenarios.LOSS:.0%} on w1"
    for mode, r in out.items():
        outcome_log({**scenarios.brief("ray", fault, mode, r), "connect_ms": connect_ms})
    scenarios.assert_latency_loss_was_real(connect_ms, counts)
    braid, raw = out["braid"], out["raw"]
    scenarios.assert_bounded(braid, 120)
    ray_mh.heal()  # every CPU free again: nothing left running
    assert scenarios.recovered(raw, N, CHAIN), out
    assert scenarios.recovered(braid, N, CHAIN), out
