"""Start-up cost: ``import braid`` and a hello-world flow as whole processes.

    .venv/bin/python bench/bench_import.py [--quick] [--json PATH] [--runs N]

Each measurement is the wall time (and the CPU time, steadier on a busy machine) of a
fresh interpreter (this venv's Python) running ``-c``, the median of N runs,
interleaved so that machine noise hits all three alike:

    bare         python -c pass
    import       python -c "import braid"
    hello flow   python -c "<a @task and a @flow, run once on the default runner>"

The target is ``import braid`` within 50 ms of the bare interpreter.  It also lists the
modules ``import braid`` pulls in and the slowest ones from ``-X importtime``, which is
where to look when the target is missed.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from common import (
    REPO_DIR,
    TARGET_IMPORT_MS,
    bench_arguments,
    fmt,
    markdown_table,
    progress,
    run_times,
    verdict,
    write_json,
)

HELLO_FLOW = """
from braid import flow, task

@task
def hello(name):
    return f"hello {name}"

@flow
def greet():
    return hello.submit("world").result()

assert greet() == "hello world"
"""

NEW_MODULES = """
import json, sys
before = set(sys.modules)
import braid
print(json.dumps(sorted(set(sys.modules) - before)))
"""

# Imported by `import braid` would mean an extra leaked into the light path.
HEAVY_MODULES = ("dask", "distributed", "ray", "numpy", "pandas", "asyncio")


def importtime_top(count: int = 8) -> list[dict[str, Any]]:
    """The modules with the largest own import time under ``-X importtime``."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import braid"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_DIR,
    )
    entries = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line.split(":", 1)[1].split("|")
        entries.append(
            {"module": name.strip(), "self_us": int(self_us), "cumulative_us": int(cumulative_us)}
        )
    entries.sort(key=lambda e: e["self_us"], reverse=True)
    return entries[:count]


def measure(runs: int) -> dict[str, Any]:
    """Medians in milliseconds, the target check and the import diagnostics."""
    commands = {
        "bare": [sys.executable, "-c", "pass"],
        "import": [sys.executable, "-c", "import braid"],
        "hello": [sys.executable, "-c", HELLO_FLOW],
    }
    for argv in commands.values():  # warm-up: bytecode caches, page cache
        run_times(argv, 1)
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in commands}
    for _ in range(runs):
        for key, argv in commands.items():
            samples[key] += run_times(argv, 1)
    ms = {k: statistics.median(w for w, _ in v) * 1e3 for k, v in samples.items()}
    cpu_ms = {k: statistics.median(c for _, c in v) * 1e3 for k, v in samples.items()}
    new_modules = json.loads(
        subprocess.run(
            [sys.executable, "-c", NEW_MODULES],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO_DIR,
        ).stdout
    )
    heavy = sorted({m.split(".")[0] for m in new_modules} & set(HEAVY_MODULES))
    over = ms["import"] - ms["bare"]
    return {
        "runs": runs,
        "bare_ms": round(ms["bare"], 1),
        "import_braid_ms": round(ms["import"], 1),
        "import_over_bare_ms": round(over, 1),
        "hello_flow_ms": round(ms["hello"], 1),
        "hello_over_bare_ms": round(ms["hello"] - ms["bare"], 1),
        "bare_cpu_ms": round(cpu_ms["bare"], 1),
        "import_braid_cpu_ms": round(cpu_ms["import"], 1),
        "hello_flow_cpu_ms": round(cpu_ms["hello"], 1),
        "target_over_bare_ms": TARGET_IMPORT_MS,
        "met": over <= TARGET_IMPORT_MS,
        "modules_imported": len(new_modules),
        "heavy_modules_imported": heavy,
        "importtime_top": importtime_top(),
    }


def table(result: dict[str, Any]) -> str:
    """The start-up measurements as a markdown table."""
    bare = result["bare_ms"]
    return markdown_table(
        ["process", "what it runs", "wall ms", "over bare ms", "CPU ms", "target"],
        [
            ["bare interpreter", "python -c pass", fmt(bare), "–", fmt(result["bare_cpu_ms"]), "–"],
            [
                "import braid",
                "python -c 'import braid'",
                fmt(result["import_braid_ms"]),
                fmt(result["import_over_bare_ms"]),
                fmt(result["import_braid_cpu_ms"]),
                f"≤ {TARGET_IMPORT_MS:.0f} over bare: {verdict(result['met'])}",
            ],
            [
                "hello-world flow",
                "one @task submitted in one @flow",
                fmt(result["hello_flow_ms"]),
                fmt(result["hello_over_bare_ms"]),
                fmt(result["hello_flow_cpu_ms"]),
                "–",
            ],
        ],
    )


def notes(result: dict[str, Any]) -> str:
    """Import diagnostics in two lines."""
    top = ", ".join(f"{e['module']} {e['self_us'] / 1e3:.1f}" for e in result["importtime_top"])
    heavy = ", ".join(result["heavy_modules_imported"]) or "none"
    return (
        f"`import braid` loads {result['modules_imported']} modules "
        f"(heavy or optional ones among them: {heavy}); median of {result['runs']} runs.\n"
        f"Slowest own import times (ms, `-X importtime`): {top}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = bench_arguments(__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, help="runs per command (default 20, quick 5)")
    args = parser.parse_args(argv)
    runs = args.runs or (5 if args.quick else 20)
    # measure imports of bytecode, as an installed wheel has: an editable install (and
    # PYTHONDONTWRITEBYTECODE) would otherwise recompile braid in every run
    import compileall

    compileall.compile_dir(str(Path(__file__).resolve().parent.parent / "braid"), quiet=1)
    progress(f"start-up: {runs} runs each of bare, import braid, hello-world flow")
    result = measure(runs)
    print(table(result))
    print()
    print(notes(result))
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
