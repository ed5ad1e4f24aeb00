"""Cost of an uncontended concurrency slot, on each backend, as ratios measured in one run.

    .venv/bin/python bench/bench_limits.py [--quick] [--skip dask,ray]

- threads / processes: N no-op tasks on a raw pool (``ThreadPoolExecutor``,
  ``ProcessPoolExecutor``, 4 workers) against the same tasks each taking and giving
  back one slot: inside the task (``with concurrency("db")``: in-process, or a round
  trip to the parent's coordinator), or by the submitter around the task, as the run
  table does for tag limits; ratio = with limit / without.  The raw pools' per-task
  cost is far below braid's, so these ratios bound the overhead from above.
- Dask / Ray: one acquire + release from the driver against one plain round trip to the
  scheduler (``Client.get_metadata``) or to the limit's actor; ratio = round trips per
  slot.

Prints; no pass/fail.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

from braid.concurrency import (
    Lease,
    LimitsCoordinator,
    LimitTable,
    LocalLimits,
    acquire_for_tags,
    use_limits,
)
from braid.concurrency.sync import concurrency


def noop(_: object = None) -> None:
    return None


def with_slot(handle) -> None:
    with use_limits(handle), concurrency("db"):
        return None


def _median(fn: Callable[[], float], repeats: int = 3) -> float:
    fn()  # warm-up
    return statistics.median(fn() for _ in range(repeats))


def _pool_us(pool: Executor, fn: Callable, arg: object, n: int) -> float:
    def once() -> float:
        start = time.perf_counter()
        for future in [pool.submit(fn, arg) for _ in range(n)]:
            future.result()
        return (time.perf_counter() - start) / n * 1e6

    return _median(once)


def _tagged_pool_us(pool: Executor, handle, n: int, tags: tuple[str, ...] = ("db",)) -> float:
    """Tag-limit style: the parent takes the slot before submitting and gives it back when
    the task is done, as the run table does (``tags=()``: the same with nothing limited)."""

    def once() -> float:
        start = time.perf_counter()
        futures = []
        for _ in range(n):
            lease = acquire_for_tags(tags, handle) or Lease(None, [], 1)
            future = pool.submit(noop)
            future.add_done_callback(lambda _, lease=lease: lease.release())
            futures.append(future)
        for future in futures:
            future.result()
        return (time.perf_counter() - start) / n * 1e6

    return _median(once)


def _call_us(fn: Callable[[], object], n: int) -> float:
    def once() -> float:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - start) / n * 1e6

    return _median(once)


def _row(name: str, with_limit: float, without: float, unit: str) -> None:
    print(
        f"{name:<34} {with_limit:10.1f} us {without:10.1f} us   ratio {with_limit / without:5.2f}"
        f"  ({unit})"
    )


def bench_threads(n: int) -> None:
    local = LocalLimits()
    handle = local.handle(LimitTable({"db": 1000}))
    with ThreadPoolExecutor(4) as pool:
        plain = _pool_us(pool, noop, None, n)
        _row(
            "threads: task + slot / task",
            _pool_us(pool, with_slot, handle, n),
            plain,
            "per task, slot taken in the task",
        )
        _row(
            "threads: tagged task / untagged task",
            _tagged_pool_us(pool, handle, n),
            _tagged_pool_us(pool, handle, n, ()),
            "per task, slot taken by the submitter",
        )
    with use_limits(handle):

        def slot() -> None:
            with concurrency("db"):
                pass

        _row(
            "threads: slot alone / empty call",
            _call_us(slot, n),
            _call_us(noop, n),
            "per acquire+release",
        )
    local.close()


def bench_processes(n: int) -> None:
    with (
        LimitsCoordinator() as coordinator,
        ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool,
    ):
        handle = coordinator.handle(LimitTable({"db": 1000}))
        plain = _pool_us(pool, noop, None, n)
        _row(
            "processes: task + slot / task",
            _pool_us(pool, with_slot, handle, n),
            plain,
            "per task, slot taken in the worker",
        )
        _row(
            "processes: tagged / untagged task",
            _tagged_pool_us(pool, handle, n),
            _tagged_pool_us(pool, handle, n, ()),
            "per task, slot taken by the parent",
        )


def bench_dask(n: int) -> None:
    from distributed import Client, LocalCluster

    from braid.concurrency.dask_backend import DaskLimits

    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            dashboard_address="127.0.0.1:0",
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        limits = DaskLimits(client)
        handle = limits.handle(LimitTable({"db": 1000}))
        with use_limits(handle):

            def slot() -> None:
                with concurrency("db"):
                    pass

            _row(
                "dask: slot / scheduler round trip",
                _call_us(slot, n),
                _call_us(lambda: client.get_metadata("braid-bench", default=None), n),
                "round trips per acquire+release",
            )
        limits.close()


def bench_ray(n: int) -> None:
    import ray

    from braid.concurrency.ray_backend import RayLimits

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        limits = RayLimits()
        handle = limits.handle(LimitTable({"db": 1000}))
        with use_limits(handle):

            def slot() -> None:
                with concurrency("db"):
                    pass

            slot()
            actor = ray.get_actor("braid-limit-db", namespace="braid")
            _row(
                "ray: slot / actor round trip",
                _call_us(slot, n),
                _call_us(lambda: ray.get(actor.configure.remote(1000, 0.0)), n),
                "round trips per acquire+release",
            )
        limits.close()
        limits.remove("db")
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--skip", default="", help="comma-separated: dask,ray")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    scale = 10 if args.quick else 1
    for name, value in (
        ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0"),
        ("RAY_AUTH_MODE", "disabled"),
        ("RAY_USAGE_STATS_ENABLED", "0"),
    ):
        os.environ.setdefault(name, value)
    print(f"{'':<34} {'with limit':>13} {'without':>13}")
    bench_threads(20000 // scale)
    bench_processes(4000 // scale)
    if "dask" not in skip:
        bench_dask(1000 // scale)
    if "ray" not in skip:
        bench_ray(1000 // scale)


if __name__ == "__main__":
    main()
