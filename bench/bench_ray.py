"""Per-task overhead of RayTaskRunner against raw ``ray.remote`` on the same local Ray.

Run:  .venv/bin/python bench/bench_ray.py

Three shapes, each timed for raw Ray and for braid in the same run (best of a few
rounds, after a warm-up), printing the braid/raw ratio:

- submit+get: submit one task and wait for its result, one after the other;
- map: submit N independent tasks, then gather every result;
- chain: 200 tasks, each taking the previous one's result (dependencies resolved by
  Ray, worker to worker).

braid's numbers are measured inside a flow body, so flow start and end are not
counted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time

for _key, _value in (
    ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0"),
    ("RAY_AUTH_MODE", "disabled"),
    ("RAY_USAGE_STATS_ENABLED", "0"),
):
    os.environ.setdefault(_key, _value)

import ray  # noqa: E402

from braid import flow  # noqa: E402
from braid.adapters.ray import RayTaskRunner  # noqa: E402
from braid.testing import sample_tasks as st  # noqa: E402


@ray.remote
def raw_inc(x):
    return x + 1


def best(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def raw_shapes(n_seq: int, n_map: int, n_chain: int) -> dict:
    def seq():
        for i in range(n_seq):
            ray.get(raw_inc.remote(i))

    def mapped():
        assert ray.get([raw_inc.remote(i) for i in range(n_map)])[-1] == n_map

    def chain():
        r = raw_inc.remote(0)
        for _ in range(n_chain - 1):
            r = raw_inc.remote(r)
        assert ray.get(r) == n_chain

    return {"seq": seq, "map": mapped, "chain": chain}


def braid_shapes(n_seq: int, n_map: int, n_chain: int) -> dict:
    def seq():
        for i in range(n_seq):
            st.inc.submit(i).result()

    def mapped():
        assert st.inc.map(range(n_map)).result()[-1] == n_map

    def chain():
        f = st.inc.submit(0)
        for _ in range(n_chain - 1):
            f = st.inc.submit(f)
        assert f.result() == n_chain

    return {"seq": seq, "map": mapped, "chain": chain}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", type=int, default=300)
    parser.add_argument("--map", type=int, default=1000)
    parser.add_argument("--chain", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--json", metavar="PATH", help="write rows (bench/common.py schema)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one round")
    args = parser.parse_args()
    if args.quick:
        args.seq, args.map, args.rounds = 100, 200, 1
    ray.init(
        num_cpus=args.cpus,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
        _temp_dir=tempfile.mkdtemp(prefix="brb", dir="/tmp"),
    )
    try:
        raw = raw_shapes(args.seq, args.map, args.chain)

        @flow(task_runner=RayTaskRunner())
        def measure_braid() -> dict:
            shapes = braid_shapes(args.seq, args.map, args.chain)
            for fn in shapes.values():  # warm-up: worker imports, first pickles
                fn()
            return {k: best(fn, args.rounds) for k, fn in shapes.items()}

        for fn in raw.values():
            fn()
        raw_t = {k: best(fn, args.rounds) for k, fn in raw.items()}
        braid_t = measure_braid()
        raw_t2 = {k: best(fn, args.rounds) for k, fn in raw.items()}  # drift check
        raw_t = {k: min(raw_t[k], raw_t2[k]) for k in raw_t}
    finally:
        ray.shutdown()
    sizes = {"seq": args.seq, "map": args.map, "chain": args.chain}
    labels = {"seq": "submit+get", "map": "map", "chain": f"chain of {args.chain}"}
    print(f"{'shape':<14}{'raw ms/task':>12}{'braid ms/task':>15}{'braid/raw':>11}")
    rows = []
    cases = {"seq": "submit", "map": "map", "chain": "chain"}
    for k in ("seq", "map", "chain"):
        r, b = raw_t[k] / sizes[k] * 1e3, braid_t[k] / sizes[k] * 1e3
        print(f"{labels[k]:<14}{r:>12.3f}{b:>15.3f}{b / r:>10.2f}x")
        rows.append(
            {
                "runner": "RayTaskRunner",
                "backend": "ray.remote",
                "case": cases[k],
                "n": sizes[k],
                "braid_us_per_task": b * 1e3,
                "raw_us_per_task": r * 1e3,
                "ratio": b / r,
            }
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
