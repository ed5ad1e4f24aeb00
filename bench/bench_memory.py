"""Peak memory and time of many mapped no-op tasks on threads, braid against the raw pool.

    .venv/bin/python bench/bench_memory.py [--quick] [--json PATH] [--full]

Each measurement runs in its own subprocess, so one run's heap never counts in
another's.  The child imports what it needs, warms its pool up with 1 000 tasks, reads
its peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), maps N no-op tasks and
collects every result while all N futures are alive, then reads its peak RSS again.
The growth of the peak is what N task runs cost; the absolute peak is what the
1 000 000-task target is checked against.

    braid  identity.map(range(N)).result() in a flow on ThreadPoolTaskRunner
    raw    list(ThreadPoolExecutor.map(identity, range(N)))   (same max_workers)

N is 100 000.  The target (1 000 000 tasks in <= 60 s and <= 1 GB peak) is run only
with ``--full``; otherwise it is extrapolated linearly from N and marked as such.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

from common import (
    TARGET_MILLION_BYTES,
    TARGET_MILLION_SECONDS,
    bench_arguments,
    fmt,
    markdown_table,
    progress,
    verdict,
    write_json,
)
from overhead import identity  # noqa: E402 - the same no-op as the overhead cases

N = 100_000
MILLION = 1_000_000
WARMUP = 1_000
CHILD_TIMEOUT_S = 900


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # kB on Linux


def child(side: str, n: int, workers: int) -> dict[str, Any]:
    """Run in the subprocess: map ``n`` no-op tasks and report time and peak memory."""
    if side == "braid":
        from braid import ThreadPoolTaskRunner, flow, task

        identity_task = task(name="identity")(identity)

        @flow(name="bench-memory", task_runner=ThreadPoolTaskRunner(max_workers=workers))
        def mapped(count: int, measure: bool) -> dict[str, float]:
            if not measure:
                identity_task.map(range(count)).result()
                return {}
            baseline = peak_rss_bytes()
            start = time.perf_counter()
            identity_task.map(range(count)).result()
            return {"seconds": time.perf_counter() - start, "baseline": baseline}

        mapped(WARMUP, False)
        out = mapped(n, True)
        seconds, baseline = out["seconds"], int(out["baseline"])
    else:
        import concurrent.futures as cf

        with cf.ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(identity, range(WARMUP)))
            baseline = peak_rss_bytes()
            start = time.perf_counter()
            list(pool.map(identity, range(n)))
            seconds = time.perf_counter() - start
    peak = peak_rss_bytes()
    return {
        "side": side,
        "n": n,
        "seconds": seconds,
        "baseline_rss_bytes": baseline,
        "peak_rss_bytes": peak,
        "peak_delta_bytes": peak - baseline,
    }


def run_child(side: str, n: int, workers: int) -> dict[str, Any]:
    """Measure one side in a fresh interpreter."""
    progress(f"memory: {side}, {n:,} mapped no-op tasks on {workers} threads")
    proc = subprocess.run(
        [sys.executable, __file__, "--child", side, str(n), str(workers)],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory child {side} N={n} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(full: bool, workers: int) -> dict[str, Any]:
    """Both sides at N, and the million-task target (run or extrapolated)."""
    braid = run_child("braid", N, workers)
    raw = run_child("raw", N, workers)
    if full:
        million = run_child("braid", MILLION, workers)
        million["estimated"] = False
    else:
        scale = MILLION / N
        million = {
            "side": "braid",
            "n": MILLION,
            "estimated": True,
            "seconds": braid["seconds"] * scale,
            "peak_delta_bytes": int(braid["peak_delta_bytes"] * scale),
            "peak_rss_bytes": int(braid["baseline_rss_bytes"] + braid["peak_delta_bytes"] * scale),
        }
    million["met_seconds"] = million["seconds"] <= TARGET_MILLION_SECONDS
    million["met_memory"] = million["peak_rss_bytes"] <= TARGET_MILLION_BYTES
    million["target_seconds"] = TARGET_MILLION_SECONDS
    million["target_bytes"] = TARGET_MILLION_BYTES
    ratio = (
        braid["peak_delta_bytes"] / raw["peak_delta_bytes"] if raw["peak_delta_bytes"] > 0 else None
    )
    return {
        "workers": workers,
        "n": N,
        "braid": braid,
        "raw": raw,
        "peak_delta_ratio": None if ratio is None else round(ratio, 2),
        "million": million,
    }


def _mb(x: float) -> str:
    return fmt(x / 2**20, 0)


def table(result: dict[str, Any]) -> str:
    """Memory and time of the mapped runs as a markdown table."""
    braid, raw, million = result["braid"], result["raw"], result["million"]
    how = "extrapolated ×10*" if million["estimated"] else "run"
    rows = []
    for label, r in (("braid threads", braid), ("raw ThreadPoolExecutor", raw)):
        rows.append(
            [
                label,
                f"{r['n']:,}",
                fmt(r["seconds"], 2),
                fmt(r["seconds"] / r["n"] * 1e6),
                _mb(r["peak_delta_bytes"]),
                fmt(r["peak_delta_bytes"] / r["n"], 0),
                _mb(r["peak_rss_bytes"]),
                "–",
            ]
        )
    target = (
        f"≤ {TARGET_MILLION_SECONDS:.0f} s: {verdict(million['met_seconds'])}, "
        f"≤ {TARGET_MILLION_BYTES / 2**30:.0f} GB: {verdict(million['met_memory'])}"
    )
    rows.append(
        [
            f"braid threads, {how}",
            f"{MILLION:,}",
            fmt(million["seconds"], 2),
            fmt(million["seconds"] / MILLION * 1e6),
            _mb(million["peak_delta_bytes"]),
            fmt(million["peak_delta_bytes"] / MILLION, 0),
            _mb(million["peak_rss_bytes"]),
            target,
        ]
    )
    text = markdown_table(
        [
            "mapped no-op tasks",
            "N",
            "seconds",
            "µs/task",
            "peak growth MB",
            "bytes/task",
            "peak RSS MB",
            "target",
        ],
        rows,
        left=1,
    )
    if million["estimated"]:
        text += "\n\n\\* not run: extrapolated from N = 100 000; `--full` runs it."
    return text


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        side, n, workers = argv[1], int(argv[2]), int(argv[3])
        print(json.dumps(child(side, n, workers)))
        return 0
    parser = bench_arguments(__doc__.splitlines()[0])
    parser.add_argument(
        "--full",
        action="store_true",
        help="run the 1 000 000-task target instead of extrapolating it",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(32, (os.cpu_count() or 1) + 4),
        help="max_workers on both sides (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    result = measure(args.full, args.workers)
    print(f"max_workers = {args.workers} on both sides\n")
    print(table(result))
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
