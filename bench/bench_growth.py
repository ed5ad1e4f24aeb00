"""Growth of braid's per-task overhead on Dask and Ray from 1 000 to 100 000 tasks.

    .venv/bin/python bench/bench_growth.py [--engine dask|ray|both] [--sizes 1000,10000,100000]
                                           [--rounds 3] [--budget 120] [--json PATH]

One cluster per engine, started here and stopped here (a ``LocalCluster`` of 2 worker
processes x 1 thread; a ``ray start --head`` node with 2 CPUs, stopped by its own temp
dir, so no other Ray on the machine is touched).  Every measurement runs in a fresh
driver process connected to that cluster by address, braid and the raw client
alternately, so each driver's peak RSS (``VmHWM``) is its own:

- ``submit``: N x ``.submit()`` then every result (raw: N x ``Client.submit`` /
  ``f.remote`` then one gather / ``ray.get``);
- ``map``: one ``.map()`` over N items then its results (raw: ``Client.map`` + gather; a
  list of ``f.remote`` + ``ray.get``);
- ``chain``: N tasks in chains of 200, each task taking the previous one's result, every
  chain submitted before any is read.

Each case is timed after a warm-up of the same case at N = 200 in the same driver;
the best of ``--rounds`` drivers is kept (one round from N = 100 000), braid and raw
taking turns to go first, so a slow spell of the shared machine (raw Dask's chain of
10 000 took 10.2 to 16.6 s in identical runs) is unlikely to decide a ratio.  A size is
skipped, saying so, when the raw engine's time at the size below, scaled linearly,
would exceed ``--budget`` seconds.  ``--cases`` picks some of the three.
Rows follow ``bench/common.py``'s schema plus ``braid_rss_mb`` and ``raw_rss_mb``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
CHAIN = 200
WARM = 200
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}
CASES = ("submit", "map", "chain")


# -- the drivers (run as `bench_growth.py --driver ENGINE IMPL ADDRESS CASE N`) -------------
def _raw_dask(address: str, case: str, n: int) -> float:
    from distributed import Client

    def inc(x: int) -> int:
        return x + 1

    with Client(address, set_as_default=False) as client:

        def run(k: int) -> float:
            t = time.perf_counter()
            if case == "submit":
                client.gather([client.submit(inc, i, pure=False) for i in range(k)])
            elif case == "map":
                client.gather(client.map(inc, range(k), pure=False))
            else:
                ends = []
                for _ in range(max(1, k // CHAIN)):
                    f = client.submit(inc, 0, pure=False)
                    for _ in range(CHAIN - 1):
                        f = client.submit(inc, f, pure=False)
                    ends.append(f)
                assert client.gather(ends)[-1] == CHAIN
            return time.perf_counter() - t

        run(WARM)
        return run(n)


def _raw_ray(address: str, case: str, n: int) -> float:
    import ray

    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    try:

        @ray.remote
        def inc(x: int) -> int:
            return x + 1

        def run(k: int) -> float:
            t = time.perf_counter()
            if case in ("submit", "map"):
                ray.get([inc.remote(i) for i in range(k)])
            else:
                ends = []
                for _ in range(max(1, k // CHAIN)):
                    r = inc.remote(0)
                    for _ in range(CHAIN - 1):
                        r = inc.remote(r)
                    ends.append(r)
                assert ray.get(ends)[-1] == CHAIN
            return time.perf_counter() - t

        run(WARM)
        return run(n)
    finally:
        ray.shutdown()


def _braid(engine: str, address: str, case: str, n: int) -> float:
    from braid import flow
    from braid.testing.sample_tasks import inc

    if engine == "dask":
        from braid.adapters.dask import DaskTaskRunner

        runner: Any = DaskTaskRunner(address=address)
    else:
        from braid.adapters.ray import RayTaskRunner

        runner = RayTaskRunner(address=address)

    def run(k: int) -> float:
        t = time.perf_counter()
        if case == "submit":
            futures = [inc.submit(i) for i in range(k)]
            [f.result() for f in futures]
        elif case == "map":
            inc.map(range(k)).result()
        else:
            ends = []
            for _ in range(max(1, k // CHAIN)):
                f = inc.submit(0)
                for _ in range(CHAIN - 1):
                    f = inc.submit(f)
                ends.append(f)
            assert [e.result() for e in ends][-1] == CHAIN
        return time.perf_counter() - t

    @flow(task_runner=runner, name="growth")
    def measure() -> float:
        run(WARM)
        return run(n)

    return measure()


def _peak_rss_mb() -> float:
    """This process's peak RSS since its exec (VmHWM; ru_maxrss would count the parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def driver(engine: str, impl: str, address: str, case: str, n: int) -> None:
    """Time one case in this fresh process; print ``{"seconds", "rss_mb"}`` as JSON."""
    if impl == "braid":
        seconds = _braid(engine, address, case, n)
    elif engine == "dask":
        seconds = _raw_dask(address, case, n)
    else:
        seconds = _raw_ray(address, case, n)
    rss = _peak_rss_mb()
    print(json.dumps({"seconds": seconds, "rss_mb": rss}))


