"""Per-task overhead of DaskTaskRunner against raw ``Client.submit`` on the same cluster.

Three shapes, each timed for braid (inside a flow, runner already connected) and for
raw Dask, in one run on one LocalCluster; prints the braid/raw ratio of each.
Run: ``.venv/bin/python bench/bench_dask.py [N]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time

from distributed import Client, LocalCluster

from braid import flow
from braid.adapters.dask import DaskTaskRunner
from braid.testing.sample_tasks import inc

CHAIN = 200


def raw_inc(x):
    return x + 1


def raw_shapes(client: Client, n: int) -> dict[str, float]:
    out = {}
    t = time.perf_counter()
    futures = [client.submit(raw_inc, i, pure=False) for i in range(n)]
    client.gather(futures)
    out["submit+gather"] = time.perf_counter() - t
    del futures
    t = time.perf_counter()
    client.gather(client.map(raw_inc, range(n), pure=False))
    out["map"] = time.perf_counter() - t
    t = time.perf_counter()
    f = client.submit(raw_inc, 0, pure=False)
    for _ in range(CHAIN - 1):
        f = client.submit(raw_inc, f, pure=False)
    f.result()
    out[f"chain of {CHAIN}"] = time.perf_counter() - t
    return out


def braid_shapes(n: int) -> dict[str, float]:
    out = {}
    t = time.perf_counter()
    futures = [inc.submit(i) for i in range(n)]
    [f.result() for f in futures]
    out["submit+gather"] = time.perf_counter() - t
    del futures
    t = time.perf_counter()
    inc.map(range(n)).result()
    out["map"] = time.perf_counter() - t
    t = time.perf_counter()
    f = inc.submit(0)
    for _ in range(CHAIN - 1):
        f = inc.submit(f)
    f.result()
    out[f"chain of {CHAIN}"] = time.perf_counter() - t
    return out


CASES = {"submit+gather": "submit", "map": "map", f"chain of {CHAIN}": "chain"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=500, help="tasks per shape")
    parser.add_argument("--json", metavar="PATH", help="write rows (bench/common.py schema)")
    parser.add_argument("--quick", action="store_true", help="N = 100")
    opts = parser.parse_args()
    n = 100 if opts.quick else opts.n
    with LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=True,
        dashboard_address="127.0.0.1:0",
        silence_logs=logging.ERROR,
        local_directory=tempfile.mkdtemp(),
    ) as cluster:
        runner = DaskTaskRunner(address=cluster.scheduler_address)
        bench = flow(braid_shapes, name="bench", task_runner=runner)
        with Client(cluster, set_as_default=False) as client:
            raw_shapes(client, 50)  # warm up both paths (imports, connections)
            bench(50)
            raws, braids = [], []
            for _ in range(3):  # interleaved, best of three
                raws.append(raw_shapes(client, n))
                braids.append(bench(n))
    print(f"DaskTaskRunner vs raw Client.submit, N={n}, 1 worker x 2 threads (best of 3)")
    print(f"{'shape':<16}{'raw ms/task':>12}{'braid ms/task':>15}{'braid/raw':>11}")
    rows = []
    for shape in raws[0]:
        count = CHAIN if shape.startswith("chain") else n
        raw = min(r[shape] for r in raws)
        ours = min(b[shape] for b in braids)
        print(
            f"{shape:<16}{raw / count * 1e3:>12.3f}{ours / count * 1e3:>15.3f}{ours / raw:>10.2f}x"
        )
        rows.append(
            {
                "runner": "DaskTaskRunner",
                "backend": "distributed.Client.submit",
                "case": CASES[shape],
                "n": count,
                "braid_us_per_task": ours / count * 1e6,
                "raw_us_per_task": raw / count * 1e6,
                "ratio": ours / raw,
            }
        )
    if opts.json:
        with open(opts.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
