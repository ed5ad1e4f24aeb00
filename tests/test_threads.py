"""ThreadPoolTaskRunner specifics: bounded pool, hard cap, no deadlock, clean exit."""

from __future__ import annotations

import threading
import time

import pytest

from braid import ThreadPoolTaskRunner, errors, flow, task
from braid.testing import sample_tasks as st

_gauge_lock = threading.Lock()
_gauge = {"now": 0, "peak": 0}


@task
def measured(seconds):
    with _gauge_lock:
        _gauge["now"] += 1
        _gauge["peak"] = max(_gauge["peak"], _gauge["now"])
    time.sleep(seconds)
    with _gauge_lock:
        _gauge["now"] -= 1
    return seconds


@task
def measured_parent(n):
    """Runs measured children and waits for them while holding no slot."""
    with _gauge_lock:
        _gauge["now"] += 1
        _gauge["peak"] = max(_gauge["peak"], _gauge["now"])
    try:
        time.sleep(0.01)
    finally:
        with _gauge_lock:
            _gauge["now"] -= 1
    children = measured.map([0.01] * n)
    return sum(children.result())


def _reset_gauge():
    _gauge.update(now=0, peak=0)


@pytest.mark.parametrize("max_workers", [1, 2, 3])
def test_max_workers_is_a_hard_cap(max_workers):
    _reset_gauge()

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=max_workers))
    def many():
        return measured.map([0.02] * 12).result()

    assert len(many()) == 12
    assert _gauge["peak"] == max_workers


def test_hard_cap_holds_with_blocked_parents():
    _reset_gauge()

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def nested():
        return measured_parent.map([3, 3, 3, 3]).result()

    assert nested() == [pytest.approx(0.03)] * 4
    assert _gauge["peak"] <= 2


def test_fifty_long_chain_on_one_worker():
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def chain():
        f = st.inc.submit(0)
        for _ in range(49):
            f = st.inc.submit(f)
        return f.result()

    assert chain() == 50


def test_nested_submission_on_one_worker_deep():
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def deep():
        return st.nested_depth.submit(20).result()

    assert deep() == 20


def test_waiting_task_does_not_occupy_a_worker():
    """A task whose upstream is slow is not handed to the pool, so others use the worker."""
    order = []

    @task
    def record(x):
        order.append(x)
        return x

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def f():
        slow = st.sleep_then.submit("slow", 0.5)
        waiting = [record.submit(slow) for _ in range(3)]
        free = record.map(["free"] * 3)
        return [w.result() for w in waiting], free.result()

    assert f() == (["slow"] * 3, ["free"] * 3)
    assert order == ["free"] * 3 + ["slow"] * 3


def test_bad_max_workers_is_refused():
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(errors.ConfigurationError, match="max_workers"):
            ThreadPoolTaskRunner(max_workers=bad)


def test_submit_on_unstarted_runner():
    runner = ThreadPoolTaskRunner()
    from braid.core.engine import TaskCall

    call = TaskCall(st.noop, (), {}, None, False, 1, None, None)
    with pytest.raises(errors.RunnerNotStarted, match="with runner"):
        runner.submit(call, [])


def test_runner_cannot_be_entered_twice():
    runner = ThreadPoolTaskRunner()
    with runner, pytest.raises(errors.ConfigurationError, match="duplicate"):
        runner.__enter__()


def test_exit_joins_every_thread():
    runner = ThreadPoolTaskRunner(max_workers=3)

    @flow(task_runner=runner)
    def f():
        return st.sleep_then.map(range(6), 0.01).result()

    before = {t for t in threading.enumerate()}
    f()
    leftover = [t for t in threading.enumerate() if t not in before]
    assert leftover == []


def test_default_runner_is_bounded_like_the_standard_pool():
    import os

    assert ThreadPoolTaskRunner().max_workers == min(32, (os.cpu_count() or 1) + 4)


def test_timed_out_parent_waiting_on_child_keeps_the_cap():
    """A task timing out while its helper waits on a child must not free a second slot."""
    _reset_gauge()

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def f():
        parent = st.waits_on_child.submit(1.0)
        parent.wait(timeout=30)
        others = measured.map([0.05] * 3)
        return parent.state.name, others.result()

    name, others = f()
    assert name == "TimedOut"
    assert others == [0.05] * 3
    assert _gauge["peak"] == 1


def test_done_callback_may_submit_and_wait_outside_a_flow():
    seen = []
    first = st.identity.submit(1)
    first.add_done_callback(lambda _f: seen.append(st.inc.submit(1).result(timeout=30)))
    first.wait()
    deadline = time.monotonic() + 30
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == [2]


def test_timed_out_waits_leave_no_callbacks_behind():
    from braid import as_completed, errors, wait

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def f():
        slow = st.sleep_then.submit(1, 1.0)
        for _ in range(3):
            wait([slow], timeout=0.01)
            try:
                list(as_completed([slow], timeout=0.01))
            except errors.WaitTimeout:
                pass
        left = list(slow._callbacks or ())
        slow.wait()
        return len(left)

    assert f() == 0
