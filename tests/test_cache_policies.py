"""Cache policies and keys: Prefect's policies and composition, stable hashing across
processes, NumPy by buffer, named errors for inputs that cannot be hashed, and the
option rules that decide when a task persists."""

from __future__ import annotations

import datetime as dt
import sqlite3
import subprocess
import sys
import threading

import pytest

from braid import errors
from braid.cache_policies import (
    DEFAULT,
    FLOW_PARAMETERS,
    INPUTS,
    NO_CACHE,
    RUN_ID,
    TASK_SOURCE,
    CacheContext,
    CacheKeyFnPolicy,
    CompoundCachePolicy,
    Inputs,
    RunId,
    TaskSource,
    hash_objects,
    task_input_hash,
)
from braid.caching import cache_plan, resolve_cache_options
from braid.testing.cache_tasks import SQUARE, FakeTask

pytestmark = pytest.mark.timeout(60)


def ctx(params=None, flow_run_id="flow-1", task=SQUARE, task_run_id=7, **kw):
    return CacheContext(task, task_run_id, params or {}, flow_run_id=flow_run_id, **kw)


def test_default_is_inputs_task_source_and_run_id():
    assert isinstance(DEFAULT, CompoundCachePolicy)
    kinds = sorted(type(p).__name__ for p in DEFAULT.policies)
    assert kinds == ["Inputs", "RunId", "TaskSource"]


def test_inputs_key_changes_with_inputs_and_ignores_dict_order():
    a = INPUTS.compute_key(ctx(), {"x": 1, "y": {"a": 1, "b": 2}}, {})
    b = INPUTS.compute_key(ctx(), {"y": {"b": 2, "a": 1}, "x": 1}, {})
    c = INPUTS.compute_key(ctx(), {"x": 2, "y": {"a": 1, "b": 2}}, {})
    assert a == b != c
    assert INPUTS.compute_key(ctx(), {}, {}) is None


def test_subtracting_a_parameter_leaves_it_out():
    policy = INPUTS - "debug"
    assert policy.compute_key(ctx(), {"x": 1, "debug": True}, {}) == policy.compute_key(
        ctx(), {"x": 1, "debug": False}, {}
    )
    combined = (TASK_SOURCE + INPUTS) - "debug"
    assert combined.compute_key(ctx(), {"x": 1, "debug": 1}, {}) == combined.compute_key(
        ctx(), {"x": 1, "debug": 2}, {}
    )
    assert TASK_SOURCE - "debug" is TASK_SOURCE
    with pytest.raises(TypeError):
        INPUTS - 3  # noqa: B018


def test_adding_merges_inputs_and_no_cache_is_neutral():
    merged = (INPUTS - "a") + (INPUTS - "b") + RUN_ID
    inputs = [p for p in merged.policies if isinstance(p, Inputs)]
    assert len(inputs) == 1 and inputs[0].exclude == ["a", "b"]
    assert NO_CACHE + INPUTS is INPUTS
    assert INPUTS + NO_CACHE is INPUTS
    assert NO_CACHE.compute_key(ctx(), {"x": 1}, {}) is None


def test_configure_returns_a_copy_and_conflicts_are_refused(tmp_path):
    from braid.locking.memory import MemoryLockManager

    configured = INPUTS.configure(
        key_storage=str(tmp_path), isolation_level="SERIALIZABLE", lock_manager=MemoryLockManager()
    )
    assert INPUTS.key_storage is None and configured.key_storage == str(tmp_path)
    assert configured.isolation_level.value == "SERIALIZABLE"
    assert (configured + TASK_SOURCE).lock_manager is MemoryLockManager()
    with pytest.raises(ValueError, match="storage"):
        INPUTS.configure(key_storage="a") + TASK_SOURCE.configure(key_storage="b")


def test_run_id_prefers_transaction_key_then_flow_run_then_task_run():
    assert RUN_ID.compute_key(ctx(), {}, {}) == "flow-1"
    assert RUN_ID.compute_key(ctx(flow_run_id=None), {}, {}) == "7"
    assert RUN_ID.compute_key(ctx(transaction_key="k"), {}, {}) == "txn:k"


def test_flow_parameters_and_task_source():
    assert FLOW_PARAMETERS.compute_key(ctx(), {}, {}) is None
    assert FLOW_PARAMETERS.compute_key(ctx(), {}, {"n": 1}) != FLOW_PARAMETERS.compute_key(
        ctx(), {}, {"n": 2}
    )
    a, b = FakeTask("t", lambda: 1), FakeTask("t", lambda: 1)
    a.source_code, b.source_code = "def t(): return 1", "def t(): return 2"
    assert TaskSource().compute_key(ctx(task=a), {}, {}) != TaskSource().compute_key(
        ctx(task=b), {}, {}
    )
    assert TASK_SOURCE.compute_key(ctx(), {}, {}) == TASK_SOURCE.compute_key(ctx(), {}, {})


