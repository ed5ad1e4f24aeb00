"""The code is ruff-clean (lint rules of pyproject.toml, private names across modules
included), ruff-formatted, and mypy-clean (tests/test_typing.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_ruff_check_is_clean():
    proc = _ruff("check", ".")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_ruff_format_is_clean():
    proc = _ruff("format", "--check", ".")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_no_private_names_reached_across_modules():
    proc = _ruff("check", "--select", "SLF001", "braid", "examples")
    assert proc.returncode == 0, proc.stdout[-4000:]
