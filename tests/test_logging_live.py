"""Every kind of record a task makes (run logger, other logger, warning, print under
``log_prints``) is shown once, on every runner, whether or not the application
configured logging, even when the worker configured its own
logging and (on Ray) its output is streamed to the driver, and on Dask workers that are
threads of the driver's own process.  The live ordering and the
run fields are checked by the conformance suite (braid/testing/suite_logging.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest


@pytest.mark.parametrize("mode", ["basic", "none"])
@pytest.mark.parametrize("runner", ["threads", "processes", "dask", "dask-inproc", "ray"])
def test_each_record_of_a_task_is_shown_once(runner, mode):
    if runner != "threads" and runner != "processes":
        pytest.importorskip("ray" if runner == "ray" else "distributed")
    token = uuid.uuid4().hex[:12]
    env = {
        **os.environ,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "braid.testing.log_live_driver", runner, token, mode],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    for line in ("run record", "library record", "TaskWarning: careful", "printed"):
        assert output.count(f"{line} {token}") == 1, (line, output[-3000:])
