"""Dask across three hosts (network namespaces): faults, time-outs, data locality and
the conformance suite, against ``dask scheduler`` + two ``dask worker`` (nanny, one
thread) each in its own namespace.  The scheduler drops a worker that misses heartbeats
for 20 s (``distributed.scheduler.worker-ttl``): that is what ends a partition or a
frozen worker for raw Dask and braid alike."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from braid.adapters.dask import DaskTaskRunner  # noqa: E402
from braid.testing.suite import RunnerConformance  # noqa: E402

from . import clusters, harness, scenarios  # noqa: E402

N, CHAIN = 2000, 100


def _check_idle(cluster: clusters.DaskCluster) -> None:
    """Nothing left running: the scheduler forgets every key once the driver is gone."""
    harness.wait_until(
        "an idle Dask scheduler", lambda: cluster.scheduler_info()["tasks"] == 0, 30, 0.5
    )


@pytest.mark.timeout(300)
@pytest.mark.parametrize("fault", scenarios.FAULTS)
def test_fault(dask_mh, fault, outcome_log):
    """braid and raw Dask side by side, one fault: braid recovers wherever raw does."""
    modes = ["braid"] if fault == "scheduler-killed" else ["braid", "raw"]
    out = scenarios.run_modes(dask_mh, modes, fault)
    for mode, r in out.items():
        outcome_log(scenarios.brief("dask", fault, mode, r))
    braid = out["braid"]
    scenarios.assert_bounded(braid, 120)
    if fault == "scheduler-killed":
        # nothing can recover: every run not completed ends CRASHED WorkerLost with
        # Dask's reason, or UpstreamFailed naming the crashed upstream
        assert braid["raised"] == "WorkerLost", braid
        assert "scheduler-connection-lost" in braid["message"], braid
        assert set(braid["states"]) <= {
            "COMPLETED/Completed",
            "CRASHED/Crashed",
            "FAILED/UpstreamFailed",
        }, braid
        return
    _check_idle(dask_mh)
    if scenarios.recovered(out["raw"], N, CHAIN):
        assert scenarios.recovered(braid, N, CHAIN), out


def test_frozen_worker_flow_timeout_ends_the_flow_on_time(dask_mh, outcome_log):
    r = scenarios.run(dask_mh, "braid", "frozen", "--flow-timeout", "8")
    outcome_log(scenarios.brief("dask", "frozen+flow timeout 8 s", "braid", r))
    scenarios.assert_bounded(r, 8 + 6)
    assert r["raised"] == "FlowTimeout", r
    assert set(r["states"]) <= {"COMPLETED/Completed", "CANCELLED/Cancelled", "CRASHED/Crashed"}, r
    crashed = " ".join(r["samples"].get("CRASHED/Crashed", []))
    assert dask_mh.hosts.w1.ip in crashed, f"the frozen worker is not named: {r}"


def test_frozen_worker_task_timeout_ends_the_run_on_time(dask_mh, outcome_log):
    # the flow's own time-out ends the wait for the runs queued on the frozen worker,
    # which Dask reschedules only after its TTL and a 30 s nanny restart
    r = scenarios.run(
        dask_mh,
        "braid",
        "frozen",
        "--n",
        "20",
        "--pause",
        "1.0",
        "--chain",
        "2",
        "--task-timeout",
        "2",
        "--flow-timeout",
        "15",
        delay=1.5,
    )
    outcome_log(scenarios.brief("dask", "frozen+task timeout 2 s", "braid", r))
    scenarios.assert_bounded(r, 15 + 6)
    timed_out = r["first_ended"].get("FAILED/TimedOut")
    assert timed_out is not None, f"no run timed out: {r}"
    assert timed_out - r["fault_at"] < 2 + 5, r
    assert dask_mh.hosts.w1.ip in " ".join(r["samples"]["FAILED/TimedOut"]), r


def test_large_results_stay_on_the_cluster(dask_mh):
    proc = subprocess.run(
        [sys.executable, "-m", "braid.testing.locality_driver", "dask", dask_mh.address],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["lengths"] == [100 * 2**20] * 2
    assert out["extra_read_mb"] < 5, out
    assert out["rss_grew_mb"] < 30, out


class TestMultiHostDask(RunnerConformance):
    """Every semantic of the suite, with the scheduler and workers on other hosts."""

    @pytest.fixture
    def runner(self, dask_session):
        return DaskTaskRunner(address=dask_session.address)


@pytest.mark.timeout(240)
def test_latency_and_loss(dask_mh, outcome_log):
    """Every packet into w1 held 50 ms, 2 % of them dropped (``scenarios.DELAY_MS``,
    ``LOSS``: NFQUEUE and braid.testing.netdelay) for the whole run, braid and raw Dask
    side by side: every run of both final and correct, braid's within a bound."""
    out, connect_ms, counts = scenarios.run_latency_loss(dask_mh)
    fault = f"latency {scenarios.DELAY_MS} ms + loss {scenarios.LOSS:.0%} on w1"
    for mode, r in out.items():
        outcome_log({**scenarios.brief("dask", fault, mode, r), "connect_ms": connect_ms})
    scenarios.assert_latency_loss_was_real(connect_ms, counts)
    braid, raw = out["braid"], out["raw"]
    scenarios.assert_bounded(braid, 120)
    _check_idle(dask_mh)
    assert scenarios.recovered(raw, N, CHAIN), out
    assert scenarios.recovered(braid, N, CHAIN), out


def test_delay_is_undone(dask_mh):
    """The latency fault holds only the packets into its host and only while it is on:
    healed, its iptables rule and its program are gone and round trips are fast again."""
    why = harness.why_no_delay()
    if why is not None:
        pytest.skip(why)
    hosts = dask_mh.hosts
    hosts.delay(hosts.w2, 100)
    try:
        assert hosts.connect_ms(hosts.w2) >= 90
        assert hosts.connect_ms(hosts.w1) < 40
    finally:
        hosts.heal_network()
    assert hosts.connect_ms(hosts.w2) < 40
    counts = hosts.delay_counts["w2"]
    assert counts["exit"] == 0 and counts["queued"] >= 5 and counts["dropped"] == 0, counts
    for binary in harness.IPTABLES:
        rules = harness.run(["ip", "netns", "exec", hosts.w2.ns, binary, "-S", "INPUT"])
        assert "NFQUEUE" not in rules.stdout, (binary, rules.stdout)
    for pid in hosts.pids(hosts.w2):
        with contextlib.suppress(OSError):
            assert b"netdelay" not in Path(f"/proc/{pid}/cmdline").read_bytes()
