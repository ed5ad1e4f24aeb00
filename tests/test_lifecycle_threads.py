"""Lifecycle behaviour specific to threads: interrupts, loops per worker, retries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from braid import ThreadPoolTaskRunner, flow, task
from braid.testing import sample_tasks as st


@pytest.mark.parametrize("where", ["body", "drain"])
def test_ctrl_c_cancels_queued_runs_and_exits_promptly(where):
    proc = subprocess.Popen(
        [sys.executable, "-m", "braid.testing.interrupt_script", where],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "READY"
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)  # hang guard: tasks sleep 60 s
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "queued=Cancelled,Cancelled,Cancelled" in out
    assert "running=Crashed,Crashed" in out


def test_async_tasks_on_one_worker_share_a_loop():
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def loops():
        return st.loop_id.submit().result(), st.loop_id.submit().result()

    first, second = loops()
    assert first == second


def test_retry_delay_does_not_hold_the_worker():
    """While a run waits out a long retry delay, the only worker runs other tasks."""
    order = []

    @task(retries=1, retry_delay_seconds=0.5)
    def fail_once():
        from braid import get_run_context

        order.append(("retrying", get_run_context().task_run.attempt))
        if get_run_context().task_run.attempt == 1:
            raise ValueError("first")
        return "ok"

    @task
    def other(i):
        order.append(("other", i))
        return i

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def f():
        a = fail_once.submit()
        time.sleep(0.05)
        others = other.map(range(3))
        return a.result(), others.result()

    assert f() == ("ok", [0, 1, 2])
    assert order.index(("retrying", 2)) > order.index(("other", 2))


def test_flow_interrupt_in_task_direct_call_propagates():
    @flow
    def f():
        st.raise_keyboard_interrupt()

    try:
        f()
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("KeyboardInterrupt did not propagate")


def test_interpreter_exit_drains_default_runner(tmp_path):
    script = tmp_path / "drain_at_exit.py"
    marker = tmp_path / "marker"
    script.write_text(
        "import time\n"
        "from braid import task\n"
        "@task\n"
        "def late(path):\n"
        "    time.sleep(0.3)\n"
        "    open(path, 'w').write('done')\n"
        f"late.submit({str(marker)!r})\n"
    )
    subprocess.run(
        [sys.executable, str(script)],
        check=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert marker.read_text() == "done"
