"""Helpers for the caching tests that other processes (multiprocessing, Dask, Ray) import
by name: a stand-in task, and functions that run one cache look-up the way the engine
will, counting real computations in a file."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from braid.cache_policies import CacheContext
from braid.caching import CacheOptions, cache_plan


class FakeTask:
    """The parts of a task a cache policy reads: ``name`` and ``fn``."""

    def __init__(self, name: str, fn: Any) -> None:
        self.name, self.fn = name, fn


def square(x: int) -> int:
    """The task body the helpers cache."""
    return x * x


SQUARE = FakeTask("square", square)


def cached_square(
    options: CacheOptions, x: int, counter: str, run_id: str = "r", pause: float = 0.0
) -> tuple[int, bool]:
    """Run ``square(x)`` through ``cache_plan`` as the engine will; a real computation
    appends a line to the file ``counter``.  Returns (value, was it a hit)."""
    ctx = CacheContext(
        SQUARE,
        task_run_id=f"{run_id}-{os.getpid()}-{time.monotonic_ns()}",
        parameters={"x": x},
        flow_run_id=run_id,
    )
    plan = cache_plan(options, ctx)
    if plan.hit:
        return plan.value, True
    try:
        with open(counter, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(pause)
        value = square(x)
    except BaseException:
        plan.abort()
        raise
    plan.commit(value)
    return value, False


def computations(counter: str) -> int:
    """How many real computations ``counter`` recorded."""
    path = Path(counter)
    return len(path.read_text().splitlines()) if path.exists() else 0


def hold_lock_and_exit(lock_dir: str, key: str) -> None:
    """Take a file lock and exit without releasing it (a holder that died)."""
    from braid.locking.filesystem import FileSystemLockManager

    FileSystemLockManager(lock_dir).acquire_lock(key, "dead-holder")
    os._exit(0)


def write_record(storage: str, key: str, value: Any) -> None:
    """Write a record from another process."""
    from braid.results import ResultStore

    ResultStore(result_storage=storage).write(key, value, task_name="other-process")
