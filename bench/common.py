"""Shared pieces of the benchmarks: the row schema, targets, timing, tables, JSON.

Every overhead benchmark (``bench_threads.py``, ``bench_processes.py``,
``bench_dask.py``, ``bench_ray.py``) accepts ``--json PATH`` and writes there a JSON
list of rows, one row per (runner, case, N), with exactly these keys::

    runner              str    the braid runner measured, e.g. "ThreadPoolTaskRunner"
    backend             str    the raw backend doing the same work, e.g.
                               "concurrent.futures.ThreadPoolExecutor"
    case                str    "submit" (.submit() then .result() of N no-op tasks),
                               "map" (.map() over N items, then .result()) or
                               "chain" (N tasks in N/200 dependency chains of 200)
    n                   int    number of task runs in one repeat
    braid_us_per_task   float  median over repeats of elapsed / n, in microseconds,
                               or null when the line was not measured
    raw_us_per_task     float  the same for the raw backend, or null
    ratio               float  braid_us_per_task / raw_us_per_task, or null

A row may carry one more key, ``note`` (str), saying why a value is null (for
example a line skipped because it would exceed the time budget).

How to measure honestly: the same number of workers on both sides, a warm-up run
on the started pool before timing (pool start-up is not per-task overhead), then
the median of a few repeats.  ``run_all.py`` runs each benchmark as a subprocess
and merges what they write.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypedDict

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent

ROW_KEYS = ("runner", "backend", "case", "n", "braid_us_per_task", "raw_us_per_task", "ratio")
CASES = ("submit", "map", "chain")
CHAIN_LENGTH = 200

# Targets of issues 9 and 18.  The benchmark reports misses; it never fails on them.
TARGET_RATIO = 1.3
TARGET_IMPORT_MS = 50.0
TARGET_MILLION_SECONDS = 10.0  # issue 18 (issue 9 asked for 60)
TARGET_MILLION_BYTES = 1 << 30
#: issue 18: on Dask and Ray, braid's µs/task at the largest N over the smallest ("growth")
#: stays flat or no worse than the raw engine's: at most max(1, raw growth) plus this
#: slack, the spread of one case's growth between two full runs at one commit (0.97 vs
#: 1.15 for the Dask submit, fresh drivers, best of two each)
TARGET_GROWTH_SLACK = 0.15
GROWTH_RUNNERS = ("DaskTaskRunner", "RayTaskRunner")

FULL_SIZES = (1_000, 10_000, 100_000)
QUICK_SIZES = (1_000,)
FULL_REPEATS = 5
QUICK_REPEATS = 3
# A line whose estimated duration exceeds this many seconds is skipped (with a note).
FULL_LINE_BUDGET_S = 60.0


class Row(TypedDict, total=False):
    """One line of the overhead table; see the module docstring for the keys."""

    runner: str
    backend: str
    case: str
    n: int
    braid_us_per_task: float | None
    raw_us_per_task: float | None
    ratio: float | None
    note: str


def make_row(
    runner: str,
    backend: str,
    case: str,
    n: int,
    braid_us: float | None,
    raw_us: float | None,
    note: str | None = None,
) -> Row:
    """A row of the schema above, with the ratio computed when both sides were measured."""
    ratio = braid_us / raw_us if braid_us is not None and raw_us else None
    row: Row = {
        "runner": runner,
        "backend": backend,
        "case": case,
        "n": n,
        "braid_us_per_task": _round(braid_us),
        "raw_us_per_task": _round(raw_us),
        "ratio": _round(ratio, 3),
    }
    if note:
        row["note"] = note
    return row


def check_rows(data: Any) -> list[Row]:
    """Return ``data`` as rows if it is a list of dicts carrying every key of the schema.

    Raises ``ValueError`` naming the first problem; ``run_all.py`` reports it as the
    benchmark's failure instead of crashing on another engineer's script.
    """
    if not isinstance(data, list):
        raise ValueError(f"expected a JSON list of rows, got {type(data).__name__}")
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise ValueError(f"row {i} is a {type(row).__name__}, not an object")
        missing = [k for k in ROW_KEYS if k not in row]
        if missing:
            raise ValueError(f"row {i} lacks key(s) {missing}")
    return data


def _round(x: float | None, digits: int = 2) -> float | None:
    return None if x is None else round(x, digits)


# -- timing ------------------------------------------------------------------------------


def time_once(fn: Callable[[], Any]) -> float:
    """Seconds taken by one call of ``fn``, after a full garbage collection."""
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_times(
    argv: Sequence[str], runs: int, env: dict[str, str] | None = None
) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of ``runs`` runs of a whole process ``argv`` (must exit 0).

    CPU is the child's user + system time: on a machine shared with other work it
    moves less than the wall time, so both are worth reporting.
    """
    times = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(argv, check=True, env=env, cwd=REPO_DIR, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        times.append((wall, cpu))
    return times


def progress(message: str) -> None:
    """One progress line on stderr (stdout carries the table)."""
    print(message, file=sys.stderr, flush=True)


# -- machine -------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: CPU model, cores, memory, Python, braid commit."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    mem_gb = None
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    commit = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_gb": mem_gb,
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "braid_commit": commit or None,
        "load_average": _load_average(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_line(info: dict[str, Any]) -> str:
    """The machine in one line, for the top of the table."""
    return (
        f"{info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), "
        f"{info['memory_gb']} GB, {info['os']}, {info['python']}, "
        f"braid {info['braid_commit'] or '?'}, load average at start "
        f"{info['load_average']}, {info['date']}"
    )


# -- output ------------------------------------------------------------------------------


def fmt(x: float | None, digits: int = 1, suffix: str = "") -> str:
    """A number for a table cell; a dash for a missing value."""
    return "–" if x is None else f"{x:,.{digits}f}{suffix}"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[str]], left: int = 2) -> str:
    """A GitHub markdown table; columns after the first ``left`` are right-aligned."""
    rows = [list(r) for r in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, (c, w) in enumerate(zip(cells, widths, strict=True)):
            out.append(c.ljust(w) if i < left else c.rjust(w))
        return "| " + " | ".join(out) + " |"

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 2)) if i < left else ("-" * (w + 1) + ":") for i, w in enumerate(widths)
        )
        + "|"
    )
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def verdict(met: bool | None) -> str:
    """Table cell for a target check."""
    return "–" if met is None else ("ok" if met else "**MISS**")


def overhead_table(rows: Iterable[Row]) -> str:
    """The overhead rows as a markdown table with the ratio target checked per line."""
    cells = []
    for r in rows:
        ratio = r.get("ratio")
        check = verdict(ratio <= TARGET_RATIO) if ratio is not None else r.get("note", "–")
        cells.append(
            [
                r["runner"],
                r["case"],
                f"{r['n']:,}",
                fmt(r.get("braid_us_per_task")),
                fmt(r.get("raw_us_per_task")),
                fmt(ratio, 2),
                check,
            ]
        )
    return markdown_table(
        ["runner", "case", "N", "braid µs/task", "raw µs/task", "braid/raw", f"≤ {TARGET_RATIO}"],
        cells,
    )


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON, creating the parent directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def bench_arguments(description: str) -> argparse.ArgumentParser:
    """The options every benchmark script takes: ``--quick`` and ``--json PATH``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="N = 1 000 only and fewer repeats (a smoke run, under a minute)",
    )
    parser.add_argument("--json", metavar="PATH", help="write the results there as JSON")
    return parser
