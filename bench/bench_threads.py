"""Per-task overhead of braid.ThreadPoolTaskRunner against concurrent.futures.ThreadPoolExecutor.

    .venv/bin/python bench/bench_threads.py [--quick] [--json PATH] [--workers W]
    .venv/bin/python bench/bench_threads.py --profile submit [--n N]

Both pools get the same ``max_workers`` (default: ThreadPoolExecutor's default,
``min(32, cpu_count + 4)``).  ``--profile CASE`` runs one braid case under cProfile,
worker threads included, counting CPU time per thread, and prints the top entries
instead of benchmarking.
"""

from __future__ import annotations

import concurrent.futures as cf
import cProfile
import io
import os
import pstats
import sys
import threading
import time
from typing import Any

from common import bench_arguments
from overhead import BRAID_CASES, RawPool, measure_overhead, report_overhead

from braid import ThreadPoolTaskRunner, flow

RUNNER = "ThreadPoolTaskRunner"
BACKEND = "concurrent.futures.ThreadPoolExecutor"


def default_workers() -> int:
    return min(32, (os.cpu_count() or 1) + 4)


def profile_case(case: str, n: int, workers: int, top: int = 30) -> str:
    """cProfile of one braid case on threads, the caller's and the worker threads' CPU
    time merged (``time.thread_time``: time blocked on a lock, a queue or the GIL is not
    counted), sorted by own time."""
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()

    def start_thread_profile(*_: Any) -> None:
        # Installed by threading.setprofile: runs once in each new thread, then hands
        # the thread over to its own cProfile.
        sys.setprofile(None)
        p = cProfile.Profile(time.thread_time)
        with lock:
            profiles.append(p)
        p.enable()

    body = BRAID_CASES[case]

    @flow(name="bench-profile", task_runner=ThreadPoolTaskRunner(max_workers=workers))
    def run_case(count: int) -> None:
        body(count)

    run_case(min(n, 1_000))  # warm-up, not profiled
    # A fresh flow run starts a fresh runner, so its worker threads start under the hook.
    threading.setprofile(start_thread_profile)
    main = cProfile.Profile(time.thread_time)
    main.enable()
    try:
        run_case(n)
    finally:
        main.disable()
        threading.setprofile(None)  # type: ignore[arg-type]
    profiles.append(main)
    out = io.StringIO()
    stats = pstats.Stats(profiles[-1], stream=out)
    for p in profiles[:-1]:
        stats.add(p)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = bench_arguments(__doc__.splitlines()[0])
    parser.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="max_workers on both sides (default: %(default)s)",
    )
    parser.add_argument(
        "--profile",
        choices=sorted(BRAID_CASES),
        help="profile one braid case instead of benchmarking",
    )
    parser.add_argument("--n", type=int, default=10_000, help="tasks for --profile")
    args = parser.parse_args(argv)
    if args.profile:
        print(profile_case(args.profile, args.n, args.workers))
        return 0
    workers = args.workers
    rows = measure_overhead(
        RUNNER,
        BACKEND,
        make_runner=lambda: ThreadPoolTaskRunner(max_workers=workers),
        make_pool=lambda: RawPool(cf.ThreadPoolExecutor(max_workers=workers)),
        quick=args.quick,
    )
    report_overhead(rows, f"max_workers = {workers} on both sides", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
