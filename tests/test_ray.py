"""RayTaskRunner beyond the conformance suite: configuration, which Ray it starts and
stops, a real ``ray start --head`` cluster used by address, dead workers, resource
options, nested submission, errors and logs.

One process can be connected to one Ray at a time, so this process connects to the
head node once (as a user would, which the runner must then leave alone); flows in
which the runner itself starts or connects to Ray run in subprocess drivers.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

_RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}
for _key, _value in _RAY_ENV.items():
    os.environ.setdefault(_key, _value)

ray = pytest.importorskip("ray")

from braid import allow_failure, errors, flow, quote, task  # noqa: E402
from braid.adapters.ray import RayTaskRunner, remote_options  # noqa: E402
from braid.core.states import RemoteTraceback  # noqa: E402
from braid.testing import ray_tasks as rt  # noqa: E402
from braid.testing import sample_tasks as st  # noqa: E402
from braid.testing.ray_processes import ray_processes, start_head, stop_scoped  # noqa: E402

DRIVER_TIMEOUT = 100


# -- processes: a head node, subprocess drivers, a scoped stop ---------------------------
def _short_temp_dir(prefix: str) -> str:
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")  # Ray's socket paths must stay short


def run_driver(code: str, *, env: dict | None = None) -> dict:
    """Run ``code`` in a fresh Python under a timeout; it prints one JSON line last."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **_RAY_ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=DRIVER_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- no Ray needed ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"address": 42}, "address must be"),
        ({"address": " "}, "address must be"),
        ({"address": "ray://127.0.0.1:10001"}, "Ray Client"),
        ({"init_kwargs": [("num_cpus", 2)]}, "init_kwargs must be a dict"),
        ({"init_kwargs": {"address": "127.0.0.1:6379"}}, "RayTaskRunner\\(address=...\\)"),
        ({"address": "127.0.0.1:6379", "init_kwargs": {"num_cpus": 2}}, "num_cpus"),
    ],
)
def test_invalid_configuration_is_refused_at_construction(kwargs, match):
    with pytest.raises(errors.ConfigurationError, match=match):
        RayTaskRunner(**kwargs)


def test_duplicate_keeps_configuration():
    runner = RayTaskRunner(address="127.0.0.1:6379", init_kwargs={"namespace": "n"})
    copy = runner.duplicate()
    assert copy is not runner
    assert (copy.address, copy.init_kwargs) == ("127.0.0.1:6379", {"namespace": "n"})


def test_missing_extra_names_the_install_command():
    out = run_driver("""
        import json, sys
        sys.modules["ray"] = None  # as if Ray were not installed
        import braid
        from braid import errors
        try:
            braid.RayTaskRunner
        except errors.MissingExtraError as exc:
            print(json.dumps({"message": str(exc),
                              "is_import_error": isinstance(exc, ImportError)}))
    """)
    assert "pip install 'braid-flow[ray]'" in out["message"]
    assert out["is_import_error"]


def test_runner_starts_local_ray_and_shuts_down_only_what_it_started():
    """Runs before the head node below exists, so only one Ray is up at a time."""
    temp_dir = _short_temp_dir("brl")
    try:
        out = run_driver(f"""
            import json, ray
            from braid import flow
            from braid.adapters.ray import RayTaskRunner
            from braid.testing import sample_tasks as st

            runner = RayTaskRunner(init_kwargs={{"num_cpus": 1, "_temp_dir": {temp_dir!r}}})

            @flow(task_runner=runner)
            def child(x):
                return st.inc.submit(x).result(), ray.get_runtime_context().gcs_address

            @flow(task_runner=runner)
            def parent():
                before = ray.get_runtime_context().gcs_address
                value, inside = child(1)
                return value, before == inside, ray.is_initialized()

            value, same_ray, still_up = parent()
            print(json.dumps({{"value": value, "same_ray": same_ray, "still_up": still_up,
                              "after": ray.is_initialized()}}))
        """)
        assert out == {"value": 2, "same_ray": True, "still_up": True, "after": False}
        deadline = time.monotonic() + 20
        while ray_processes(temp_dir) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not ray_processes(temp_dir)
    finally:
        stop_scoped(temp_dir)