def test_cache_key_fn_reads_prefect_context_paths():
    seen = {}

    def key_fn(context, parameters):
        seen.update(
            flow=context.task_run.flow_run_id,
            fn=context.task.fn,
            run=context.task_run_id,
            name=context.task.name,
            p=dict(parameters),
        )
        return f"k-{parameters['x']}"

    policy = CacheKeyFnPolicy(cache_key_fn=key_fn)
    assert policy.compute_key(ctx({"x": 3}), {"x": 3}, {}) == "k-3"
    assert seen == {"flow": "flow-1", "fn": SQUARE.fn, "run": 7, "name": "square", "p": {"x": 3}}
    assert isinstance(task_input_hash(ctx(), {"x": 1}), str)
    assert task_input_hash(ctx(), {"x": threading.Lock()}) is None


def test_keys_are_the_same_in_another_process():
    value = {"a": [1, 2.5, "s", None, (True, b"x")], "b": {3, 4}, "c": dt.date(2024, 1, 2)}
    here = hash_objects(value)
    code = (
        "import datetime as dt; from braid.cache_policies import hash_objects; "
        "print(hash_objects({'a': [1, 2.5, 's', None, (True, b'x')], 'b': {4, 3}, "
        "'c': dt.date(2024, 1, 2)}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
    )
    assert out.stdout.strip() == here, out.stderr


def test_numpy_arrays_hash_by_dtype_shape_and_bytes():
    np = pytest.importorskip("numpy")
    a = np.arange(1000, dtype=np.int64)
    assert hash_objects(a) == hash_objects(a.copy())
    assert hash_objects(a) != hash_objects(a.astype(np.int32))
    assert hash_objects(a) != hash_objects(a.reshape(10, 100))
    assert hash_objects(a[::2]) == hash_objects(np.ascontiguousarray(a[::2]))
    b = a.copy()
    b[500] = -1
    assert hash_objects(a) != hash_objects(b)


def test_an_input_that_cannot_be_hashed_is_named_with_the_way_out():
    conn = sqlite3.connect(":memory:")
    try:
        with pytest.raises(errors.CacheKeyError) as info:
            INPUTS.compute_key(ctx(), {"x": 1, "cfg": {"conn": conn}}, {})
    finally:
        conn.close()
    message = str(info.value)
    assert "task 'square'" in message
    assert "parameter 'cfg'" in message and "cfg['conn']" in message
    assert "sqlite3.Connection" in message
    assert "INPUTS - 'cfg'" in message and "cache_key_fn" in message
    assert isinstance(info.value, ValueError)


def test_explicit_policy_raises_but_default_policy_warns_and_goes_uncached(tmp_path):
    lock = threading.Lock()
    explicit = resolve_cache_options({"cache_policy": INPUTS, "result_storage": tmp_path})
    with pytest.raises(errors.CacheKeyError):
        cache_plan(explicit, ctx({"x": lock}))
    implicit = resolve_cache_options({"result_storage": tmp_path})
    with pytest.warns(errors.CacheKeyWarning, match="not cached"):
        plan = cache_plan(implicit, ctx({"x": lock}))
    assert not plan.hit


@pytest.mark.parametrize(
    "task_opts, flow_opts, persists",
    [
        ({}, None, False),
        ({"cache_policy": INPUTS}, None, True),
        ({"cache_policy": NO_CACHE}, None, False),
        ({"cache_key_fn": task_input_hash}, None, True),
        ({"result_storage_key": "k"}, None, True),
        ({"result_serializer": "json"}, None, True),
        ({"result_storage": "/tmp/x"}, None, True),
        ({}, {"persist_result": True}, True),
        ({}, {"result_storage": "/tmp/x"}, True),
        ({"persist_result": False}, {"persist_result": True}, False),
    ],
)
def test_when_a_task_persists(task_opts, flow_opts, persists, recwarn):
    assert (resolve_cache_options(task_opts, flow_opts) is not None) is persists


def test_persistence_by_default_from_the_environment(monkeypatch):
    monkeypatch.setenv("BRAID_RESULTS_PERSIST_BY_DEFAULT", "true")
    opts = resolve_cache_options({})
    assert opts is not None and opts.policy == DEFAULT


def test_option_precedence():
    with pytest.warns(errors.CacheWarning, match="cache_key_fn is used"):
        opts = resolve_cache_options({"cache_policy": INPUTS, "cache_key_fn": task_input_hash})
    assert isinstance(opts.policy, CacheKeyFnPolicy)
    with pytest.warns(errors.CacheWarning, match="ignored"):
        assert resolve_cache_options({"cache_policy": INPUTS, "persist_result": False}) is None
    assert resolve_cache_options({"result_storage_key": "{parameters[x]}"}).policy is None
    assert isinstance(resolve_cache_options({"persist_result": True}).policy, CompoundCachePolicy)
    assert isinstance(RunId(), RunId)
