"""Chains on Ray whose links share Ray tasks (braid.adapters.ray.batching): a run whose
upstream is held in a pending batch joins it, and the worker gives it that upstream's
State in process.  Each link must keep its own state, result, failure and name, and a
batch lost with its worker must be re-run by Ray or end its runs as unbatched runs end.

The test process connects to a ``ray start --head`` node of its own (stopped by its
temp dir at the end).  ``remotes.PER_CPU = 0`` makes every eligible run wait to share
a Ray task, and a long ``HOLD_SECONDS`` keeps a whole chain in one batch however
loaded the machine is.
"""

from __future__ import annotations

import logging
import os
import tempfile

import pytest

_RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}
for _key, _value in _RAY_ENV.items():
    os.environ.setdefault(_key, _value)

ray = pytest.importorskip("ray")

from braid import allow_failure, errors, flow, quote  # noqa: E402
from braid.adapters.ray import RayTaskRunner, batching, remotes  # noqa: E402
from braid.testing import ray_chain_tasks as ct  # noqa: E402
from braid.testing.ray_processes import start_head, stop_scoped  # noqa: E402

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def connected():
    temp_dir = tempfile.mkdtemp(prefix="brk", dir="/tmp")  # socket paths must stay short
    try:
        address = start_head(temp_dir, num_cpus=2, env=_RAY_ENV)
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        try:
            yield address
        finally:
            ray.shutdown()
    finally:
        stop_scoped(temp_dir)


@pytest.fixture
def batched(monkeypatch):
    """Every eligible run waits to share a Ray task, up to half a second."""
    monkeypatch.setattr(remotes, "PER_CPU", 0)
    monkeypatch.setattr(batching, "HOLD_SECONDS", 0.5)


def _tasks(futures) -> int:
    """How many Ray tasks ran the runs of ``futures`` (distinct header objects)."""
    return len({id(f.ref) for f in futures})


def test_a_chain_shares_ray_tasks_and_each_link_keeps_its_own_state(connected, batched):
    @flow(task_runner=RayTaskRunner())
    def body():
        links = [ct.link.submit(0)]
        for _ in range(11):
            links.append(ct.link.submit(links[-1]))
        blob = ct.blob_after.submit(links[-1], 100_000)  # over the inline limit
        size = ct.length.submit(blob)  # given the blob on the worker, in its batch
        size.wait()
        later = ct.length.submit(blob)  # its own Ray task: takes the blob's Ray object
        runs = [*links, blob, size]
        return quote(
            (
                [f.state for f in links],
                {f.task_run_name for f in runs},
                size.result(),
                later.result(),
                later.native_slots,
                _tasks(runs),
                _tasks([later, size]),
            )
        )

    states, names, size, later, native, tasks, apart = body().unquote()
    assert [s.result() for s in states] == list(range(1, 13))
    assert all(s.is_completed() for s in states)
    assert len(names) == 14  # every link has its own run (and name)
    assert size == later == 100_000
    assert tasks < 14  # links shared Ray tasks
    assert native == [0] and apart == 2


def _failing_chain():
    one = ct.link.submit(0)
    two = ct.link.submit(one)
    bad = ct.fails_at.submit(two, 2)
    after = ct.link.submit(bad)
    after_after = ct.link.submit(after)
    tolerant = ct.got.submit(allow_failure(bad))
    tolerant_after = ct.got.submit(allow_failure(after))
    futures = [one, two, bad, after, after_after, tolerant, tolerant_after]
    for f in futures:
        f.wait()
    seen = []
    for f in futures:
        s = f.state
        value = s.result(raise_on_failure=False)
        seen.append((s.type, s.name, type(value).__name__, value if s.is_completed() else None))
    return quote((seen, _tasks(futures)))


def test_a_failing_link_gives_its_batched_downstreams_the_states_they_get_unbatched(
    connected, monkeypatch
):
    chain = flow(task_runner=RayTaskRunner(), name="failing-chain")(_failing_chain)
    monkeypatch.setattr(remotes, "PER_CPU", 10**6)  # never batched
    alone, alone_tasks = chain().unquote()
    monkeypatch.setattr(remotes, "PER_CPU", 0)
    monkeypatch.setattr(batching, "HOLD_SECONDS", 0.5)
    together, together_tasks = chain().unquote()
    assert alone_tasks == 7 and together_tasks < 7  # the second run shared Ray tasks
    assert together == alone
    names = [name for _, name, _, _ in together]
    assert (
        names
        == ["Completed", "Completed", "Failed", "UpstreamFailed", "UpstreamFailed"]
        + ["Completed"] * 2
    )
    assert [value for *_, value in together][5:] == ["ValueError", "UpstreamFailed"]


def test_a_batched_chain_lost_with_its_worker_is_rerun_whole(connected, batched, tmp_path):
    log, marker = tmp_path / "ran", tmp_path / "died"

    @flow(task_runner=RayTaskRunner())
    def chain():
        f = ct.logged_link.submit(str(log), str(marker), 0, 3)
        for _ in range(7):
            f = ct.logged_link.submit(str(log), str(marker), f, 3)
        return f.result()

    assert chain() == 8
    ran = [int(x) for x in log.read_text().split()]
    # the worker died running the link given 3: Ray ran the batch again from its first
    # link, so the links before it in the batch ran twice
    assert ran.count(3) == 2 and ran.count(0) == 2
    assert sorted(set(ran)) == list(range(8))


def test_a_batched_chain_lost_for_good_crashes_its_first_link_by_name(connected, batched, tmp_path):
    log, marker = tmp_path / "ran", tmp_path / "died"

    @flow(task_runner=RayTaskRunner(max_retries=0))
    def chain():
        links = [ct.logged_link.submit(str(log), str(marker), 0, 3)]
        for _ in range(7):
            links.append(ct.logged_link.submit(str(log), str(marker), links[-1], 3))
        for f in links:
            f.wait()
        return quote([f.state for f in links])

    first, *rest = chain().unquote()
    # the Ray task running every link is lost: the first link crashed with it, and each
    # later link ends as a run whose upstream crashed does
    assert first.is_crashed()
    with pytest.raises(errors.WorkerLost, match="task run 'logged_link-"):
        first.result()
    assert [s.name for s in rest] == ["UpstreamFailed"] * 7


def test_runs_of_a_batch_that_failed_for_another_runs_upstream_run_again_alone(connected, batched):
    @flow(task_runner=RayTaskRunner(max_retries=0))
    def body():
        lost = ct.dies_after.submit(3)
        lost.wait(0.6)  # sent by now (held at most 0.5 s), and still running
        a = ct.link.submit(0)
        b = ct.link.submit(10)  # shares a's batch
        c = ct.add.submit(a, lost)  # joins them: the batch now waits for ``lost``
        runs = [lost, a, b, c]
        for f in runs:
            f.wait()
        return quote([f.state for f in runs])

    lost, a, b, c = body().unquote()
    # ``lost`` took its worker down with it, so Ray failed the batch without running
    # it: a and b had no part in that and ran again alone; c ends as its upstream says
    assert lost.is_crashed()
    with pytest.raises(errors.WorkerLost):
        lost.result()
    assert (a.result(), b.result()) == (1, 11)
    assert c.name == "UpstreamFailed"
