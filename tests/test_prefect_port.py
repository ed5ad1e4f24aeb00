"""Prefect-style scripts ported by the rename rule alone run on every runner.

Each script in ``tests/prefect_scripts`` imports from ``prefect``/``prefect_dask`` as
written for Prefect; the test rewrites its imports with ``prefect_rename`` (nothing
else changes) and runs the flow with ``braid run`` on threads, processes, Dask and Ray.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prefect_rename import rename_imports

SCRIPTS = Path(__file__).resolve().parent / "prefect_scripts"
BRAID = Path(sys.executable).parent / "braid"
CASES = [
    ("orders_pipeline.py", "orders_pipeline", ["--param", 'items=["a","b","c"]']),
    ("nightly_retries.py", "nightly_retries", []),
]
RUNNERS = [
    ["--runner", "threads"],
    ["--runner", "processes", "--max-workers", "2"],
    ["--runner", "dask", "--max-workers", "2"],
    ["--runner", "ray", "--max-workers", "2"],
]


def test_the_rule_rewrites_only_imports_and_three_names():
    source = (
        "import prefect.states as s\nfrom prefect import flow\n"
        "from prefect_dask.utils import get_dask_client\n"
        "from prefect_ray.context import remote_options\n"
        "x: PrefectFuture = y  # prefect stays in comments and code\n"
        "z = PrefectFutureList(); w = PrefectDaskFuture\nimport prefect"
    )
    assert rename_imports(source) == (
        "import braid.states as s\nfrom braid import flow\n"
        "from braid.adapters.dask.utils import get_dask_client\n"
        "from braid.adapters.ray.context import remote_options\n"
        "x: TaskFuture = y  # prefect stays in comments and code\n"
        "z = FutureList(); w = DaskFuture\nimport braid"
    )


@pytest.mark.parametrize("runner", RUNNERS, ids=lambda r: r[1])
@pytest.mark.parametrize("script, flow_name, params", CASES, ids=[c[0] for c in CASES])
def test_ported_script_runs(tmp_path, script, flow_name, params, runner):
    ported = tmp_path / script
    ported.write_text(rename_imports((SCRIPTS / script).read_text()))
    assert "prefect" not in "".join(
        line for line in ported.read_text().splitlines() if line.startswith(("from ", "import "))
    )
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [str(BRAID), "run", f"{ported}:{flow_name}", *params, *runner, "--no-progress"],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