def test_ctrl_c_cancels_waiting_runs_and_exits_promptly():
    """Ctrl-C in a driver blocked on a Ray task: runs still waiting for their Ray
    dependencies end CANCELLED, the running one CRASHED, and the Ray it started stops."""
    temp_dir = _short_temp_dir("bri")
    code = textwrap.dedent(f"""
        import sys
        from braid import flow
        from braid.adapters.ray import RayTaskRunner
        from braid.testing import sample_tasks as st

        runs = {{}}

        @flow(task_runner=RayTaskRunner(init_kwargs={{"num_cpus": 1, "_temp_dir": {temp_dir!r}}}))
        def blocked():
            runs["running"] = st.sleep_then.submit(1, 60)
            runs["waiting"] = st.inc.submit(runs["running"])
            print("READY", flush=True)
            return runs["running"].result()

        try:
            blocked()
        except KeyboardInterrupt:
            print("INTERRUPTED", runs["running"].state.name, runs["waiting"].state.name)
            sys.exit(130)
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env={**os.environ, **_RAY_ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "READY"
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)  # hang guard: the task sleeps 60 s
        assert proc.returncode == 130, err[-4000:]
        assert "INTERRUPTED Crashed Cancelled" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stop_scoped(temp_dir)


# -- a head node started with `ray start --head`, used by address --------------------------
@pytest.fixture(scope="module")
def head():
    temp_dir = _short_temp_dir("brh")
    try:
        address = start_head(
            temp_dir, num_cpus=2, env=_RAY_ENV, extra=('--resources={"braid_slot": 4}',)
        )
        yield address
    finally:
        stop_scoped(temp_dir)


@pytest.fixture(scope="module")
def connected(head):
    """This process connected to the head node by the user, not by braid."""
    ray.init(address=head, log_to_driver=False, logging_level=logging.ERROR)
    try:
        yield head
    finally:
        ray.shutdown()


def test_flows_by_address_from_a_driver_process(head):
    out = run_driver(f"""
        import json, ray
        from braid import flow
        from braid.adapters.ray import RayTaskRunner
        from braid.testing import sample_tasks as st

        @flow(task_runner=RayTaskRunner(address={head!r}))
        def pipeline(n):
            f = st.inc.submit(0)
            for _ in range(n):
                f = st.inc.submit(f)
            bad = st.fail.submit("remote")
            return (f.result(), st.inc.map(range(5)).result(),
                    type(bad.result(raise_on_failure=False)).__name__,
                    ray.get_runtime_context().gcs_address)

        chain, mapped, error, where = pipeline(20)
        print(json.dumps({{"chain": chain, "mapped": mapped, "error": error, "where": where,
                          "after": ray.is_initialized()}}))
    """)
    assert out == {
        "chain": 21,
        "mapped": [1, 2, 3, 4, 5],
        "error": "UserError",
        "where": head,
        "after": False,
    }


def test_runner_uses_the_ray_it_finds_and_leaves_it_running(connected):
    @flow(task_runner=RayTaskRunner(address=connected))
    def twice(x):
        return st.inc.submit(x).result()

    assert [twice(1), twice(2)] == [2, 3]
    assert ray.is_initialized()


def test_address_of_another_cluster_is_refused(connected):
    @flow(task_runner=RayTaskRunner(address="127.0.0.1:1"))
    def elsewhere():
        return 1

    with pytest.raises(errors.ConfigurationError, match="one Ray at a time"):
        elsewhere()


def test_worker_killed_mid_task_ends_crashed_with_worker_lost(connected, tmp_path):
    pid_file = str(tmp_path / "pid")

    @flow(task_runner=RayTaskRunner(max_retries=0))  # Ray gives up at the first loss
    def doomed():
        victim = rt.pid_then_sleep.submit(pid_file, 60)
        downstream = st.inc.submit(victim)
        tolerant = st.describe.submit(allow_failure(victim))
        deadline = time.monotonic() + 60
        while not os.path.exists(pid_file) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(int(Path(pid_file).read_text()), signal.SIGKILL)
        for f in (victim, downstream, tolerant):
            f.wait(timeout=60)
        return quote((victim.state, downstream.state, tolerant.state))

    victim, downstream, tolerant = doomed().unquote()
    assert victim.is_crashed()
    with pytest.raises(errors.WorkerLost) as info:
        victim.result()
    assert isinstance(info.value.__cause__, ray.exceptions.RayError)
    assert downstream.is_failed() and downstream.name == "UpstreamFailed"
    assert isinstance(downstream.result(raise_on_failure=False).__cause__, errors.WorkerLost)
    assert tolerant.result()[0] == "WorkerLost"


def test_task_lost_with_its_worker_is_retried_by_ray(connected, tmp_path):
    """As raw Ray: a system failure is retried (max_retries, 3 by default); a task's
    exception is not (braid's retries count those)."""
    from braid.testing.multihost_drivers import die_once

    dies_once = task(die_once)

    @flow(task_runner=RayTaskRunner())
    def retried():
        return dies_once.submit(str(tmp_path / "died")).result()

    assert retried() == "survived"

    @flow(task_runner=RayTaskRunner())
    def no_retries():
        with remote_options(max_retries=0):
            return dies_once.submit(str(tmp_path / "died-again")).result()

    with pytest.raises(errors.WorkerLost, match="task run 'die_once-"):
        no_retries()


def test_remote_options_and_task_hints_reach_ray(connected):
    @flow(task_runner=RayTaskRunner())
    def views():
        plain = rt.ray_view.submit()
        with remote_options(num_cpus=2):
            two_cpus = rt.ray_view.submit()
        with remote_options(resources={"braid_slot": 1}, num_cpus=0.5):
            with remote_options(resources={"braid_slot": 2}):
                inner = rt.ray_view.submit()
        declared = rt.ray_view_with_hints.submit()
        with remote_options(resources={"braid_slot": 3}):
            overridden = rt.ray_view_with_hints.submit()
        futures = (plain, two_cpus, inner, declared, overridden)
        return [(f.task_run_name, f.result()) for f in futures]

    (name, plain), (_, two), (_, inner), (_, declared), (_, overridden) = views()
    # Ray shows the task's name (one wrapper per task: see remotes.remote_for)
    assert plain["name"] == "ray_view" and name.startswith("ray_view-")
    assert plain["resources"] == {"CPU": 1.0}
    assert two["resources"] == {"CPU": 2.0}
    assert inner["resources"] == {"CPU": 0.5, "braid_slot": 2.0}
    assert declared["resources"] == {"CPU": 1.0, "braid_slot": 1.0}
    assert overridden["resources"] == {"CPU": 1.0, "braid_slot": 3.0}


def test_remote_options_refuses_builtin_names_as_custom_resources():
    with pytest.raises(errors.ConfigurationError, match="num_cpus"):
        with remote_options(resources={"CPU": 1}):
            pass


def test_nested_submission_runs_on_ray(connected):
    @flow(task_runner=RayTaskRunner())
    def nested():
        return rt.nested_where.submit().result()

    runner_type, parent_pid, child_pid = nested()
    assert runner_type == "RayTaskRunner"
    assert parent_pid != os.getpid() and child_pid != os.getpid()


def test_run_record_names_the_ray_node(connected):
    @flow(task_runner=RayTaskRunner())
    def recorded():
        return st.inc.map(range(2)).result()

    record = recorded(return_state=True).record
    node = ray.get_runtime_context().get_node_id()[:8]
    for run in record.task_runs:
        assert run.where.startswith(f"ray node {node} / pid "), run.where


def test_user_exception_keeps_its_type_and_remote_traceback(connected):
    @flow(task_runner=RayTaskRunner())
    def failing():
        return st.fail.submit("from a worker").result(raise_on_failure=False)

    exc = failing()
    assert type(exc) is st.UserError
    assert not isinstance(exc, ray.exceptions.RayError)
    assert isinstance(exc.__cause__, RemoteTraceback)
    assert "sample_tasks.py" in exc.__cause__.tb and "raise UserError" in exc.__cause__.tb


def test_worker_logs_reach_the_driver(connected, caplog):
    caplog.set_level(logging.INFO, logger="braid.task_runs")

    @flow(task_runner=RayTaskRunner())
    def logging_flow():
        return st.log_something.submit("hello from a Ray worker").result()

    logging_flow()
    records = [r for r in caplog.records if r.getMessage() == "hello from a Ray worker"]
    assert len(records) == 1
    assert records[0].process != os.getpid()
    assert records[0].task_run_name.startswith("log_something-")


def test_unpicklable_input_fails_at_submit(connected):
    @flow(task_runner=RayTaskRunner())
    def bad_input():
        with pytest.raises(errors.SerializationError, match="parameter 'x'"):
            st.identity.submit({"lock": threading.Lock()})
        return True

    assert bad_input()


def test_worker_logs_of_runs_never_read_reach_the_driver(connected, caplog):
    """Records travel with the run's header, so they arrive whether or not anyone
    reads the run's state or result."""
    caplog.set_level(logging.INFO, logger="braid.task_runs")

    @flow(task_runner=RayTaskRunner())
    def fire_and_forget():
        st.log_something.submit("nobody reads this run")

    fire_and_forget()
    assert [r.getMessage() for r in caplog.records].count("nobody reads this run") == 1


def test_a_large_result_goes_worker_to_worker_never_through_the_driver(head):
    """A 200 MB result consumed by a downstream task: the driver's peak memory does
    not grow by anything like it (it would, by at least 200 MB, if the result were
    sent to the driver when the run ends)."""
    size = 200 * 2**20
    out = run_driver(f"""
        import json, resource
        from braid import flow
        from braid.adapters.ray import RayTaskRunner
        from braid.testing import ray_tasks as rt

        @flow(task_runner=RayTaskRunner(address={head!r}))
        def big(n):
            data = rt.blob.submit(n)
            length = rt.size_of.submit(data)
            return length.result(), data.state.is_completed(), data.state.where is not None

        def peak_kb():
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

        big(10)  # warm-up: imports, worker start
        before = peak_kb()
        length, completed, has_where = big({size})
        print(json.dumps({{"length": length, "completed": completed, "has_where": has_where,
                          "grew_mb": (peak_kb() - before) / 1024}}))
    """)
    assert out["length"] == size
    assert out["completed"] and out["has_where"]
    assert out["grew_mb"] < 50, out


def test_mapped_large_results_stay_on_the_cluster(head):
    """Two 100 MB results mapped into consumers: the driver's memory does not grow by
    anything like a result, and its sockets receive no more than with 1 MB results."""
    proc = subprocess.run(
        [sys.executable, "-m", "braid.testing.locality_driver", "ray", head],
        env={**os.environ, **_RAY_ENV},
        capture_output=True,
        text=True,
        timeout=DRIVER_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["lengths"] == [100 * 2**20] * 2
    assert out["rss_grew_mb"] < 30, out
    assert out["extra_read_mb"] < 5, out


def test_waiting_on_children_inside_tasks_frees_the_cpu():
    """On a 2-CPU Ray, 4 parents each wait on 2 children with ``braid.wait`` or
    ``as_completed``: the waits give the parents' CPUs back to Ray, or no child
    could ever start."""
    temp_dir = _short_temp_dir("brw")
    try:
        out = run_driver(f"""
            import json
            from braid import flow
            from braid.adapters.ray import RayTaskRunner
            from braid.testing import ray_tasks as rt

            runner = RayTaskRunner(init_kwargs={{"num_cpus": 2, "_temp_dir": {temp_dir!r}}})

            @flow(task_runner=runner, timeout_seconds=60)  # hang guard
            def parents():
                hows = ["wait", "as_completed"] * 2
                return rt.wait_on_children.map(range(4), hows).result()

            print(json.dumps({{"totals": parents()}}))
        """)
        assert out["totals"] == [2 * x + 12 for x in range(4)]
    finally:
        stop_scoped(temp_dir)


def test_remote_options_pass_any_ray_task_option(connected):
    @flow(task_runner=RayTaskRunner())
    def fresh_workers():
        with remote_options(max_calls=1):  # each worker process runs one task, then exits
            first = st.where.submit().result()[0]
            second = st.where.submit().result()[0]
        return first, second

    first, second = fresh_workers()
    assert first != second
    with pytest.raises(errors.ConfigurationError, match="num_returns"):
        with remote_options(num_returns=3):
            pass


def test_a_flow_timeout_names_where_it_left_a_run_running(connected, tmp_path):
    """A run the flow's time-out leaves running ends CRASHED naming its Ray node and
    worker process; a run still queued behind it ends CANCELLED."""
    marks = [tmp_path / f"started-{i}" for i in range(3)]

    @flow(task_runner=RayTaskRunner(), timeout_seconds=12)
    def body():
        futures = [rt.mark_then_sleep.submit(str(m), 60) for m in marks]  # 2 CPUs
        deadline = time.monotonic() + 10
        while not any(m.exists() for m in marks) and time.monotonic() < deadline:
            time.sleep(0.05)
        return futures

    state = body(return_state=True)
    assert state.is_failed()
    with pytest.raises(errors.FlowTimeout):
        state.result()
    started = sum(m.exists() for m in marks)
    assert 1 <= started <= 2
    runs = state.record.task_runs
    crashed = [r for r in runs if r.state_type == "CRASHED"]
    assert len(crashed) == started, [(r.state_name, r.error) for r in runs]
    for r in crashed:
        assert "stopped while running on Ray node 127.0.0.1 (worker pid" in r.error, r.error
    assert {r.state_type for r in runs if r not in crashed} == {"CANCELLED"}


# -- runs of a map sharing Ray tasks (braid.adapters.ray.batches) ------------------------
def test_a_big_map_shares_ray_tasks_and_each_run_keeps_its_own_state(connected):
    @flow(task_runner=RayTaskRunner())
    def body():
        mixed = rt.five_fails.map(range(64))
        mixed.wait()
        blobs = rt.blob.map([100_000] * 32)  # over the header's inline limit: data refs
        sizes = rt.size_of.map(blobs).result()  # taken worker to worker
        shared = len({id(f.ref) for f in mixed})
        return quote(([f.state for f in mixed], sizes, shared))

    states, sizes, shared = body().unquote()
    assert shared < 64  # 2 CPUs: 8 Ray tasks of 8 runs
    assert [s.name for s in states].count("Failed") == 1
    assert isinstance(states[5].result(raise_on_failure=False), ValueError)
    assert [s.result() for i, s in enumerate(states) if i != 5] == [i for i in range(64) if i != 5]
    assert sizes == [100_000] * 32


def test_a_shared_ray_task_lost_with_its_worker_is_rerun_or_crashes_each_run(connected, tmp_path):
    @flow(task_runner=RayTaskRunner())
    def rerun():
        return rt.first_kills_worker.map(str(tmp_path / "died"), range(64)).result()

    assert rerun() == list(range(64))  # Ray re-ran the lost task: every run completed

    @flow(task_runner=RayTaskRunner(max_retries=0))
    def given_up():
        runs = rt.first_kills_worker.map(str(tmp_path / "died-again"), range(64))
        runs.wait()
        return quote([f.state for f in runs])

    states = given_up().unquote()
    crashed = [s for s in states if s.is_crashed()]
    assert 1 <= len(crashed) < 64  # the lost task's runs; the other tasks' completed
    for state in crashed:
        with pytest.raises(errors.WorkerLost, match="task run 'first_kills_worker-"):
            state.result()
    assert all(s.is_completed() for s in states if not s.is_crashed())


def test_submits_that_queue_up_share_ray_tasks_and_feed_downstream_runs(connected):
    # more live runs than 4 per CPU: the next submits wait a moment to share a Ray task;
    # a downstream run joins its held upstream's task, or takes its Ray object worker to
    # worker once it is sent (either way Ray, not the driver, passes the result on)
    @flow(task_runner=RayTaskRunner())
    def body():
        first = [st.inc.submit(i) for i in range(200)]
        blobs = [rt.blob.submit(100_000) for _ in range(20)]
        sizes = [rt.size_of.submit(b) for b in blobs]
        return quote(
            (
                [f.result() for f in first],
                len({id(f.ref) for f in first}),
                [s.result() for s in sizes],
                [s.native_slots for s in sizes],
            )
        )

    values, tasks, sizes, native = body().unquote()
    assert values == list(range(1, 201))
    assert tasks < 200
    assert sizes == [100_000] * 20
    assert native == [[0]] * 20
