"""Headless Chromium for tests that check what a browser renders (docs site, run report).

Chromium is installed by ``bash ci/install-chromium.sh`` (called by the test command).
Where it is missing the test is skipped, except in CI (``CI`` set), where it fails:
there the browser checks must run.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

__all__ = ["CHROMIUM", "run_chromium"]

CHROMIUM = Path("/usr/bin/chromium")


def run_chromium(
    profile: Path, url: str, *args: str, test: str = "this test"
) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium on ``url`` with ``args`` (profile kept under ``profile``) and
    return the finished process (text stdout/stderr); a non-zero exit fails the test,
    and Chromium gets 100 s at most."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is not installed (bash ci/install-chromium.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; in CI {test} must run")
        pytest.skip(reason)
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile / 'chromium-profile'}",
        "--window-size=1200,800",
        *args,
        url,
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=100, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done