# -- clusters --------------------------------------------------------------------------
class DaskCluster:
    """A LocalCluster of 2 worker processes x 1 thread, for the length of a ``with``."""

    def __enter__(self) -> str:
        import logging

        from distributed import LocalCluster

        self.cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address="127.0.0.1:0",
            silence_logs=logging.ERROR,
            local_directory=tempfile.mkdtemp(prefix="bgd"),
        )
        return str(self.cluster.scheduler_address)

    def __exit__(self, *exc: object) -> None:
        self.cluster.close()


class RayHead:
    """A ``ray start --head`` node with 2 CPUs; stops only the processes of its temp dir."""

    def __enter__(self) -> str:
        from braid.testing.ray_processes import start_head

        self.temp_dir = tempfile.mkdtemp(prefix="bgr", dir="/tmp")
        return start_head(self.temp_dir, num_cpus=2, env=RAY_ENV)

    def __exit__(self, *exc: object) -> None:
        from braid.testing.ray_processes import stop_scoped

        stop_scoped(self.temp_dir)


def measure(engine: str, impl: str, address: str, case: str, n: int) -> dict[str, float]:
    """Run one driver process and return what it printed."""
    proc = subprocess.run(
        [sys.executable, __file__, "--driver", engine, impl, address, case, str(n)],
        env={**os.environ, **RAY_ENV},
        capture_output=True,
        text=True,
        timeout=3600,
        cwd=BENCH_DIR.parent,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{engine} {impl} {case} N={n} failed:\n{proc.stderr[-3000:]}")
    out: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def bench_engine(
    engine: str, sizes: list[int], rounds: int, budget: float, cases: list[str]
) -> list[dict[str, Any]]:
    """Every case at every size on one cluster of ``engine``; rows, with skips noted."""
    rows: list[dict[str, Any]] = []
    with DaskCluster() if engine == "dask" else RayHead() as address:
        for case in cases:
            last: tuple[int, float] | None = None
            for n in sizes:
                if last is not None and last[1] * n / last[0] > budget:
                    reason = (
                        f"skipped: raw {engine} would take ~{last[1] * n / last[0]:.0f} s "
                        f"(> --budget {budget:.0f} s)"
                    )
                    print(f"{engine:<5}{case:<8}{n:>8}  {reason}", flush=True)
                    rows.append(_row(engine, case, n, None, None, reason))
                    continue
                raws, braids = [], []
                for turn in range(rounds if n < 100_000 else 1):  # fresh drivers
                    for impl in ("raw", "braid") if turn % 2 == 0 else ("braid", "raw"):
                        got = measure(engine, impl, address, case, n)
                        (raws if impl == "raw" else braids).append(got)
                raw = min(raws, key=lambda r: r["seconds"])
                ours = min(braids, key=lambda r: r["seconds"])
                last = (n, raw["seconds"])
                row = _row(engine, case, n, ours, raw, None)
                rows.append(row)
                print(
                    f"{engine:<5}{case:<8}{n:>8}  raw {raw['seconds']:8.2f} s "
                    f"{raw['rss_mb']:6.0f} MB   braid {ours['seconds']:8.2f} s "
                    f"{ours['rss_mb']:6.0f} MB   time {row['ratio']:.2f}x  "
                    f"rss {row['rss_ratio']:.2f}x",
                    flush=True,
                )
    return rows


def _row(
    engine: str,
    case: str,
    n: int,
    ours: dict[str, float] | None,
    raw: dict[str, float] | None,
    skipped: str | None,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "runner": "DaskTaskRunner" if engine == "dask" else "RayTaskRunner",
        "backend": "distributed.Client" if engine == "dask" else "ray.remote",
        "case": case,
        "n": n,
        "braid_us_per_task": None,
        "raw_us_per_task": None,
        "ratio": None,
        "braid_rss_mb": None,
        "raw_rss_mb": None,
        "rss_ratio": None,
    }
    if skipped:
        row["skipped"] = skipped
        row["note"] = "skipped: raw over budget"
    if ours and raw:
        row.update(
            braid_us_per_task=ours["seconds"] / n * 1e6,
            raw_us_per_task=raw["seconds"] / n * 1e6,
            ratio=ours["seconds"] / raw["seconds"],
            braid_rss_mb=round(ours["rss_mb"], 1),
            raw_rss_mb=round(raw["rss_mb"], 1),
            rss_ratio=ours["rss_mb"] / raw["rss_mb"],
        )
    return row


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--driver":
        engine, impl, address, case, n = sys.argv[2:7]
        driver(engine, impl, address, case, int(n))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("dask", "ray", "both"), default="both")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget", type=float, default=120.0, help="seconds per raw case")
    parser.add_argument("--json", metavar="PATH", help="write rows (bench/common.py schema)")
    parser.add_argument("--quick", action="store_true", help="N = 1 000 only, one round")
    args = parser.parse_args()
    sizes = [1000] if args.quick else [int(s) for s in args.sizes.split(",")]
    rounds = 1 if args.quick else args.rounds
    engines = ("dask", "ray") if args.engine == "both" else (args.engine,)
    rows: list[dict[str, Any]] = []
    for engine in engines:
        rows += bench_engine(engine, sizes, rounds, args.budget, args.cases.split(","))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
