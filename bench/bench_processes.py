"""Per-task overhead of braid.ProcessPoolTaskRunner against ProcessPoolExecutor.

    .venv/bin/python bench/bench_processes.py [--quick] [--json PATH] [--workers W]

Both pools get the same ``max_workers`` (default: the number of CPUs) and the same
start method (``spawn``, braid's default); the raw pool receives cloudpickled
``(fn, args)`` calls, as braid sends them.  ``executor.map`` keeps its default
``chunksize=1``: braid sends one task run per message too.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import sys

from common import bench_arguments
from overhead import RawPool, measure_overhead, report_overhead

from braid import ProcessPoolTaskRunner

RUNNER = "ProcessPoolTaskRunner"
BACKEND = "concurrent.futures.ProcessPoolExecutor + cloudpickle"
START_METHOD = "spawn"


def main(argv: list[str] | None = None) -> int:
    parser = bench_arguments(__doc__.splitlines()[0])
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="max_workers on both sides (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    workers = args.workers
    context = multiprocessing.get_context(START_METHOD)
    rows = measure_overhead(
        RUNNER,
        BACKEND,
        make_runner=lambda: ProcessPoolTaskRunner(max_workers=workers, start_method=START_METHOD),
        make_pool=lambda: RawPool(
            cf.ProcessPoolExecutor(max_workers=workers, mp_context=context), pickled=True
        ),
        quick=args.quick,
    )
    report_overhead(
        rows, f"max_workers = {workers} on both sides, start method {START_METHOD!r}", args.json
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
