"""The whole conformance suite against the runner given with ``--braid-runner``.

``pytest --pyargs braid.testing --braid-runner mypkg.runners:MyRunner`` collects this
module (braid's pytest plugin ignores it when the option is absent).
"""

from __future__ import annotations

import pytest

from braid.core.runner import TaskRunner
from braid.testing.plugin import runner_from_option
from braid.testing.suite import RunnerConformance


class TestRunnerFromOption(RunnerConformance):
    """Every behaviour test, on a fresh runner made from the ``--braid-runner`` spec."""

    @pytest.fixture
    def runner(self, request: pytest.FixtureRequest) -> TaskRunner:
        return runner_from_option(request.config)
