"""The conformance suite on ThreadPoolTaskRunner, with a roomy pool and with one worker."""

from __future__ import annotations

import pytest

from braid import ThreadPoolTaskRunner
from braid.testing.suite import RunnerConformance


class TestThreadPool(RunnerConformance):
    @pytest.fixture
    def runner(self):
        return ThreadPoolTaskRunner(max_workers=4)


class TestThreadPoolOneWorker(RunnerConformance):
    """One worker: every nested-submission and dependency test must still finish."""

    @pytest.fixture
    def runner(self):
        return ThreadPoolTaskRunner(max_workers=1)
