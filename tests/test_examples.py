"""Every script in examples/ runs to completion and prints what it promises.

Each example needs an entry in ``EXPECTED``: a new script without one fails here,
so examples cannot silently stop working or go untested.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))


@dataclass(frozen=True)
class Expect:
    """What a script's stdout must hold: whole lines, line prefixes, and lines in order."""

    lines: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    in_order: tuple[tuple[str, ...], ...] = ()


EXPECTED: dict[str, Expect] = {
    "demo.py": Expect(prefixes=("threads: sum of squares 0..99 = 328350",)),
    "seed_elevator.py": Expect(
        lines=(
            *(f"elevator moving to floor {n}" for n in range(10, 0, -1)),
            *(f"elevator stops on floor {n}" for n in range(10, 0, -1)),
            "all stops done: 10 final, 0 pending",
            "most stops under way at once: 3",
        ),
        in_order=tuple(
            (f"elevator moving to floor {n}", f"elevator stops on floor {n}")
            for n in range(10, 0, -1)
        ),
    ),
    "seed_futures_as_arguments.py": Expect(
        lines=("<class 'str'>", "Hello Marvin!"),
        in_order=(("<class 'str'>", "Hello Marvin!"),),
    ),
    "seed_results.py": Expect(
        lines=(
            "result: 42",
            "completed: I'm a task!",
            "failed: ValueError: the task was asked to fail",
        ),
    ),
    "seed_wait_for.py": Expect(
        lines=("task_a done", "task_b done", "task_c done", "task_d done"),
        in_order=(
            ("task_a done", "task_c done", "task_d done"),
            ("task_b done", "task_c done", "task_d done"),
        ),
    ),
    "seed_simple_map.py": Expect(
        lines=("1", "4", "9", "25", "64", "169"),
        in_order=(("1", "4", "9", "25", "64", "169"),),
    ),
    "seed_map_static_value.py": Expect(lines=("sums: [6, 7, 8]",)),
    "seed_map_unmapped.py": Expect(lines=("sums: [10, 11, 12]",)),
    "seed_nested_mapped_tasks.py": Expect(
        lines=(
            "Analysis Results:",
            "  Word counts: [9, 11, 10]",
            "  Extracted emails: [['visitor@example.com'], ['developer@example.com'], "
            "['events@company.org']]",
        ),
    ),
    "seed_model_evaluation.py": Expect(
        lines=tuple(
            f"task run: train on {d} with {m}"
            for d in ("customers", "products", "orders")
            for m in ("random_forest", "gradient_boosting")
        ),
        prefixes=("Best model: {'dataset': ",),
    ),
    "seed_multiple_runners.py": Expect(
        lines=(
            "Hello marvin!",
            "Hello ford!",
            "threads nested flow runs on ThreadPoolTaskRunner",
            "Hello from threads!",
            "processes nested flow runs on ProcessPoolTaskRunner",
            "Hello from processes!",
            "dask nested flow runs on DaskTaskRunner",
            "Hello from dask!",
            "ray nested flow runs on RayTaskRunner",
            "Hello from ray!",
        ),
        in_order=(
            ("threads nested flow runs on ThreadPoolTaskRunner", "Hello from threads!"),
            ("processes nested flow runs on ProcessPoolTaskRunner", "Hello from processes!"),
            ("dask nested flow runs on DaskTaskRunner", "Hello from dask!"),
            ("ray nested flow runs on RayTaskRunner", "Hello from ray!"),
        ),
    ),
    "retries_and_timeouts.py": Expect(
        lines=(
            "flaky: attempt 1",
            "flaky: attempt 2",
            "flaky: attempt 3",
            "flaky succeeded on attempt 3",
            "too_slow failed: True",
        ),
        prefixes=("too_slow: FAILED TimedOut (gave up after 0.",),
        in_order=(
            (
                "flaky: attempt 1",
                "flaky: attempt 2",
                "flaky: attempt 3",
                "flaky succeeded on attempt 3",
            ),
        ),
    ),
    "async_flow.py": Expect(
        lines=(
            "awaited directly: apple costs 3",
            "submitted: pear costs 4",
            "mapped: [3, 4, 2, 7]",
            "total: 16",
        ),
    ),
}


def run_script(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(path)],
        cwd=EXAMPLES.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_expectation_names_an_existing_example():
    assert sorted(EXPECTED) == sorted(p.name for p in SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_example_runs_and_prints_what_it_promises(script: Path):
    assert script.name in EXPECTED, f"add an expectation for examples/{script.name} to EXPECTED"
    expect = EXPECTED[script.name]
    proc = run_script(script)
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    out = proc.stdout.splitlines()
    context = f"\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    for line in expect.lines:
        assert line in out, f"missing line {line!r}{context}"
    for prefix in expect.prefixes:
        assert any(o.startswith(prefix) for o in out), f"no line starts {prefix!r}{context}"
    for chain in expect.in_order:
        positions = [out.index(line) for line in chain]
        assert positions == sorted(positions), f"lines out of order: {chain}{context}"
