"""DaskTaskRunner beyond the conformance suite: construction, cluster ownership, real
``dask scheduler``/``dask worker`` processes with a worker killed mid-map, workers lost
for good, resources, nested submission, get_dask_client, serialization, missing extra."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("distributed")

import dask  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402

from braid import errors, flow, quote  # noqa: E402
from braid.adapters.dask import DaskTaskRunner  # noqa: E402
from braid.core.resources import resources  # noqa: E402
from braid.testing import dask_tasks as dt  # noqa: E402
from braid.testing import sample_tasks as st  # noqa: E402
from braid.testing.dask_processes import dask_processes

QUIET = {"dashboard_address": "127.0.0.1:0", "silence_logs": logging.ERROR}


@pytest.fixture(scope="module")
def gpu_cluster(tmp_path_factory):
    """One worker process with one thread that offers a GPU resource."""
    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        resources={"GPU": 1},
        local_directory=str(tmp_path_factory.mktemp("dask")),
        **QUIET,
    ) as cluster:
        yield cluster


# -- construction ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"address": "tcp://127.0.0.1:1", "cluster_class": LocalCluster}, "cluster_class"),
        ({"address": "tcp://127.0.0.1:1", "cluster_kwargs": {"n_workers": 1}}, "cluster_kwargs"),
        ({"address": "tcp://127.0.0.1:1", "adapt_kwargs": {"maximum": 2}}, "adapt_kwargs"),
        ({"address": 8786}, "address"),
        ({"cluster_class": "LocalCluster"}, "dotted path"),
        ({"cluster_kwargs": [1]}, "cluster_kwargs must be a dict"),
    ],
)
def test_conflicting_or_bad_arguments_refused_at_construction(kwargs, match):
    with pytest.raises(errors.ConfigurationError, match=match):
        DaskTaskRunner(**kwargs)


def test_unimportable_cluster_class_is_a_configuration_error():
    runner = DaskTaskRunner(cluster_class="no_such_module.Cluster")
    with pytest.raises(errors.ConfigurationError, match="no_such_module"):
        runner.__enter__()


def test_duplicate_keeps_configuration():
    runner = DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={"n_workers": 1},
        adapt_kwargs={"maximum": 2},
    )
    copy = runner.duplicate()
    assert copy is not runner
    assert (copy.cluster_class, copy.cluster_kwargs, copy.adapt_kwargs) == (
        "distributed.LocalCluster",
        {"n_workers": 1},
        {"maximum": 2},
    )


def test_missing_extra_names_the_install_command():
    code = (
        "import sys; sys.modules['distributed'] = None\n"
        "import braid, braid.errors as e\n"
        "try:\n    braid.DaskTaskRunner\n"
        "except e.MissingExtraError as exc:\n    print('MISSING:', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "MISSING:" in out.stdout, out.stderr
    assert "pip install 'braid-flow[dask]'" in out.stdout


# -- a cluster it did not create ------------------------------------------------------------
def test_never_closes_a_cluster_it_did_not_create(gpu_cluster):
    @flow(task_runner=DaskTaskRunner(address=gpu_cluster.scheduler_address))
    def twice():
        return st.inc.submit(1).result()

    assert twice() == 2 and twice() == 2
    with Client(gpu_cluster, set_as_default=False) as client:
        assert client.submit(sum, [1, 2]).result(timeout=30) == 3
        assert len(client.scheduler_info()["workers"]) == 1


def test_resource_hints_reach_dask(gpu_cluster):
    @flow(task_runner=DaskTaskRunner(address=gpu_cluster.scheduler_address))
    def body():
        plain = dt.resource_restrictions.submit()
        with resources(gpus=1):
            hinted = dt.resource_restrictions.submit()
        with resources(gpus=0.5):
            mapped = dt.resource_restrictions.map([None, None])
        return plain.result(), hinted.result(), mapped.result(), dt.on_gpu.submit(3).result()

    plain, hinted, mapped, value = body()
    assert plain == {} and hinted == {"GPU": 1} and mapped == [{"GPU": 0.5}] * 2
    assert value == 3


def test_resource_no_worker_offers_is_refused_at_submit(gpu_cluster):
    @flow(task_runner=DaskTaskRunner(address=gpu_cluster.scheduler_address))
    def body():
        with pytest.raises(errors.ConfigurationError, match="TPU"):
            dt.on_tpu.submit(1)
        with pytest.raises(errors.ConfigurationError, match="GPU"), resources(gpus=2):
            st.inc.map([1, 2])
        return True

    assert body()


def test_nested_submission_on_a_one_thread_worker(gpu_cluster):
    @flow(task_runner=DaskTaskRunner(address=gpu_cluster.scheduler_address))
    def body():
        return (
            st.nested_depth.submit(4).result(),
            st.submit_children.submit(3).result(),
            st.map_children.map([[1], [2, 3]]).result(),
        )

    assert body() == (4, [1, 2, 3], [[2], [3, 4]])


def test_run_record_names_the_dask_worker(gpu_cluster):
    @flow(task_runner=DaskTaskRunner(address=gpu_cluster.scheduler_address))
    def recorded():
        return st.inc.map(range(3)).result()

    record = recorded(return_state=True).record
    workers = {
        w["address"] if isinstance(w, dict) else w for w in gpu_cluster.scheduler_info["workers"]
    }
    for run in record.task_runs:
        assert run.where.startswith("dask tcp://127.0.0.1:"), run.where
        assert run.where.split()[1] in workers


def test_get_dask_client_inside_a_task_and_in_the_flow(gpu_cluster):
    from braid.adapters.dask import get_dask_client

    @flow(task_runner=DaskTaskRunner(address=gpu_cluster.scheduler_address))
    def body():
        with get_dask_client() as client:
            direct = client.submit(sum, [1, 1]).result()
        return direct, dt.sum_with_dask_client.submit([1, 2, 3]).result()

    assert body() == (2, 12)
    with pytest.raises(errors.MissingContextError), get_dask_client():
        pass


def test_unpicklable_input_fails_at_submit(gpu_cluster):
    @flow(task_runner=DaskTaskRunner(address=gpu_cluster.scheduler_address))
    def body():
        with pytest.raises(errors.SerializationError, match="parameter 'x'"):
            st.identity.submit(threading.Lock())
        with pytest.raises(errors.SerializationError):
            st.identity.map([1, threading.Lock()])
        return True

    assert body()


def test_worker_logs_reach_the_driver(gpu_cluster, caplog):
    caplog.set_level(logging.INFO, logger="braid")

    @flow(task_runner=DaskTaskRunner(address=gpu_cluster.scheduler_address))
    def body():
        st.log_something.map(["one", "two"]).wait()  # never fetched: logs come anyway

    body()
    messages = {r.getMessage() for r in caplog.records if r.name == "braid.task_runs"}
    assert {"one", "two"} <= messages


# -- a cluster it creates ---------------------------------------------------------------------
def test_own_cluster_is_closed_and_lost_workers_crash_runs(tmp_path):
    runner = DaskTaskRunner(
        cluster_kwargs={
            "n_workers": 1,
            "threads_per_worker": 1,
            "local_directory": str(tmp_path),
            **QUIET,
        }
    )
    seen = {}

    @flow(task_runner=runner)
    def body():
        seen["scheduler"] = get_run_scheduler()
        doomed = dt.kill_my_worker.submit()
        after = st.inc.submit(doomed)
        doomed.wait()
        seen["doomed"] = doomed.state
        return after, dt.worker_pid.submit()  # the restarted worker still serves

    def get_run_scheduler():
        from braid import get_run_context

        return get_run_context().task_runner.client.scheduler.address

    # the scheduler of a LocalCluster runs in this process and reads this now
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        state = body(return_state=True)
    assert state.is_failed()  # `after` failed upstream
    with pytest.raises(errors.UpstreamFailed) as info:
        state.result()
    assert isinstance(info.value.__cause__, errors.WorkerLost)
    assert type(info.value.__cause__.__cause__).__name__ == "KilledWorker"
    assert seen["doomed"].is_crashed()
    assert isinstance(seen["doomed"].data, errors.WorkerLost)
    with pytest.raises(OSError), Client(seen["scheduler"], timeout=2):
        pass


# -- real processes: dask scheduler + two dask workers -----------------------------------------
@pytest.fixture
def process_cluster(tmp_path):
    with dask_processes(tmp_path, nthreads=1) as (address, sched_file):
        yield address, sched_file


def test_a_small_result_comes_with_its_run_and_survives_its_worker(process_cluster, tmp_path):
    """A small result travels with the run's end: read after its worker died, it is the
    value the run returned, not a recomputation (the task counts its runs in a file)."""
    address, sched_file = process_cluster
    counter = tmp_path / "runs"

    @flow(task_runner=DaskTaskRunner(address=address))
    def body():
        small = dt.count_runs.submit(str(counter))
        small.wait(timeout=60)
        with Client(scheduler_file=str(sched_file), set_as_default=False) as client:
            pids = client.run(os.getpid)
        for pid in pids.values():  # every worker dies; their nannies start new ones
            os.kill(pid, signal.SIGKILL)
        return small.result()

    assert body() == 1
    assert counter.read_text() == "ran\n"


def test_worker_killed_mid_map_every_run_ends_final(process_cluster):
    address, sched_file = process_cluster

    @flow(task_runner=DaskTaskRunner(address=address))
    def body():
        futures = dt.slow_inc.map(range(8), 0.4)
        futures[0].wait()
        with Client(scheduler_file=str(sched_file), set_as_default=False) as client:
            pids = client.run(os.getpid)
        os.kill(next(iter(pids.values())), signal.SIGKILL)
        futures.wait(timeout=90)
        return quote([f.state for f in futures])  # states, not resolved values

    states = body().unquote()
    assert all(s.is_final() for s in states)
    assert [s.result() for s in states] == list(range(1, 9))


# -- data stays on the cluster ---------------------------------------------------------------
def _locality(*args: str) -> dict:
    """Run braid.testing.locality_driver in a fresh Python and return its JSON line."""
    import json

    proc = subprocess.run(
        [sys.executable, "-m", "braid.testing.locality_driver", *args],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _assert_stayed_on_the_cluster(out: dict) -> None:
    assert out["lengths"] == [100 * 2**20] * 2
    # two 100 MB results, each consumed by a run that may be on the other worker: the
    # driver receives no more than the same flow with 1 MB results, and its memory
    # does not grow by anything like a result
    assert out["extra_read_mb"] < 5, out
    assert out["rss_grew_mb"] < 30, out


def test_large_results_stay_on_a_local_cluster():
    _assert_stayed_on_the_cluster(_locality("dask"))


def test_large_results_stay_on_a_scheduler_and_worker_processes(process_cluster):
    address, _ = process_cluster
    _assert_stayed_on_the_cluster(_locality("dask", address))


def test_a_mapped_lists_results_come_in_bulk(gpu_cluster, monkeypatch):
    """FutureList.result() brings the ready results of a map in one gather, not one round
    trip per run (results too large to come with their runs' headers)."""
    from braid.adapters.dask.future import DaskFuture

    calls: list[int] = []
    plain = DaskFuture.prefetch.__func__  # type: ignore[attr-defined]

    def counting(cls, futures):
        calls.append(len(futures))
        plain(cls, futures)

    monkeypatch.setattr(DaskFuture, "prefetch", classmethod(counting))

    @flow(task_runner=DaskTaskRunner(address=gpu_cluster.scheduler_address))
    def body():
        futures = st.identity.map([f"{i:05d}" * 2000 for i in range(40)])
        futures.wait()
        return futures.result()

    assert body() == [f"{i:05d}" * 2000 for i in range(40)]
    assert calls and calls[0] == 40 and len(calls) == 1


def test_a_dead_address_fails_fast_by_name():

    @flow(task_runner=DaskTaskRunner(address="tcp://127.0.0.1:1"))
    def nowhere():
        return 1

    start = time.monotonic()
    with pytest.raises(errors.ClusterUnreachable, match="127.0.0.1:1"):
        nowhere()
    assert time.monotonic() - start < 30  # hang guard (Dask alone retried for ~30 s)


def test_workers_without_braid_are_named_at_connect(gpu_cluster):
    from braid.adapters.dask.cluster import check_workers_have_braid

    with Client(gpu_cluster.scheduler_address, set_as_default=False) as client:
        check_workers_have_braid(client, "here")  # this cluster's workers have braid
        with pytest.raises(
            errors.ConfigurationError,
            match="cannot import braid .no-such-package-x is not installed",
        ):
            check_workers_have_braid(client, "here", package="no-such-package-x")


def test_a_finished_run_is_freed_as_soon_as_nobody_holds_it(gpu_cluster):
    """No reference cycle keeps a finished run's future (and so its result on the
    cluster) alive until the next full garbage collection: read, unread, small or
    large, it goes when the caller drops it."""
    import gc
    import weakref

    @flow(task_runner=DaskTaskRunner(address=gpu_cluster.scheduler_address))
    def body():
        gc.disable()
        try:
            small, large = st.inc.submit(1), st.identity.submit("x" * 100_000)
            unread = st.identity.submit("y" * 100_000)
            assert small.result() == 2 and len(large.result()) == 100_000
            unread.wait(timeout=60)
            refs = [weakref.ref(f) for f in (small, large, unread)]
            del small, large, unread
            deadline = time.monotonic() + 10  # the run table lets go just after the end
            while any(r() is not None for r in refs) and time.monotonic() < deadline:
                time.sleep(0.05)
            return [r() is None for r in refs]
        finally:
            gc.enable()

    assert body() == [True, True, True]
