"""Lock managers and SERIALIZABLE isolation: N identical runs at once compute once and the
rest wait and hit, on threads (memory locks), processes (lock files), a real Dask
LocalCluster (distributed.Lock) and a real local Ray (a named actor); stale lock files
of dead holders are broken."""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from braid import errors
from braid.cache_policies import INPUTS, CacheContext
from braid.caching import cache_plan, resolve_cache_options
from braid.locking.filesystem import FileSystemLockManager
from braid.locking.memory import MemoryLockManager
from braid.testing import cache_tasks as ct
from braid.testing.dask_processes import local_cluster

pytestmark = pytest.mark.timeout(90)


def serializable(tmp_path, lock_manager):
    policy = INPUTS.configure(isolation_level="SERIALIZABLE", lock_manager=lock_manager)
    return resolve_cache_options({"cache_policy": policy, "result_storage": tmp_path / "s"})


@pytest.mark.parametrize(
    "make", [MemoryLockManager, lambda p: FileSystemLockManager(p)], ids=["memory", "files"]
)
def test_lock_manager_contract(tmp_path, make):
    lm = make(tmp_path) if make is not MemoryLockManager else make()
    key = f"k-{os.getpid()}-{id(tmp_path)}"
    assert lm.acquire_lock(key, "a")
    assert lm.acquire_lock(key, "a")  # a holder may take its own lock again
    assert lm.is_locked(key) and lm.is_lock_holder(key, "a") and not lm.is_lock_holder(key, "b")
    assert not lm.acquire_lock(key, "b", acquire_timeout=0.05)
    with pytest.raises(ValueError):
        lm.release_lock(key, "b")
    assert not lm.wait_for_lock(key, timeout=0.05)
    lm.release_lock(key, "a")
    assert not lm.is_locked(key) and lm.wait_for_lock(key, timeout=0.05)
    assert lm.acquire_lock(key, "b", hold_timeout=0.05)
    assert lm.acquire_lock(key, "c", acquire_timeout=5)  # b's hold lapsed
    lm.release_lock(key, "c")


def test_serializable_threads_compute_once(tmp_path):
    opts = serializable(tmp_path, MemoryLockManager())
    counter = str(tmp_path / "count")
    with ThreadPoolExecutor(6) as pool:
        results = list(
            pool.map(lambda i: ct.cached_square(opts, 7, counter, f"r{i}", 0.05), range(6))
        )
    assert [v for v, _ in results] == [49] * 6
    assert sorted(hit for _, hit in results) == [False] + [True] * 5
    assert ct.computations(counter) == 1


def test_read_committed_lets_them_all_compute(tmp_path):
    opts = resolve_cache_options({"cache_policy": INPUTS, "result_storage": tmp_path})
    counter = str(tmp_path / "count")
    barrier = threading.Barrier(3)

    def run(i):
        barrier.wait()
        return ct.cached_square(opts, 2, counter, f"r{i}", 0.2)

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(run, range(3)))
    assert ct.computations(counter) == 3


def test_serializable_processes_compute_once(tmp_path):
    opts = serializable(tmp_path, FileSystemLockManager(tmp_path / "locks"))
    counter = str(tmp_path / "count")
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        results = pool.starmap(
            ct.cached_square, [(opts, 8, counter, f"r{i}", 0.2) for i in range(3)]
        )
    assert [v for v, _ in results] == [64] * 3
    assert ct.computations(counter) == 1


def test_stale_lock_of_a_dead_process_is_broken(tmp_path):
    proc = multiprocessing.get_context("spawn").Process(
        target=ct.hold_lock_and_exit, args=(str(tmp_path), "k")
    )
    proc.start()
    proc.join(30)
    lm = FileSystemLockManager(tmp_path)
    assert (tmp_path / "k.lock").exists() and not lm.is_locked("k")
    assert lm.acquire_lock("k", "me", acquire_timeout=5)
    assert lm.is_lock_holder("k", "me")
    assert [p.name for p in tmp_path.iterdir()] == ["k.lock"]


def test_lock_timeout_is_named(tmp_path):
    lm = MemoryLockManager()
    opts = serializable(tmp_path, lm)
    ctx = CacheContext(ct.SQUARE, 1, {"x": 99})
    held = cache_plan(opts, ctx)
    try:
        with pytest.raises(errors.LockTimeout, match="square"):
            cache_plan(opts, CacheContext(ct.SQUARE, 2, {"x": 99}), lock_timeout=0.05)
    finally:
        held.abort()
    assert not lm.is_locked(held.key)


def test_serializable_without_lock_manager_is_a_configuration_error(tmp_path):
    policy = INPUTS.configure(isolation_level="SERIALIZABLE")
    opts = resolve_cache_options({"cache_policy": policy, "result_storage": tmp_path})
    with pytest.raises(errors.ConfigurationError, match="lock manager"):
        cache_plan(opts, CacheContext(ct.SQUARE, 1, {"x": 1}))


# -- Dask ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dask_client(tmp_path_factory):
    distributed = pytest.importorskip("distributed")
    with (
        local_cluster(tmp_path_factory.mktemp("dask"), nthreads=2) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def test_dask_lock_manager_serializes_across_workers(tmp_path, dask_client):
    from braid.locking.dask import DaskLockManager

    opts = serializable(tmp_path, DaskLockManager())
    counter = str(tmp_path / "count")
    futures = [
        dask_client.submit(ct.cached_square, opts, 9, counter, f"r{i}", 0.2, pure=False)
        for i in range(4)
    ]
    results = dask_client.gather(futures)
    assert [v for v, _ in results] == [81] * 4
    assert ct.computations(counter) == 1
    lm = DaskLockManager()
    assert lm.acquire_lock("plain", "a") and lm.is_locked("plain")
    assert not lm.acquire_lock("plain", "b", acquire_timeout=0.1)
    assert not lm.wait_for_lock("plain", timeout=0.1)
    lm.release_lock("plain", "a")
    assert not lm.is_locked("plain") and lm.wait_for_lock("plain", timeout=5)


# -- Ray ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("this process is already connected to a Ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_ray_lock_manager_serializes_across_workers(tmp_path, local_ray):
    from braid.locking.ray import RayLockManager

    opts = serializable(tmp_path, RayLockManager(name=f"locks-{os.getpid()}"))
    counter = str(tmp_path / "count")
    remote = local_ray.remote(ct.cached_square)
    results = local_ray.get([remote.remote(opts, 10, counter, f"r{i}", 0.2) for i in range(3)])
    assert [v for v, _ in results] == [100] * 3
    assert ct.computations(counter) == 1
    lm = RayLockManager(name=f"locks-{os.getpid()}")
    assert lm.acquire_lock("plain", "a") and lm.is_lock_holder("plain", "a")
    assert not lm.acquire_lock("plain", "b", acquire_timeout=0.05)
    assert not lm.wait_for_lock("plain", timeout=0.05)
    lm.release_lock("plain", "a")
    assert not lm.is_locked("plain") and lm.wait_for_lock("plain", timeout=5)
