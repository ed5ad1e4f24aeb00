"""The benchmark command runs end to end and writes what the README and the lead read.

No timing is asserted: the numbers depend on the machine.  What is pinned is the shape:
the quick run prints the tables and writes JSON with the documented keys, and a
benchmark script that is missing, lacks ``--json`` or writes bad rows is reported, not
fatal.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
ROW_KEYS = {"runner", "backend", "case", "n", "braid_us_per_task", "raw_us_per_task", "ratio"}


@pytest.fixture
def run_all(monkeypatch):
    """bench/run_all.py imported as a module; the bench modules are unloaded afterwards."""
    monkeypatch.syspath_prepend(str(BENCH))
    before = set(sys.modules)
    import run_all

    yield run_all
    for name in set(sys.modules) - before:
        if str(getattr(sys.modules[name], "__file__", "")).startswith(str(BENCH)):
            del sys.modules[name]


@pytest.mark.timeout(600)
def test_quick_run_prints_tables_and_writes_json(tmp_path):
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run_all.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=590,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    assert "| runner" in text and "braid/raw" in text
    for runner in ("ThreadPoolTaskRunner", "ProcessPoolTaskRunner"):
        assert f"| {runner}" in text
    assert "import braid" in text and "hello-world flow" in text
    assert "1,000,000" in text
    assert "### Targets" in text

    data = json.loads(out.read_text(encoding="utf-8"))
    assert {
        "command",
        "quick",
        "machine",
        "overhead",
        "growth",
        "import",
        "memory",
        "targets",
        "benchmarks",
    } <= set(data)
    assert data["quick"] is True
    assert {"cpu", "cores", "python"} <= set(data["machine"])
    rows = data["overhead"]
    assert {(r["runner"], r["case"]) for r in rows} == {
        (runner, case)
        for runner in ("ThreadPoolTaskRunner", "ProcessPoolTaskRunner")
        for case in ("submit", "map", "chain")
    }
    for row in rows:
        assert ROW_KEYS <= set(row)
        assert row["n"] == 1000
        assert row["braid_us_per_task"] > 0 and row["raw_us_per_task"] > 0
        assert row["ratio"] == pytest.approx(
            row["braid_us_per_task"] / row["raw_us_per_task"], rel=0.02
        )
    assert {"bare_ms", "import_braid_ms", "import_over_bare_ms", "hello_flow_ms", "met"} <= set(
        data["import"]
    )
    assert data["import"]["heavy_modules_imported"] == []
    memory = data["memory"]
    assert memory["n"] == 100_000
    assert memory["braid"]["peak_delta_bytes"] >= 0
    assert {"seconds", "peak_rss_bytes", "met_seconds", "met_memory", "estimated"} <= set(
        memory["million"]
    )
    assert all({"target", "measured", "met"} <= set(t) for t in data["targets"])
    status = {b["name"]: b["status"] for b in data["benchmarks"]}
    assert status["threads"] == status["processes"] == "ok"
    assert status["import"] == status["memory"] == "ok"
    assert status["dask"] == status["ray"] == "skipped"  # never under --quick


def _script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return str(path)  # absolute: run_all joins it to bench/ and keeps it as is


def test_missing_script_is_skipped(run_all, tmp_path):
    bench = run_all.Bench("dask", str(tmp_path / "absent.py"), "overhead", ours=False)
    outcome = run_all.run_bench(bench, quick=False, full=False)
    assert outcome.status == "skipped"
    assert "not present" in outcome.reason


def test_missing_extra_is_skipped(run_all, tmp_path):
    script = _script(tmp_path, "bench_x.py", "raise SystemExit(3)\n")
    bench = run_all.Bench(
        "x",
        script,
        "overhead",
        ours=False,
        extra_module="braid_no_such_module_for_tests",
        extra="x",
    )
    outcome = run_all.run_bench(bench, quick=False, full=False)
    assert outcome.status == "skipped"
    assert "pip install 'braid-flow[x]'" in outcome.reason


def test_script_without_json_option_is_skipped(run_all, tmp_path):
    script = _script(
        tmp_path,
        "bench_x.py",
        """
        import argparse
        argparse.ArgumentParser().parse_args()  # run_all passes --json: refused here
    """,
    )
    outcome = run_all.run_bench(
        run_all.Bench("x", script, "overhead", ours=False), quick=False, full=False
    )
    assert (outcome.status, outcome.reason) == ("skipped", "skipped: bench script has no --json")


def test_script_that_ignores_json_is_skipped(run_all, tmp_path):
    script = _script(tmp_path, "bench_x.py", "print('a table, but no --json file')\n")
    outcome = run_all.run_bench(
        run_all.Bench("x", script, "overhead", ours=False), quick=False, full=False
    )
    assert (outcome.status, outcome.reason) == ("skipped", "skipped: bench script has no --json")


def test_script_that_never_mentions_json_is_skipped_unrun(run_all, tmp_path):
    script = _script(tmp_path, "bench_x.py", "import sys; int(sys.argv[1])  # takes N\n")
    outcome = run_all.run_bench(
        run_all.Bench("x", script, "overhead", ours=False), quick=False, full=False
    )
    assert (outcome.status, outcome.reason) == ("skipped", "skipped: bench script has no --json")


def test_bad_rows_and_crashes_are_failures(run_all, tmp_path):
    bad_rows = _script(
        tmp_path,
        "bench_bad.py",
        """
        import json, sys
        json.dump([{"runner": "X"}], open(sys.argv[sys.argv.index("--json") + 1], "w"))
    """,
    )
    outcome = run_all.run_bench(
        run_all.Bench("x", bad_rows, "overhead", ours=False), quick=False, full=False
    )
    assert outcome.status == "failed" and "lacks key(s)" in outcome.reason

    crash = _script(tmp_path, "bench_crash.py", "raise RuntimeError('boom')  # --json\n")
    outcome = run_all.run_bench(
        run_all.Bench("x", crash, "overhead", ours=False), quick=False, full=False
    )
    assert outcome.status == "failed" and "boom" in outcome.reason


def test_rows_from_another_script_are_merged(run_all, tmp_path):
    script = _script(
        tmp_path,
        "bench_ok.py",
        """
        import json, sys
        row = {"runner": "DaskTaskRunner", "backend": "distributed.Client.submit",
               "case": "submit", "n": 1000, "braid_us_per_task": 300.0,
               "raw_us_per_task": 250.0, "ratio": 1.2}
        json.dump([row], open(sys.argv[sys.argv.index("--json") + 1], "w"))
    """,
    )
    outcome = run_all.run_bench(
        run_all.Bench("x", script, "overhead", ours=False), quick=False, full=False
    )
    assert outcome.status == "ok"
    assert outcome.data[0]["runner"] == "DaskTaskRunner"


def test_growth_compares_largest_to_smallest_n(run_all):
    common = sys.modules["common"]
    rows = [
        common.make_row("R", "B", "map", n, us, us / 2)
        for n, us in ((1_000, 10.0), (10_000, 11.0), (100_000, 15.0))
    ]
    rows.append(common.make_row("R", "B", "chain", 1_000, 5.0, 5.0))
    rows.append(common.make_row("R", "B", "chain", 10_000, None, None, "skipped"))
    assert run_all.growth(rows) == [
        {
            "runner": "R",
            "case": "map",
            "n_from": 1_000,
            "n_to": 100_000,
            "braid_growth": 1.5,
            "raw_growth": 1.5,
        }
    ]


def test_growth_on_dask_and_ray_is_a_target_flat_or_no_worse_than_raw(run_all):
    common = sys.modules["common"]
    rows = [
        common.make_row(runner, "B", case, n, us, raw)
        for runner, case, n, us, raw in (
            ("DaskTaskRunner", "map", 1_000, 10.0, 10.0),
            ("DaskTaskRunner", "map", 10_000, 12.0, 10.0),  # grew 1.20, raw flat: missed
            ("DaskTaskRunner", "chain", 1_000, 10.0, 10.0),
            ("DaskTaskRunner", "chain", 10_000, 14.0, 13.0),  # 1.40, raw grew 1.30: met
            ("RayTaskRunner", "submit", 1_000, 10.0, 10.0),
            ("RayTaskRunner", "submit", 100_000, 11.0, 8.0),  # 1.10: flat enough, met
            ("ThreadPoolTaskRunner", "map", 1_000, 1.0, 1.0),
            ("ThreadPoolTaskRunner", "map", 100_000, 2.0, 1.0),  # not an issue-18 runner
        )
    ]
    found = {
        t["target"].split(":")[0]: t["met"]
        for t in run_all.targets(rows, None, None)
        if "growth" in t["target"]
    }
    assert found == {
        "DaskTaskRunner map N=1000→10000": False,
        "DaskTaskRunner chain N=1000→10000": True,
        "RayTaskRunner submit N=1000→100000": True,
    }
