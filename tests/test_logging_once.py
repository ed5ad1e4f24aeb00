"""A run record logged on a worker is printed once, on every runner, whether or not the
application configured logging (the worker prints nothing; the driver prints it)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("mode", ["none", "basic"])
@pytest.mark.parametrize("runner", ["threads", "processes", "dask", "ray"])
def test_a_worker_record_is_printed_once(runner, mode):
    env = {
        **os.environ,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "braid.testing.log_once_driver", runner, mode],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    assert output.count("hello from the worker, once") == 1, output[-3000:]
