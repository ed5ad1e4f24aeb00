"""ProcessPoolTaskRunner specifics: __main__ tasks, crashes, nested runs, start methods."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from braid import ThreadPoolTaskRunner, errors, flow, quote
from braid.runners.processes import ProcessPoolTaskRunner
from braid.testing import sample_tasks as st
from braid.testing.suite import run_in_flow


def test_main_module_tasks_closures_and_lambdas(tmp_path):
    script = tmp_path / "main_tasks.py"
    script.write_text(
        textwrap.dedent("""
        from braid import flow, task
        from braid.runners.processes import ProcessPoolTaskRunner

        OFFSET = 100

        class Point:  # a class of __main__: workers cannot import it by name
            def __init__(self, x):
                self.x = x

        @task
        def shifted(x):
            return x + OFFSET

        @task
        def moved(point):
            return Point(point.x + 1)

        def make_scaler(k):
            return task(lambda x: x * k, name="scale")

        @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
        def main_flow():
            a = shifted.map([1, 2])
            b = make_scaler(3).submit(a[1])
            p = moved.submit(Point(1))
            return a, b, p.result().x

        if __name__ == "__main__":
            print(main_flow())
    """)
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "([101, 102], 306, 2)"


def test_sigkill_names_the_signal_and_pool_recovers():
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def killed():
        doomed = st.kill_self.submit()
        doomed.wait(timeout=60)
        return quote(doomed.state), st.inc.submit(1).result()

    state, after = killed()
    state = state.unquote()
    assert state.is_crashed()
    with pytest.raises(errors.WorkerLost, match="SIGKILL"):
        state.result()
    assert after == 2


def test_nested_tasks_run_in_the_worker_process():
    parent_pid, nested_pid = run_in_flow(
        ProcessPoolTaskRunner(max_workers=1), lambda: st.nested_where.submit().result()
    )
    assert parent_pid == nested_pid != os.getpid()


def test_tasks_run_in_other_processes():
    pids = run_in_flow(
        ProcessPoolTaskRunner(max_workers=2),
        lambda: [st.where.submit().result()[0] for _ in range(4)],
    )
    assert os.getpid() not in pids


def test_forkserver_start_method():
    runner = ProcessPoolTaskRunner(max_workers=1, start_method="forkserver")
    assert run_in_flow(runner, lambda: st.add.submit(2, 2).result()) == 4


def test_bad_arguments_refused():
    with pytest.raises(errors.ConfigurationError, match="start_method"):
        ProcessPoolTaskRunner(start_method="thread")
    with pytest.raises(errors.ConfigurationError, match="max_workers"):
        ProcessPoolTaskRunner(max_workers=0)


def test_no_child_process_left_after_exit():
    run_in_flow(ProcessPoolTaskRunner(max_workers=2), lambda: st.inc.map(range(4)).result())
    assert multiprocessing.active_children() == []


def test_duplicate_keeps_configuration():
    r = ProcessPoolTaskRunner(max_workers=3, start_method="forkserver").duplicate()
    assert (r.max_workers, r.start_method) == (3, "forkserver")


def test_thread_runner_can_check_pickling():
    runner = ThreadPoolTaskRunner(check_pickling=True)
    assert runner.capabilities.requires_pickling

    def body():
        with pytest.raises(errors.SerializationError, match="parameter 'value'"):
            st.takes_anything.submit(threading.Lock())
        f = st.unpicklable_result.submit()
        f.wait()
        return st.add.submit(1, 2).result(), quote(f.state)

    value, state = run_in_flow(runner, body)
    state = state.unquote()
    assert value == 3
    assert state.is_failed()
    with pytest.raises(errors.SerializationError, match="return value"):
        state.result()


def test_stuck_time_out_never_takes_an_innocent_run_with_it():
    """The worker that exits after a stuck time-out is given no queued run."""

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def stuck_then_quick():
        stuck = st.stuck.submit(3)
        quick = st.inc.map(range(3))
        stuck.wait(timeout=60)
        return quote(stuck.state), quick.result()

    stuck, quick = stuck_then_quick()
    assert stuck.unquote().name == "TimedOut"
    assert quick == [1, 2, 3]


@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_fire_and_forget_nested_task_in_a_worker_completes(tmp_path, start_method):
    marker = tmp_path / "nested"

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1, start_method=start_method))
    def parent():
        return st.fire_and_forget.submit(str(marker)).result()

    assert parent() == "parent done"
    assert marker.read_text() == "nested ran"


def test_a_script_without_the_main_guard_fails_fast_naming_it(tmp_path):
    """A spawned worker re-imports the script; its module-level flow call must not hang."""
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "no_guard.py"
    script.write_text(
        textwrap.dedent("""
        from braid import ProcessPoolTaskRunner, flow
        from braid.testing import sample_tasks as st

        @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
        def unguarded():
            return st.inc.map(range(4)).result()

        print(unguarded())
    """)
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=90, cwd=tmp_path
    )  # hang guard
    assert proc.returncode != 0
    assert "WorkerLost" in proc.stderr
    assert 'if __name__ == "__main__":' in proc.stderr
