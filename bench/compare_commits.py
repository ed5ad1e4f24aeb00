"""Two versions of braid side by side in one run: per-task time of each case, and the ratio.

    .venv/bin/python bench/compare_commits.py --base c07603a [--head WORKTREE|REV]
        [--runners threads,processes,dask,ray] [--rounds 5] [--n 2000] [--json PATH]

``--base`` (and ``--head``, unless it is the working tree, the default) are checked
out with ``git worktree`` into a temporary directory.  Each round runs every runner
once per version, alternating which version goes first, each in a fresh Python whose
``PYTHONPATH`` puts that version's ``braid`` first (worker processes inherit it), so
both versions see the same machine load.  Inside each child one flow warms up, then
times each case ``--repeats`` times and reports the median seconds per task; the
table gives the median over rounds of each side and ``head / base``.

Cases (the same public API in both versions): ``submit`` (N ``.submit()`` then every
``.result()``), ``map`` (``.map(range(N)).result()``) and ``chain`` (chains of 100
dependent ``.submit(previous)``, N links in all).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().parent / "compare_child.py"
CASES = ("submit", "map", "chain")
DEFAULT_N = {"threads": 2000, "processes": 2000, "dask": 500, "ray": 500}


def checkout(rev: str, where: Path) -> Path:
    """A worktree of ``rev`` under ``where`` (removed by :func:`remove`)."""
    path = where / rev.replace("/", "_")
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(path), rev],
        check=True,
        capture_output=True,
    )
    return path


def remove(path: Path) -> None:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], capture_output=True
    )


def run_child(tree: Path, runner: str, n: int, repeats: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run(
        [sys.executable, str(CHILD), runner, str(n), str(repeats)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tree,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{runner} on {tree}: the child failed:\n{proc.stderr[-3000:]}")
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="the revision to compare against")
    parser.add_argument("--head", default=None, help="a revision (default: this worktree)")
    parser.add_argument("--runners", default="threads,processes")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n", type=int, default=None, help="tasks per case (per runner default)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    runners = [r.strip() for r in args.runners.split(",") if r.strip()]

    with tempfile.TemporaryDirectory(prefix="braid-compare-") as tmp:
        base = checkout(args.base, Path(tmp))
        head = ROOT if args.head is None else checkout(args.head, Path(tmp))
        samples: dict[tuple[str, str, str], list[float]] = {}
        try:
            for r in range(args.rounds):
                order = [("base", base), ("head", head)]
                if r % 2:
                    order.reverse()
                for runner in runners:
                    n = args.n or DEFAULT_N[runner]
                    for side, tree in order:
                        print(f"round {r + 1}/{args.rounds}: {runner} {side}", file=sys.stderr)
                        for case, seconds in run_child(tree, runner, n, args.repeats).items():
                            samples.setdefault((runner, case, side), []).append(seconds)
        finally:
            remove(base)
            if head is not ROOT:
                remove(head)

    rows: list[dict[str, Any]] = []
    print(
        f"\nbraid {args.head or 'worktree'} against {args.base}: median µs per task over "
        f"{args.rounds} rounds (each the median of {args.repeats} repeats)\n"
    )
    print("| runner | case | base µs | head µs | head / base |")
    print("|---|---|---:|---:|---:|")
    for runner in runners:
        for case in CASES:
            b = statistics.median(samples[(runner, case, "base")]) * 1e6
            h = statistics.median(samples[(runner, case, "head")]) * 1e6
            rows.append(
                {"runner": runner, "case": case, "base_us": b, "head_us": h, "ratio": h / b}
            )
            print(f"| {runner} | {case} | {b:.1f} | {h:.1f} | {h / b:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
