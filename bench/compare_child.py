"""One side of ``compare_commits.py``: time the cases with whichever braid is importable.

    python bench/compare_child.py RUNNER N REPEATS

Prints one JSON line: case -> median seconds per task.  Only braid's public API is
used, so any version of braid since the runner model can be measured.
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import time
from typing import Any

import braid
from braid import flow, task

CHAIN = 100


@task
def identity(x: Any) -> Any:
    """The no-op task body."""
    return x


def submit_case(n: int) -> None:
    futures = [identity.submit(i) for i in range(n)]
    for f in futures:
        f.result()


def map_case(n: int) -> None:
    identity.map(range(n)).result()


def chain_case(n: int) -> None:
    ends = []
    for c in range(max(1, n // CHAIN)):
        f = identity.submit(c)
        for _ in range(CHAIN - 1):
            f = identity.submit(f)
        ends.append(f)
    for f in ends:
        f.result()


CASES = {"submit": submit_case, "map": map_case, "chain": chain_case}


def make_runner(kind: str) -> Any:
    if kind == "threads":
        return braid.ThreadPoolTaskRunner(max_workers=4)
    if kind == "processes":
        return braid.ProcessPoolTaskRunner(max_workers=2)
    if kind == "dask":
        return braid.DaskTaskRunner(
            cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "silence_logs": logging.ERROR}
        )
    return braid.RayTaskRunner(init_kwargs={"num_cpus": 2})


def main() -> None:
    kind, n, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

    @flow(task_runner=make_runner(kind))
    def timed() -> dict[str, float]:
        out = {}
        for name, case in CASES.items():
            case(min(n, 200))  # warm-up: workers started, code paths hot
            seconds = []
            for _ in range(repeats):
                start = time.perf_counter()
                case(n)
                seconds.append((time.perf_counter() - start) / n)
            out[name] = statistics.median(seconds)
        return out

    print(json.dumps(timed()))


if __name__ == "__main__":
    main()
