"""Result stores: records by key on local disk and through fsspec (memory://, file://),
serializers, expiry, corrupt records as warned misses, the default store under
BRAID_HOME, storage-key templates, separate key storage, records shared between real
processes, and stores refused for remote clusters."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import pickle
import subprocess
import sys
import uuid

import pytest

from braid import errors
from braid.cache_policies import INPUTS, CacheContext
from braid.caching import cache_plan, persist_flow_result, resolve_cache_options
from braid.filesystems import LocalFileSystem, RemoteFileSystem, resolve_storage
from braid.results import (
    ResultStore,
    check_store_for_remote,
    default_storage_path,
    store_is_local_only,
)
from braid.testing import cache_tasks as ct

pytestmark = pytest.mark.timeout(60)


def storages(tmp_path):
    return [
        str(tmp_path / "plain"),
        LocalFileSystem(tmp_path / "lfs"),
        f"memory://braid-{uuid.uuid4().hex}",
        f"file://{tmp_path}/viafsspec",
    ]


@pytest.mark.parametrize("which", range(4))
def test_round_trip_on_every_kind_of_storage(tmp_path, which):
    pytest.importorskip("fsspec")
    storage = storages(tmp_path)[which]
    store = ResultStore(result_storage=storage)
    store.write("k1", {"a": [1, 2]}, task_name="t")
    fresh = ResultStore(result_storage=storage)
    record = fresh.read("k1")
    assert record.result == {"a": [1, 2]}
    assert record.metadata.task_name == "t" and record.metadata.storage_key == "k1"
    assert fresh.exists("k1") and not fresh.exists("nope")
    assert list(fresh.keys()) == ["k1"]
    fresh.delete("k1")
    assert fresh.read_fresh("k1") is None
    with pytest.raises(errors.ResultNotFound):
        fresh.read("k1")


def test_serializers(tmp_path):
    json_store = ResultStore(result_storage=tmp_path, serializer="json")
    json_store.write("j", {"x": 1})
    raw = (tmp_path / "j").read_bytes()
    assert raw.endswith(b'{"x": 1}')
    assert ResultStore(result_storage=tmp_path).read("j").result == {"x": 1}

    class Upper:
        type = "upper"

        def dumps(self, obj):
            return obj.upper().encode()

        def loads(self, blob):
            return blob.decode()

    ResultStore(result_storage=tmp_path, serializer=Upper()).write("u", "hi")
    with pytest.warns(errors.CorruptRecordWarning, match="not available"):
        assert ResultStore(result_storage=tmp_path).read_fresh("u") is None
    with pytest.raises(ValueError, match="unknown result_serializer"):
        ResultStore(serializer="yaml")


def test_expired_records_are_never_served(tmp_path):
    store = ResultStore(result_storage=tmp_path)
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    store.write("old", 1, expiration=past)
    assert store.read_fresh("old") is None  # not even from the memory cache
    assert not store.exists("old")
    assert ResultStore(result_storage=tmp_path).read_fresh("old") is None


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip"])
def test_a_corrupt_record_is_a_warned_miss(tmp_path, damage):
    ResultStore(result_storage=tmp_path).write("k", list(range(100)))
    path = tmp_path / "k"
    blob = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(blob[:-10])
    elif damage == "garbage":
        path.write_bytes(b"\x00\x01garbage")
    else:
        path.write_bytes(blob[:-1] + bytes([blob[-1] ^ 0xFF]))
    with pytest.warns(errors.CorruptRecordWarning, match="cache miss"):
        assert ResultStore(result_storage=tmp_path).read_fresh("k") is None


def test_default_store_lives_under_braid_home(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAID_HOME", str(tmp_path / "home"))
    assert default_storage_path() == tmp_path / "home" / "storage"
    store = ResultStore()
    assert not (tmp_path / "home").exists()
    store.write("k", 1)
    assert (tmp_path / "home" / "storage" / "k").is_file()


def test_a_store_pickles_cold(tmp_path):
    store = ResultStore(result_storage=tmp_path)
    store.write("k", 1)
    copy = pickle.loads(pickle.dumps(store))
    assert copy.result_storage == store.result_storage
    (tmp_path / "k").unlink()
    assert copy.read_fresh("k") is None  # nothing remembered from the original process


def test_key_storage_keeps_metadata_apart(tmp_path):
    store = ResultStore(result_storage=tmp_path / "values", metadata_storage=tmp_path / "keys")
    store.write("k", {"v": 1})
    assert (tmp_path / "values" / "k").read_bytes().startswith(b"\x80")  # bare pickle
    assert (tmp_path / "keys" / "k").read_bytes().startswith(b"braid-record")
    again = ResultStore(result_storage=tmp_path / "values", metadata_storage=tmp_path / "keys")
    assert again.read("k").result == {"v": 1}


def _ctx(params, run="f1"):
    return CacheContext(
        ct.SQUARE, 1, params, flow_run_id=run, flow_run_name="brave-fox", flow_parameters={"n": 1}
    )


def test_cache_plan_miss_commit_hit_refresh_and_expiry(tmp_path):
    opts = resolve_cache_options({"cache_policy": INPUTS, "result_storage": tmp_path})
    first = cache_plan(opts, _ctx({"x": 3}))
    assert not first.hit
    first.commit(9)
    second = cache_plan(opts, _ctx({"x": 3}, run="other"))
    assert second.hit and second.value == 9
    assert second.record.metadata.task_name == "square"
    refresh = resolve_cache_options(
        {"cache_policy": INPUTS, "result_storage": tmp_path, "refresh_cache": True}
    )
    assert not cache_plan(refresh, _ctx({"x": 3})).hit
    expiring = resolve_cache_options(
        {
            "cache_policy": INPUTS,
            "result_storage": tmp_path,
            "cache_expiration": dt.timedelta(seconds=-1),
        }
    )
    plan = cache_plan(expiring, _ctx({"x": 4}))
    plan.commit(16)
    assert not cache_plan(expiring, _ctx({"x": 4})).hit


def test_storage_key_templates(tmp_path):
    opts = resolve_cache_options(
        {
            "result_storage": tmp_path,
            "result_storage_key": "{parameters[x]}-{flow_run.name}-{task_run.task_name}.json",
            "result_serializer": "json",
        }
    )
    cache_plan(opts, _ctx({"x": 5})).commit(25)
    assert (tmp_path / "5-brave-fox-square.json").is_file()
    assert cache_plan(opts, _ctx({"x": 5})).value == 25


def test_a_value_the_serializer_cannot_write_is_warned_not_fatal(tmp_path):
    opts = resolve_cache_options(
        {"cache_policy": INPUTS, "result_storage": tmp_path, "result_serializer": "json"}
    )
    plan = cache_plan(opts, _ctx({"x": 1}))
    with pytest.warns(errors.CacheWarning, match="not persisted"):
        plan.commit(object())
    assert list(ResultStore(result_storage=tmp_path).keys()) == []


def test_flow_results_persist_under_the_run_id(tmp_path):
    assert persist_flow_result({}, 1, "run-1") is None
    record = persist_flow_result({"result_storage": tmp_path}, [1], "run-1", flow_name="f")
    assert ResultStore(result_storage=tmp_path).read("run-1").result == [1]
    assert record.metadata.task_name == "f"


def test_a_record_written_by_another_process_is_a_hit_here(tmp_path):
    opts = resolve_cache_options({"cache_policy": INPUTS, "result_storage": tmp_path})
    counter = str(tmp_path / "count")
    mp = multiprocessing.get_context("spawn")
    with mp.Pool(1) as pool:
        assert pool.apply(ct.cached_square, (opts, 6, counter, "run-a")) == (36, False)
    assert ct.cached_square(opts, 6, counter, "run-b") == (36, True)
    assert ct.computations(counter) == 1


def test_remote_cluster_check(tmp_path):
    pytest.importorskip("fsspec")
    local = ResultStore(result_storage=tmp_path)
    assert store_is_local_only(local)
    with pytest.raises(errors.LocalStoreOnRemoteCluster, match="s3://"):
        check_store_for_remote(local)
    shared = ResultStore(result_storage=LocalFileSystem(tmp_path, shared=True))
    check_store_for_remote(shared)
    assert store_is_local_only(ResultStore(result_storage="memory://x"))
    assert not store_is_local_only(ResultStore(result_storage=RemoteFileSystem("s3://b/p")))
    from braid.locking.memory import MemoryLockManager

    with pytest.raises(errors.LocalStoreOnRemoteCluster):
        check_store_for_remote(
            ResultStore(
                result_storage=RemoteFileSystem("s3://b/p"), lock_manager=MemoryLockManager()
            )
        )


def test_storage_specs(tmp_path):
    assert isinstance(resolve_storage(tmp_path), LocalFileSystem)
    assert isinstance(resolve_storage("s3://bucket/x"), RemoteFileSystem)
    with pytest.raises(TypeError):
        resolve_storage(42)


def test_missing_fsspec_names_the_install():
    code = (
        "import sys; sys.modules['fsspec'] = None\n"
        "from braid.results import ResultStore\nfrom braid import errors\n"
        "try:\n    ResultStore(result_storage='memory://x').write('k', 1)\n"
        "except errors.MissingExtraError as exc:\n    print('MISSING:', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "MISSING:" in out.stdout and "pip install fsspec" in out.stdout, out.stderr
