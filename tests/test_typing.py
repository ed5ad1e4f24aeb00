"""braid's core and bundled runners type-check under ``mypy --strict``.

The checked files and the options are pyproject.toml's ``[tool.mypy]``; mypy is in the
``test`` extra.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None,
    reason="mypy is not installed (pip install braid-flow[test])",
)
def test_mypy_strict_passes(tmp_path: Path) -> None:
    # a fresh cache in tmp_path: the check writes nothing into the checkout
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / "mypy_cache"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert proc.returncode == 0, f"mypy found errors:\n{proc.stdout}{proc.stderr}"
