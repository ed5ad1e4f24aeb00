"""SequentialTaskRunner passes braid's conformance suite: one class, one fixture.

Run from this directory with ``pytest test_seqrunner.py``; or run the same suite
through braid's pytest plugin with
``pytest --pyargs braid.testing --braid-runner seqrunner:SequentialTaskRunner``.
"""

from __future__ import annotations

import pytest
from seqrunner import SequentialTaskRunner

from braid.testing.suite import RunnerConformance


class TestSequentialTaskRunner(RunnerConformance):
    """Every behaviour test of the suite, on a fresh SequentialTaskRunner."""

    @pytest.fixture
    def runner(self) -> SequentialTaskRunner:
        return SequentialTaskRunner()
