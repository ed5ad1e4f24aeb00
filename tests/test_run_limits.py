"""The run table's tag limits (braid.core.limited.RunLimits) on in-process backends: an
uncontended slot is granted in the sending thread, a waiting run is never overtaken, and
every slot comes back once."""

from __future__ import annotations

import threading
import time

import pytest

from braid import errors
from braid.concurrency import LimitsCoordinator, LimitTable
from braid.core.limited import RunLimits

pytestmark = pytest.mark.timeout(60)


class _OnCoordinator:
    """A runner whose limits live in a process coordinator (as ProcessPoolTaskRunner's)."""

    def limits_backend(self) -> LimitsCoordinator:
        return LimitsCoordinator()


@pytest.fixture(params=["local", "coordinator"])
def limits(request):
    runner = object() if request.param == "local" else _OnCoordinator()
    run_limits = RunLimits(runner, LimitTable({"db": 1, "api": 3}))
    yield run_limits
    run_limits.close()


class _Run(str):
    """A run as ``RunLimits`` sees it here: hashable, named, and where its in-process slots
    are kept (``held``); equal to its name, so the order of grants reads as names."""

    held: object = None


def _runs(*names: str) -> list[_Run]:
    return [_Run(name) for name in names]


def _gate_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "braid-limits-gate"]


def _wait_until(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_an_uncontended_slot_is_granted_in_the_sending_thread(limits):
    a, b = _runs("a", "b")
    granted: list[tuple[str, threading.Thread]] = []
    tags = limits.limited(frozenset({"db", "api", "other"}))
    assert tags == ("api", "db") and limits.limited(frozenset()) == ()
    limits.when_available(a, tags, lambda run: granted.append((run, threading.current_thread())))
    assert granted == [("a", threading.current_thread())]
    assert not _gate_threads()
    limits.release(a)
    limits.when_available(b, tags, lambda run: granted.append((run, threading.current_thread())))
    assert [run for run, _ in granted] == ["a", "b"]  # the slot of "db" came back
    limits.release(b)


def test_waiting_runs_are_granted_in_arrival_order_and_never_overtaken(limits):
    a, b, c = _runs("a", "b", "c")
    order: list[str] = []
    lock = threading.Lock()

    def then(run: str) -> None:
        with lock:
            order.append(run)

    tags = limits.limited(frozenset({"db"}))
    limits.when_available(a, tags, then)  # holds the only slot
    limits.when_available(b, tags, then)  # waits in the gate
    assert order == ["a"]
    limits.release(a)
    # "c" is sent while "b" may still be waiting: it must not take the slot before "b"
    limits.when_available(c, tags, then)
    assert _wait_until(lambda: order[:2] == ["a", "b"])
    time.sleep(0.05)
    assert order == ["a", "b"]  # "c" waits while "b" holds the slot
    limits.release(b)
    assert _wait_until(lambda: order == ["a", "b", "c"])
    limits.release(c)
    assert _wait_until(lambda: not _gate_threads())


def test_a_slot_comes_back_once_however_often_released(limits):
    a, b, c, never_held = _runs("a", "b", "c", "never-held")
    order: list[str] = []
    tags = limits.limited(frozenset({"db"}))
    limits.when_available(a, tags, order.append)
    limits.release(a)
    limits.release(a)  # a second release (a retry's and the end's) gives nothing back
    limits.release(never_held)
    limits.when_available(b, tags, order.append)
    limits.when_available(c, tags, order.append)  # the limit is still 1: "c" waits
    time.sleep(0.05)
    assert order == ["a", "b"]
    limits.release(b)
    assert _wait_until(lambda: order == ["a", "b", "c"])
    limits.release(c)


def test_close_gives_back_the_gates_leases_and_cancels_waiters(limits):
    a, b, c = _runs("a", "b", "c")
    order: list[str] = []
    tags = limits.limited(frozenset({"db"}))
    limits.when_available(a, tags, order.append)  # a free slot, kept on the run
    limits.when_available(b, tags, order.append)  # waits in the gate
    limits.when_available(c, tags, order.append)  # waits behind "b"
    assert a.held is not None and limits.leases == {}
    limits.release(a)  # "b" gets the slot from the gate: a lease the table keeps
    assert _wait_until(lambda: order == ["a", "b"])
    lease = limits.leases[b]
    assert lease.names == ("tag:db",)
    limits.close()
    assert order == ["a", "b"] and limits.leases == {}  # "c" was cancelled
    assert lease.names == ()  # given back
    assert not _gate_threads()


def test_a_limit_of_zero_fails_the_run_when_sent():
    limits = RunLimits(object(), LimitTable({"off": 0}))
    try:
        with pytest.raises(errors.SlotsExceedLimit):
            limits.when_available(_Run("a"), limits.limited(frozenset({"off"})), print)
    finally:
        limits.close()


def test_a_task_run_in_this_process_finds_its_flow_runs_limits_without_a_handle():
    """The limits of a flow run on an in-process runner are registered by flow run, so a
    task run here finds them where its call carries no handle (``handle`` is None:
    nothing needs to travel)."""
    import contextvars

    from braid import ThreadPoolTaskRunner, flow, task
    from braid.concurrency import Limit, current_backend, current_handle, declared_limits
    from braid.concurrency import limits as limits_module
    from braid.core.context import current_run

    @task
    def look() -> tuple[dict, bool]:
        run = current_run.get()

        def without_a_handle() -> tuple[dict, bool]:
            current_run.set(run)  # a fresh context: the task run's, and nothing else
            handle = current_handle()
            return dict(declared_limits()), current_backend() is handle.backend()

        return contextvars.Context().run(without_a_handle)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2), concurrency_limits={"db": 2})
    def body() -> tuple[dict, bool]:
        return look.submit().result()

    assert body() == ({"db": Limit(2)}, True)
    assert limits_module._run_limits == {}  # forgotten when the flow run ends
    on_threads = RunLimits(ThreadPoolTaskRunner(max_workers=1), LimitTable({"db": 1}))
    assert on_threads.handle is None  # tasks run here: calls need not carry a handle
    on_threads.close()


