"""Concurrency and rate limits in one process (threads, asyncio) and across a process pool
(the parent's coordinator), with real spawned processes; tag limits for the run table."""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest

from braid import errors
from braid.concurrency import (
    ENV_VAR,
    Limit,
    LimitsCoordinator,
    LimitTable,
    LocalLimits,
    TagGate,
    acquire_for_tags,
    declare_limits,
    declared_limits,
    limited_tags,
    parse_limits,
    try_acquire_for_tags,
    use_limits,
)
from braid.concurrency import asyncio as aconc
from braid.concurrency.sync import concurrency, rate_limit
from braid.testing import limit_tasks as lt

pytestmark = pytest.mark.timeout(60)
#: clock resolution: grants are timed by time.time() in different processes
CLOCK = 0.001
EPS = 0.02  # clock granularity allowed on lower bounds


@pytest.fixture(autouse=True)
def no_leaked_limit_threads():
    """Every limits thread a test starts has ended when it returns."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while True:
        left = [
            t.name
            for t in threading.enumerate()
            if t not in before and t.is_alive() and t.name.startswith("braid-limits")
        ]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not left, f"limits threads left behind: {left}"


@pytest.fixture
def local():
    backend = LocalLimits()
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def pool():
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as executor:
        list(executor.map(time.sleep, [0.05] * 8))  # start every worker before timing
        yield executor


# -- declaring ----------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [(-1,), (1.5,), (True,), ("2",), (2, -1.0), (2, float("inf"))])
def test_bad_limits_are_named_errors(args):
    with pytest.raises(errors.InvalidLimit):
        Limit(*args)


def test_limit_is_a_picklable_value():
    limit = Limit(5, slot_decay_per_second=1)
    assert pickle.loads(pickle.dumps(limit)) == limit == Limit(5, 1.0)
    assert hash(limit) == hash(Limit(5, 1.0)) and limit != Limit(5)
    assert repr(limit) == "Limit(5, slot_decay_per_second=1.0)"
    with pytest.raises(AttributeError):
        limit.limit = 3


def test_spec_of_environment_and_command_line():
    assert parse_limits(" db=2, api=5/1.0 ,,") == {"db": Limit(2), "api": Limit(5, 1.0)}
    for bad in ("db", "db=x", "=2", "db=2/x", "db=-1", "db=2,db=3"):
        with pytest.raises(errors.ConfigurationError, match="BRAID_CONCURRENCY_LIMITS"):
            parse_limits(bad)


def test_environment_variable_is_the_outermost_layer(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "db=2")
    assert declared_limits() == {"db": Limit(2)}
    with declare_limits({"api": Limit(1, 2.0)}) as table:
        assert table == declared_limits() == {"db": Limit(2), "api": Limit(1, 2.0)}
    monkeypatch.setenv(ENV_VAR, "db=nope")
    with pytest.raises(errors.InvalidLimit):
        declared_limits()


def test_nested_declarations_add_names_and_refuse_a_different_value():
    with declare_limits({"db": 2}):
        with declare_limits({"db": Limit(2), "api": 3}):
            assert declared_limits() == {"db": Limit(2), "api": Limit(3)}
        with pytest.raises(errors.LimitRedeclared, match="'db'"):
            with declare_limits({"db": 3}):
                pass
        assert declared_limits() == {"db": Limit(2)}
    assert "db" not in declared_limits()
    with pytest.raises(errors.InvalidLimit):
        LimitTable({"db": "2"})


def test_undeclared_name_does_not_limit_unless_strict():
    with concurrency("nowhere"), concurrency("nowhere"):
        rate_limit("nowhere")
    with pytest.raises(errors.UndeclaredLimit) as info:
        with concurrency(["nowhere"], strict=True):
            pass
    message = str(info.value)
    assert "concurrency_limits" in message and ENV_VAR in message and "--limit" in message
    with pytest.raises(errors.UndeclaredLimit):
        rate_limit("nowhere", strict=True)


def test_requests_that_could_never_be_granted():
    with declare_limits({"db": 2, "off": 0}):
        with pytest.raises(errors.SlotsExceedLimit):
            with concurrency("db", occupy=3):
                pass
        with pytest.raises(errors.SlotsExceedLimit):
            with concurrency("off"):
                pass
        with pytest.raises(errors.RateLimitWithoutDecay, match="slot_decay_per_second"):
            rate_limit("db")
        with pytest.raises(errors.InvalidLimit):
            with concurrency("db", occupy=0):
                pass


# -- threads ----------------------------------------------------------------------------------
def test_peak_concurrency_of_threads_is_the_limit(local):
    handle = local.handle(LimitTable({"db": 2}))
    with ThreadPoolExecutor(4) as executor:
        spans = list(executor.map(lambda _: lt.hold(handle, "db", 0.05), range(12)))
    assert lt.peak(spans) == 2


def test_occupy_takes_several_slots(local):
    handle = local.handle(LimitTable({"db": 3}))
    with ThreadPoolExecutor(4) as executor:
        spans = list(executor.map(lambda _: lt.hold(handle, "db", 0.05, occupy=2), range(6)))
    assert lt.peak(spans) == 1


def test_timeout_is_a_named_timeout_error_and_leaves_nothing_held(local):
    with use_limits(local.handle(LimitTable({"a": 1, "b": 1}))):
        with concurrency("b"):
            started = time.monotonic()
            with pytest.raises(errors.ConcurrencyTimeout) as info:
                with concurrency(["a", "b"], timeout_seconds=0.2):
                    pass
            assert isinstance(info.value, TimeoutError)
            assert time.monotonic() - started >= 0.2 - EPS
            with concurrency("a", timeout_seconds=0):  # "a" was given back
                pass


def test_slots_come_back_on_an_exception(local):
    with use_limits(local.handle(LimitTable({"db": 1}))):
        with pytest.raises(ZeroDivisionError), concurrency("db"):
            raise ZeroDivisionError
        with concurrency("db", timeout_seconds=0):
            pass


def test_without_a_handle_limits_are_this_process(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "envdb=1")
    with concurrency("envdb"):
        with pytest.raises(errors.ConcurrencyTimeout):
            with concurrency("envdb", timeout_seconds=0):
                pass


def test_rate_limit_spaces_calls(local):
    with use_limits(local.handle(LimitTable({"api": Limit(1, 10.0), "burst": Limit(3, 5.0)}))):
        # a grant lies inside its call: from before the first call to after the last one
        # is at least the time between their grants, whatever the machine's load
        first = time.monotonic()
        for _ in range(5):
            rate_limit("api")
        assert time.monotonic() - first >= 4 * 0.1 - CLOCK  # 5 grants, 0.1 s apart
        started = time.monotonic()
        for _ in range(3):  # the bucket holds 3: no wait
            rate_limit("burst")
        rate_limit("burst")  # waits until the first of them has decayed (1 / 5 s)
        assert time.monotonic() - started >= 0.2 - CLOCK


def test_rate_limit_timeout_raises_without_waiting_it_out(local):
    with use_limits(local.handle(LimitTable({"api": Limit(1, 0.5)}))):
        rate_limit("api")
        with pytest.raises(errors.ConcurrencyTimeout):
            rate_limit("api", timeout_seconds=0.1)


def test_a_name_in_use_cannot_change_its_limit(local):
    with use_limits(local.handle(LimitTable({"db": 1}))), concurrency("db"):
        with use_limits(local.handle(LimitTable({"db": 2}))):
            with pytest.raises(errors.LimitRedeclared):
                with concurrency("db"):
                    pass
    with use_limits(local.handle(LimitTable({"db": 2}))), concurrency("db"):
        pass  # idle: the new value is adopted


# -- asyncio ----------------------------------------------------------------------------------
def test_async_concurrency_and_rate_limit(local):
    async def holder(spans):
        async with aconc.concurrency("db"):
            start = time.time()
            await asyncio.sleep(0.05)
            spans.append((start, time.time()))

    async def main():
        spans = []
        await asyncio.gather(*(holder(spans) for _ in range(6)))
        assert lt.peak(spans) == 2
        async with aconc.concurrency("db", occupy=2):
            with pytest.raises(errors.ConcurrencyTimeout):
                async with aconc.concurrency("db", timeout_seconds=0.1):
                    pass
        started = time.monotonic()
        for _ in range(3):
            await aconc.rate_limit("api")
        assert time.monotonic() - started >= 2 * 0.1 - EPS
        with pytest.raises(errors.UndeclaredLimit):
            await aconc.rate_limit("nowhere", strict=True)

    with use_limits(local.handle(LimitTable({"db": 2, "api": Limit(1, 10.0)}))):
        asyncio.run(main())


# -- processes --------------------------------------------------------------------------------
def test_peak_concurrency_across_processes_is_the_limit(pool):
    with LimitsCoordinator() as coordinator:
        handle = coordinator.handle(LimitTable({"db": 2}))
        futures = [pool.submit(lt.hold, handle, "db", 0.1) for _ in range(12)]
        with use_limits(handle):  # the parent takes slots of the same limit
            spans = [lt.hold(handle, "db", 0.1)]
        spans += [f.result() for f in futures]
    assert lt.peak(spans) == 2


def test_rate_limit_across_processes(pool):
    with LimitsCoordinator() as coordinator:
        handle = coordinator.handle(LimitTable({"api": Limit(1, 10.0)}))
        futures = [pool.submit(lt.rate_times, handle, "api", 3) for _ in range(2)]
        spans = [f.result() for f in futures]
    assert lt.granted_span(spans) >= 5 * 0.1 - CLOCK  # 6 grants, 0.1 s apart


def test_a_killed_worker_process_gives_its_slot_back(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    with LimitsCoordinator() as coordinator:
        handle = coordinator.handle(LimitTable({"db": 1}))
        flag = tmp_path / "holding"
        victim = ctx.Process(target=lt.hold_until_killed, args=(handle, "db", str(flag)))
        victim.start()
        try:
            deadline = time.monotonic() + 30
            while not flag.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            with use_limits(handle):
                with pytest.raises(errors.ConcurrencyTimeout):
                    with concurrency("db", timeout_seconds=0.1):
                        pass
                victim.kill()
                with concurrency("db", timeout_seconds=10):
                    pass
        finally:
            victim.kill()
            victim.join()
        suicide = ctx.Process(target=lt.hold_then_die, args=(handle, "db"))
        suicide.start()
        suicide.join()
        assert suicide.exitcode == -9
        with use_limits(handle), concurrency("db", timeout_seconds=10):
            pass


def test_coordinator_refuses_strangers_and_closes_cleanly():
    coordinator = LimitsCoordinator()
    address, _ = coordinator.handle().key
    stranger = type(coordinator.handle())("processes", (address, b"wrong key"))
    with pytest.raises(errors.LimitsUnavailable):
        stranger.backend().acquire("db", Limit(1), 1, 0)
    coordinator.close()
    with pytest.raises(errors.LimitsUnavailable):
        coordinator.acquire("db", Limit(1), 1, 0)


def test_a_local_handle_does_not_travel(local, pool):
    with pytest.raises(errors.LimitsUnavailable, match="only in the process"):
        pool.submit(lt.hold, local.handle(LimitTable({"db": 1})), "db", 0).result()


# -- tag limits -------------------------------------------------------------------------------
def test_tag_limits_for_the_run_table(local):
    handle = local.handle(LimitTable({"db": 1, "api": 2}))
    assert limited_tags(["x", "db", "api"], handle) == ("api", "db")
    assert acquire_for_tags(["x"], handle) is None
    assert try_acquire_for_tags(["x"], handle).names == ()
    first = try_acquire_for_tags(["db", "api"], handle)
    assert first.names == ("tag:api", "tag:db")
    assert try_acquire_for_tags(["db"], handle) is None
    with pytest.raises(errors.ConcurrencyTimeout):
        acquire_for_tags(["db"], handle, timeout=0.05)
    with use_limits(handle), concurrency("db", timeout_seconds=0):
        pass  # tag slots are counted apart from concurrency() slots of the name

    granted = threading.Event()
    leases = []
    with TagGate(handle) as gate:
        gate.when_available(["x"], leases.append)
        assert leases == [None]
        waiter = gate.when_available(["db"], lambda lease: (leases.append(lease), granted.set()))
        withdrawn = gate.when_available(["db"], leases.append)
        assert withdrawn.cancel() and waiter.waiting
        first.release()
        assert granted.wait(10)
        assert not waiter.cancel() and leases[1].names == ("tag:db",)
        leases[1].release()
    assert len(leases) == 2
    with pytest.raises(errors.SlotsExceedLimit):
        acquire_for_tags(["off"], local.handle(LimitTable({"off": 0})))


def test_tag_gate_over_processes_holds_no_worker(pool):
    with LimitsCoordinator() as coordinator:
        handle = coordinator.handle(LimitTable({"db": 1}))
        spans, done = [], threading.Semaphore(0)

        def run(lease):
            future = pool.submit(time.time)  # a "worker" is used only once the slot is held
            future.add_done_callback(
                lambda f: (spans.append(f.result()), lease.release(), done.release())
            )

        with TagGate(handle) as gate:
            for _ in range(4):
                gate.when_available(["db"], run)
            for _ in range(4):
                assert done.acquire(timeout=30)
    assert len(spans) == 4
