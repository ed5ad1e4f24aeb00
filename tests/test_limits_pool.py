"""Slots taken and given back without the lock (``braid.concurrency.local.SlotPool``): the
free path shares one exact count with ``acquire()``, the run table's inline path and the
tag gate, so no slot is ever lost or doubled and no waiter is stranded."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from types import SimpleNamespace

import pytest

from braid import errors
from braid.concurrency import Limit, LimitTable, LocalLimits
from braid.core.limited import RunLimits

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _switch_often():
    """Switch threads every few bytecodes, so that a step between two atomic ones (the
    window a lost or doubled slot would need) is hit often."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


class Inside:
    """Counts the slots of a name held at once and remembers the most there were."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def hold(self, slots: int = 1) -> None:
        with self._lock:
            self.now += slots
            self.peak = max(self.peak, self.now)
        time.sleep(0)  # let the others run while this one holds its slots
        with self._lock:
            self.now -= slots


def _run_all(*targets: Callable[[], None]) -> None:
    """Run each target in its own thread, all of them started before any begins."""
    start = threading.Barrier(len(targets))

    def begin(target: Callable[[], None]) -> None:
        start.wait()
        target()

    threads = [threading.Thread(target=begin, args=(target,)) for target in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(100)
    assert not any(t.is_alive() for t in threads)


def _free_count(backend: LocalLimits, name: str, limit: Limit) -> int:
    """How many slots of ``name`` can be held at once now (each taken, then all given back)."""
    tokens = []
    while (token := backend.acquire(name, limit, 1, 0)) is not None:
        tokens.append(token)
    for token in tokens:
        backend.release(name, token)
    return len(tokens)


@pytest.mark.parametrize("limit", [1, 3, 40])
def test_free_path_and_acquire_share_one_exact_count(limit):
    # takers pop from the pool (and refill it under the lock when it runs dry) while
    # other threads wait in acquire() for the same name, one slot or several at a time
    # (a free take yields to them: it takes only while no one waits)
    backend, declared = LocalLimits(), Limit(limit)
    slots = backend.slots([("n", declared)])
    inside, stranded, finished = Inside(), [], []

    pool = slots.pool
    assert pool is not None

    def pop() -> bool:  # the pool's contract: any pop may race any settle under the lock
        try:
            pool.pop()
        except IndexError:
            return False
        return True

    def taker(take: Callable[[], bool]) -> None:
        taken = 0
        while taken < 500 or len(finished) < 3:  # until every waiter is done
            if take():
                inside.hold()
                taken += 1
                slots.release()
            else:
                time.sleep(0)  # refused: let the holders and waiters on

    def waiter(occupy: int) -> None:
        for _ in range(150):
            token = backend.acquire("n", declared, occupy, 30.0)
            if token is None:
                stranded.append(occupy)
                break
            inside.hold(occupy)
            backend.release("n", token)
            time.sleep(0)  # a moment without a waiter: the takers take
        finished.append(occupy)

    _run_all(
        *[partial(taker, slots.take)] * 3,
        *[partial(taker, pop)] * 2,  # pops even while someone waits
        *[partial(waiter, 1)] * 2,
        partial(waiter, limit),  # needs every slot
    )
    assert not stranded
    assert inside.peak == limit
    assert _free_count(backend, "n", declared) == limit  # none lost, none doubled
    backend.close()


class _Task:
    """What the run table reads of a task: its tags (hashed by identity, as a task is)."""

    tags = frozenset({"db"})


class _Run:
    """What the run table reads of a run: its call's task and extra options (none), and
    where it keeps the slots it takes in this process."""

    def __init__(self, task: _Task) -> None:
        self.call = SimpleNamespace(extra=None, task=task)
        self.held: object = None  # the in-process slots it holds


def test_the_run_tables_inline_path_acquire_and_the_gate_share_one_exact_count():
    # runs admitted and released by RunLimits (its pop and append written out), runs that
    # wait in its gate, and concurrency-style acquire() calls on the same tag slots
    limit = 4
    limits = RunLimits(object(), LimitTable({"db": limit}))
    task = _Task()
    backend, name, declared = limits.backend, "tag:db", Limit(limit)
    inside, stranded = Inside(), []
    done = threading.Semaphore(0)

    def admitted(run: object) -> None:
        inside.hold()
        limits.release(run)
        limits.release(run)  # a second release gives nothing back
        done.release()

    def sender() -> None:
        for _ in range(2000):
            run = _Run(task)
            wait = limits.admit(run)
            if wait:
                limits.when_available(run, wait, admitted)  # granted by the gate later
            else:
                admitted(run)

    def acquirer(occupy: int) -> None:
        for _ in range(200):
            token = backend.acquire(name, declared, occupy, 30.0)
            if token is None:
                stranded.append(occupy)
                return
            inside.hold(occupy)
            backend.release(name, token)

    _run_all(*[sender] * 4, partial(acquirer, 1), partial(acquirer, limit))  # all slots
    for _ in range(4 * 2000):  # every run got its slot, at once or from the gate
        assert done.acquire(timeout=60)
    assert not stranded and inside.peak == limit and limits.leases == {}
    assert _free_count(backend, name, declared) == limit
    limits.close()


def test_several_names_taken_together_and_one_at_a_time_keep_both_counts():
    backend, one, two = LocalLimits(), Limit(2), Limit(3)
    both = backend.slots([("a", one), ("b", two)])
    only_a, only_b = backend.slots([("a", one)]), backend.slots([("b", two)])
    inside_a, inside_b = Inside(), Inside()

    def loop(slots, counters) -> None:
        for _ in range(3000):
            if slots.take():
                for inside in counters:
                    inside.hold()
                slots.release()

    _run_all(
        *[partial(loop, both, [inside_a, inside_b])] * 2,
        partial(loop, only_a, [inside_a]),
        *[partial(loop, only_b, [inside_b])] * 2,
    )
    assert inside_a.peak <= 2 and inside_b.peak <= 3
    assert _free_count(backend, "a", one) == 2 and _free_count(backend, "b", two) == 3
    backend.close()


def test_slots_put_in_the_pool_ahead_never_keep_acquire_waiting():
    # the first free take counts several slots out of the limit at once (for the next
    # takes): acquire() still sees every one of them that no one holds
    backend, declared = LocalLimits(), Limit(5)
    slots = backend.slots([("n", declared)])
    assert slots.take()  # one held, the other four free in the pool
    token = backend.acquire("n", declared, 4, 0)
    assert token is not None
    assert backend.acquire("n", declared, 1, 0) is None and not slots.take()
    backend.release("n", token)
    slots.release()
    assert _free_count(backend, "n", declared) == 5
    backend.close()


@pytest.mark.timeout(30)  # a waiter no one wakes waits forever (no timeout below)
@pytest.mark.parametrize("how", ["free slots", "run table"])
def test_a_slot_given_back_without_the_lock_wakes_a_waiter(how):
    declared = Limit(1)
    if how == "free slots":
        backend, name = LocalLimits(), "n"
        slots = backend.slots([(name, declared)])
        assert slots.take()
        give_back, close = slots.release, backend.close
    else:  # RunLimits.release: the pool's release written out
        limits = RunLimits(object(), LimitTable({"db": 1}))
        backend, name, run = limits.backend, "tag:db", _Run(_Task())
        assert limits.admit(run) == ()
        slots = backend.slots([(name, declared)])
        give_back, close = partial(limits.release, run), limits.close
    tokens = []
    waiter = threading.Thread(
        target=lambda: tokens.append(backend.acquire(name, declared, 1, None))
    )
    waiter.start()
    while slots.pool is not None and not slots.pool.waiting:
        time.sleep(0.001)
    give_back()  # someone waits: it wakes them under the lock
    waiter.join()
    assert tokens and tokens[0] is not None
    backend.release(name, tokens[0])
    assert _free_count(backend, name, declared) == 1
    close()


def test_a_name_free_in_its_pool_is_idle_and_may_be_declared_anew():
    backend = LocalLimits()
    slots = backend.slots([("n", Limit(5))])
    assert slots.take()
    with pytest.raises(errors.LimitRedeclared):
        backend.slots([("n", Limit(2))])
    slots.release()  # every slot free again, most of them in the pool
    again = backend.slots([("n", Limit(2))])
    assert again.take() and again.take() and not again.take()
    again.release()
    again.release()
    backend.close()


def test_after_close_no_slot_is_taken_even_one_given_back_without_the_lock():
    backend, declared = LocalLimits(), Limit(3)
    slots = backend.slots([("n", declared)])
    assert slots.take()
    backend.close()
    assert not slots.take()
    slots.release()
    assert not slots.take()
    with pytest.raises(errors.LimitsUnavailable):
        backend.acquire("n", declared, 1, 0)