def test_a_flow_called_in_a_task_on_threads_sees_the_callers_limits(tmp_path):
    from braid import ThreadPoolTaskRunner, flow, task
    from braid.concurrency import Limit, declared_limits
    from braid.concurrency.sync import concurrency
    from braid.testing import limited_tasks as lt

    @task
    def guarded() -> dict:
        with concurrency("db", strict=True):  # declared by the outer flow
            return dict(declared_limits())

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2), concurrency_limits={"api": 3})
    def inner() -> tuple[dict, list[int]]:
        spans = lt.tagged_span.map(str(tmp_path), range(4), 0.1)
        return guarded.submit().result(), spans.result()

    @task
    def calls_a_flow() -> tuple[dict, list[int]]:
        return inner()

    limits = {"db": 2, lt.TAG: 1}

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2), concurrency_limits=limits)
    def outer() -> tuple[dict, list[int]]:
        return calls_a_flow.submit().result()

    table, done = outer()
    assert table == {"db": Limit(2), lt.TAG: Limit(1), "api": Limit(3)}
    assert done == [0, 1, 2, 3] and lt.peak(str(tmp_path)) == 1


def test_a_handle_pickles_as_plain_data_and_unpickles_once_per_value():
    import pickle

    from braid.concurrency import Limit, LocalLimits

    backend = LocalLimits()
    try:
        handle = backend.handle(LimitTable({"db": 2, "api": Limit(5, 1.0)}))
        data = pickle.dumps(handle)
        assert b"LimitTable" not in data  # the table travels as plain data
        again = pickle.loads(data)
        assert again == handle and again.limits == handle.limits
        assert pickle.loads(pickle.dumps(handle)) is again  # one object per value here
        other = backend.handle(LimitTable({"db": 3}))
        assert pickle.loads(pickle.dumps(other)) == other != again
    finally:
        backend.close()


def test_a_process_worker_started_after_a_death_still_finds_the_flows_limits(tmp_path):
    # a process pool hands each worker the flow run's limits once, not with every call:
    # the worker that replaces a dead one must get them too (strict=True fails otherwise)
    from braid import ProcessPoolTaskRunner, flow
    from braid.testing import limited_tasks as lt

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1), concurrency_limits={lt.NAME: 1})
    def body() -> tuple[str, list[int]]:
        first = lt.guarded_span.submit(str(tmp_path), 0, 0.0)
        first.wait()
        died = lt.exit_worker.submit()
        died.wait()
        return died.state.name, lt.guarded_span.map(str(tmp_path), [1, 2], 0.0).result()

    name, values = body()
    assert name == "Crashed"
    assert values == [1, 2]


@pytest.mark.parametrize("how", ["tags() block", "with_options"])
def test_tags_given_to_a_run_and_not_its_task_are_limited_too(tmp_path, how):
    from braid import ThreadPoolTaskRunner, flow, tags
    from braid.testing import limited_tasks as lt

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=4), concurrency_limits={lt.TAG: 1})
    def body() -> list[int]:
        if how == "with_options":
            tagged = lt.untagged_span.with_options(tags=[lt.TAG])
            first = [tagged.submit(str(tmp_path), i, 0.1) for i in range(3)]
        else:
            with tags(lt.TAG):
                first = [lt.untagged_span.submit(str(tmp_path), i, 0.1) for i in range(3)]
        free = [lt.untagged_span.submit(str(tmp_path), i, 0.0) for i in range(3, 5)]
        return [f.result() for f in first + free]

    assert body() == [0, 1, 2, 3, 4]
    spans = sorted(
        tuple(map(float, p.read_text().split())) for p in tmp_path.iterdir() if p.name < "u3"
    )
    assert len(spans) == 3
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))  # one at a time


def test_free_slots_given_back_without_the_lock_are_never_lost_nor_overdrawn():
    # threads take and give back free slots while another thread waits for the same name
    # through acquire(): at no time more than the limit is held, the waiter is never
    # stranded, and everything is given back at the end
    from braid.concurrency import Limit, LocalLimits

    backend, limit = LocalLimits(), Limit(2)
    slots = backend.slots([("n", limit)])
    inside, peak, stranded = [0], [0], []
    count_lock = threading.Lock()

    def hold() -> None:
        with count_lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        time.sleep(0)  # let the others run while this one holds its slot
        with count_lock:
            inside[0] -= 1

    def taker() -> None:
        for _ in range(3000):
            if slots.take():
                hold()
                slots.release()

    def waiter() -> None:
        for _ in range(200):
            token = backend.acquire("n", limit, 1, 10.0)
            if token is None:
                stranded.append(1)
                return
            hold()
            backend.release("n", token)

    threads = [threading.Thread(target=taker) for _ in range(3)]
    threads.append(threading.Thread(target=waiter))
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert not stranded and peak[0] == 2
    assert slots.take() and slots.take() and not slots.take()  # both slots came back
    slots.release()
    slots.release()
    backend.close()
