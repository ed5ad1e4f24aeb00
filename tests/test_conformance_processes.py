"""The conformance suite on ProcessPoolTaskRunner."""

from __future__ import annotations

import pytest

from braid.runners.processes import ProcessPoolTaskRunner
from braid.testing.suite import RunnerConformance


class TestProcessPool(RunnerConformance):
    @pytest.fixture
    def runner(self):
        return ProcessPoolTaskRunner(max_workers=2)
