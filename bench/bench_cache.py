"""Caching benchmarks: cache-key hashing throughput of a large NumPy array (target: at
least 500 MB/s, no per-element Python work), and a store read (cache hit) against
computing and persisting (cache miss), through the engine's seam ``cache_plan``.

    PYTHONPATH=<dir with numpy> .venv/bin/python bench/bench_cache.py [--mb 256]

Prints one line per measurement; exits 0 whatever the figures (a report, not a gate).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

from braid.cache_policies import INPUTS, CacheContext, hash_objects
from braid.caching import cache_plan, resolve_cache_options
from braid.testing.cache_tasks import SQUARE


def best_of(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_hashing(mb: int) -> None:
    try:
        import numpy as np
    except ImportError:
        print("hashing: numpy not installed, skipped")
        return
    arr = np.random.default_rng(0).random(mb * 1024 * 1024 // 8)
    seconds = best_of(lambda: hash_objects(arr))
    rate = arr.nbytes / seconds / 1e6
    print(
        f"hashing: {arr.nbytes / 1e6:.0f} MB float64 array in {seconds * 1e3:.1f} ms = "
        f"{rate:.0f} MB/s (target >= 500 MB/s: {'met' if rate >= 500 else 'NOT met'})"
    )
    strided = arr[::2]
    seconds = best_of(lambda: hash_objects(strided))
    print(
        f"hashing: non-contiguous view of {strided.nbytes / 1e6:.0f} MB in "
        f"{seconds * 1e3:.1f} ms = {strided.nbytes / seconds / 1e6:.0f} MB/s"
    )


def bench_hit_vs_miss(n: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        opts = resolve_cache_options(
            {"cache_policy": INPUTS, "result_storage": d, "cache_result_in_memory": False}
        )

        def miss(i: int) -> None:
            plan = cache_plan(opts, CacheContext(SQUARE, i, {"x": i}))
            assert not plan.hit
            plan.commit(SQUARE.fn(i))

        def hit(i: int) -> None:
            plan = cache_plan(opts, CacheContext(SQUARE, i, {"x": i}))
            assert plan.hit

        per = {}
        for name, fn in (("miss (compute + persist)", miss), ("hit (read from disk)", hit)):
            samples = []
            for i in range(n):
                t0 = time.perf_counter()
                fn(i)
                samples.append(time.perf_counter() - t0)
            per[name] = statistics.median(samples) * 1e6
            print(f"cache {name}: {per[name]:.0f} us per run (median of {n})")
        ratio = per["hit (read from disk)"] / per["miss (compute + persist)"]
        print(f"cache hit / miss time: {ratio:.2f}")


def bench_flows(n: int) -> None:
    """On threads, in one run: a flow mapping a no-op task over ``n`` items, uncached; the
    same task cached, first run (all misses: compute and persist) and second run (all
    hits); and a cache hit's cost per task against running the no-op."""
    from braid import ThreadPoolTaskRunner, flow, task

    def noop(x: int) -> int:
        return x

    plain = task(name="noop")(noop)
    with tempfile.TemporaryDirectory() as d:
        cached = task(name="noop_cached", cache_policy=INPUTS, result_storage=d)(noop)

        def mapped(t: object) -> float:
            @flow(task_runner=ThreadPoolTaskRunner(max_workers=4))
            def body() -> None:
                t.map(range(n)).result()  # type: ignore[attr-defined]

            t0 = time.perf_counter()
            body()
            return time.perf_counter() - t0

        mapped(plain)  # warm-up: imports, threads
        uncached = min(mapped(plain) for _ in range(3))
        first = mapped(cached)
        second = mapped(cached)
    print(
        f"flow of {n} mapped no-op tasks on threads: uncached {uncached:.2f} s, cached "
        f"first run {first:.2f} s ({first / uncached:.1f}x), second run (all hits) "
        f"{second:.2f} s ({second / first:.2f} of the first)"
    )
    print(
        f"a cache hit costs {(second - uncached) / n * 1e6:.0f} us per task over running "
        f"the no-op ({second / uncached:.1f}x the uncached flow)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=256, help="array size for hashing")
    parser.add_argument("--n", type=int, default=500, help="runs for hit/miss")
    parser.add_argument("--flow-n", type=int, default=10_000, help="tasks in the mapped flow")
    args = parser.parse_args(argv)
    bench_hashing(args.mb)
    bench_hit_vs_miss(args.n)
    bench_flows(args.flow_n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
