"""Transactions: commit and rollback with hooks in reverse order, staged task records that
appear only on commit, nesting and commit modes, values, detached copies for workers,
SERIALIZABLE transactions, and idempotency of a keyed transaction across flow runs."""

from __future__ import annotations

import pickle
import threading

import pytest

from braid import errors
from braid.cache_policies import DEFAULT, CacheContext
from braid.caching import cache_plan, resolve_cache_options
from braid.locking.memory import MemoryLockManager
from braid.results import ResultStore
from braid.testing import cache_tasks as ct
from braid.transactions import (
    CommitMode,
    IsolationLevel,
    get_transaction,
    transaction,
    use_transaction,
)

pytestmark = pytest.mark.timeout(60)


def run_task(opts, txn, x, log, flow_run="f1", fail=False):
    """What the engine does for one task run inside ``txn``: plan, body, commit, stage."""
    ctx = CacheContext(ct.SQUARE, x, {"x": x}, flow_run_id=flow_run)
    plan = cache_plan(opts, ctx, transaction=txn)
    if plan.hit:
        return plan.value
    if fail:
        plan.abort()
        raise RuntimeError("task failed")
    log.append(("ran", x))
    staged = plan.commit(x * x)
    txn.stage_task_run(
        staged,
        on_commit=[lambda t: log.append(("commit", x))],
        on_rollback=[lambda t: log.append(("rollback", x, t.get("who")))],
    )
    return x * x


def test_keyed_transaction_commits_a_record_and_is_committed_next_time(tmp_path):
    store = ResultStore(result_storage=tmp_path)
    with transaction(key="job-1", store=store) as txn:
        assert txn.is_active() and get_transaction() is txn
    assert txn.is_committed() and store.exists("job-1")
    with transaction(key="job-1", store=store) as again:
        assert again.is_committed()
    assert get_transaction() is None
    with transaction(key="job-1", store=store, overwrite=True) as fresh:
        assert not fresh.is_committed()


def test_failure_rolls_back_staged_runs_in_reverse_order(tmp_path):
    opts = resolve_cache_options({"result_storage": tmp_path, "persist_result": True})
    log = []
    with pytest.raises(RuntimeError), transaction() as txn:
        txn.set("who", "me")
        run_task(opts, txn, 1, log)
        run_task(opts, txn, 2, log)
        assert list(ResultStore(result_storage=tmp_path).keys()) == []  # staged, not public
        run_task(opts, txn, 3, log, fail=True)
    assert txn.is_rolled_back()
    assert log == [("ran", 1), ("ran", 2), ("rollback", 2, "me"), ("rollback", 1, "me")]
    assert list(tmp_path.iterdir()) == []  # staged records deleted


def test_commit_publishes_records_and_runs_on_commit_hooks(tmp_path):
    opts = resolve_cache_options({"result_storage": tmp_path, "persist_result": True})
    log = []
    with transaction() as txn:
        run_task(opts, txn, 1, log)
        run_task(opts, txn, 2, log)
    assert log == [("ran", 1), ("ran", 2), ("commit", 1), ("commit", 2)]
    assert len(list(ResultStore(result_storage=tmp_path).keys())) == 2


def test_idempotent_keyed_transaction_does_not_run_its_tasks_again(tmp_path):
    opts = resolve_cache_options({"result_storage": tmp_path, "cache_policy": DEFAULT})
    store = ResultStore(result_storage=tmp_path / "txn")
    log = []
    for flow_run in ("run-1", "run-2"):
        with transaction(key="nightly", store=store) as txn:
            values = [run_task(opts, txn, x, log, flow_run=flow_run) for x in (1, 2)]
        assert values == [1, 4]
    assert [e for e in log if e[0] == "ran"] == [("ran", 1), ("ran", 2)]


def test_nested_lazy_commits_with_the_parent_and_a_failing_child_fails_it(tmp_path):
    store = ResultStore(result_storage=tmp_path)
    with transaction(key="outer", store=store) as outer:
        with transaction(key="inner", store=store) as inner:
            assert inner.get_parent() is outer
        assert not inner.is_committed() and not store.exists("inner")
    assert inner.is_committed() and outer.is_committed() and store.exists("inner")

    log = []
    with transaction() as outer2:
        outer2.stage(on_rollback_hooks=[lambda t: log.append("outer")])
        try:
            with transaction() as inner2:
                inner2.stage(on_rollback_hooks=[lambda t: log.append("inner")])
                raise ValueError("inner")
        except ValueError:
            pass
    assert inner2.is_rolled_back() and outer2.is_rolled_back()
    assert log == ["inner", "outer"]


def test_commit_modes(tmp_path):
    store = ResultStore(result_storage=tmp_path)
    with transaction(key="o", store=store):
        with transaction(key="eager", store=store, commit_mode=CommitMode.EAGER) as eager:
            pass
        assert eager.is_committed() and store.exists("eager")
    with transaction(key="off", store=store, commit_mode="OFF") as off:
        pass
    assert off.is_rolled_back() and not store.exists("off")


def test_values_are_copies_and_seen_by_children():
    with transaction() as outer:
        outer.set("items", [1])
        with transaction() as inner:
            items = inner.get("items")
            items.append(2)
            assert inner.get("items") == [1]
            assert inner.get("missing", 0) == 0
            with pytest.raises(ValueError):
                inner.get("missing")


def test_a_worker_gets_a_detached_copy(tmp_path):
    store = ResultStore(result_storage=tmp_path)
    with transaction(key="k", store=store) as txn:
        txn.set("a", 1)
        copy = pickle.loads(pickle.dumps(txn))
        assert copy.detached and copy.key == "k" and copy.get("a") == 1
        with pytest.raises(errors.TransactionError):
            copy.stage_task_run(None)
        with use_transaction(copy):
            assert get_transaction() is copy
        assert get_transaction() is txn
        with pytest.raises(errors.TransactionError):
            copy.__enter__()


def test_serializable_transactions_take_turns(tmp_path):
    store = ResultStore(result_storage=tmp_path, lock_manager=MemoryLockManager())
    with pytest.raises(errors.ConfigurationError):
        with transaction(
            key="x",
            store=ResultStore(result_storage=tmp_path),
            isolation_level=IsolationLevel.SERIALIZABLE,
        ):
            pass
    order, first_in = [], threading.Event()

    def body(name):
        with transaction(key="race", store=store, isolation_level="SERIALIZABLE") as txn:
            if name == "first":
                first_in.set()
                threading.Event().wait(0.1)
            order.append((name, txn.is_committed()))

    t1 = threading.Thread(target=body, args=("first",))
    t1.start()
    first_in.wait(5)
    t2 = threading.Thread(target=body, args=("second",))
    t2.start()
    t1.join(10)
    t2.join(10)
    assert order == [("first", False), ("second", True)]
    assert not MemoryLockManager().is_locked("race")


def test_a_task_run_staged_into_a_committed_transaction_writes_directly(tmp_path):
    store = ResultStore(result_storage=tmp_path / "t")
    with transaction(key="done", store=store):
        pass
    opts = resolve_cache_options({"result_storage": tmp_path / "r", "persist_result": True})
    with transaction(key="done", store=store) as txn:
        plan = cache_plan(opts, CacheContext(ct.SQUARE, 1, {"x": 5}), transaction=txn)
        assert plan.commit(25) is None
    assert len(list(ResultStore(result_storage=tmp_path / "r").keys())) == 1
