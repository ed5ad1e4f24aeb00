"""braid's pytest plugin: run the conformance suite on any runner, and report per runner.

Registered under the ``pytest11`` entry point as ``braid``, so pytest loads it in
every session of an environment where braid is installed.  It is inert unless
used: it adds one option and prints one table, only when conformance tests ran.

- ``--braid-runner package.module:ClassName`` (or ``package.module.ClassName``, or a
  function returning an unstarted runner) runs the whole suite against that runner::

      pytest --pyargs braid.testing --braid-runner mypkg.runners:MyRunner

  The spec is checked at start-up; a bad one is a usage error saying what is wrong.
- At the end of any session that ran conformance tests (the one-class route, the
  option, or both), the terminal summary has a table: per runner class, tests
  passed, failed, and skipped because the runner lacks a capability (named).
- The suite's modules are registered for assertion rewriting, so a failing check
  shows the values it compared.

Under pytest-xdist, each worker tags its reports with the runner's class name and
the controller builds the table from them.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from braid.core.runner import TaskRunner

__all__ = ["runner_from_option"]

#: the module ``pytest --pyargs braid.testing`` collects when ``--braid-runner`` is given
OPTION_MODULE = Path(__file__).with_name("test_runner_option.py")
#: how ``braid.testing.suite.require`` words a skip: group 1 is ``capability=value``
CAPABILITY_SKIP = re.compile(r"needs capability (\w+=\w+)")

_FACTORY = pytest.StashKey[Callable[[], "TaskRunner"]]()
_SUITE_MODULES = (
    "braid.testing.suite",
    "braid.testing.suite_lifecycle",
    "braid.testing.suite_faults",
)

# Rewrite the suite's asserts like a test module's; a module imported before this
# plugin loaded cannot be rewritten any more, and registering it would only warn.
pytest.register_assert_rewrite(*(m for m in _SUITE_MODULES if m not in sys.modules))


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("braid", "braid task runner conformance")
    group.addoption(
        "--braid-runner",
        dest="braid_runner",
        metavar="MODULE:CLASS",
        default=None,
        help="run braid's conformance suite against this task runner class (or function "
        "returning an unstarted runner): "
        "pytest --pyargs braid.testing --braid-runner mypkg.runners:MyRunner",
    )


def pytest_configure(config: pytest.Config) -> None:
    spec = config.getoption("braid_runner", None)
    if spec is not None:
        from braid.testing.runner_spec import RunnerSpecError, load_runner_factory

        try:
            config.stash[_FACTORY] = load_runner_factory(spec)
        except RunnerSpecError as exc:
            raise pytest.UsageError(f"--braid-runner: {exc}") from None
    elif config.getoption("pyargs", False) and any(
        arg.split("::")[0] in ("braid.testing", "braid.testing.test_runner_option")
        for arg in config.args
    ):
        raise pytest.UsageError(
            "pytest --pyargs braid.testing runs braid's conformance suite against the runner "
            "given with --braid-runner package.module:ClassName"
        )
    config.pluginmanager.register(ConformanceReport(), "braid-conformance-report")


def pytest_report_header(config: pytest.Config) -> str | None:
    spec = config.getoption("braid_runner", None)
    return None if spec is None else f"braid conformance suite against: {spec}"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Inside braid.testing collect nothing but the option module, and that only if used."""
    if collection_path.parent != OPTION_MODULE.parent or collection_path.suffix != ".py":
        return None
    if collection_path == OPTION_MODULE and config.getoption("braid_runner", None):
        return None
    return True


def runner_from_option(config: pytest.Config) -> TaskRunner:
    """A fresh, unstarted runner from ``--braid-runner``; skips the test if none was given."""
    factory = config.stash.get(_FACTORY, None)
    if factory is None:
        pytest.skip("no --braid-runner given (or braid's pytest plugin is not loaded)")
    return factory()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Tag each report of a conformance test with its suite class and runner class."""
    report = yield
    function = getattr(item, "function", None)
    if getattr(function, "__module__", "").startswith("braid.testing."):
        runner = (getattr(item, "funcargs", None) or {}).get("runner")
        report.braid_suite = item.parent.nodeid if item.parent is not None else item.nodeid
        report.braid_runner = None if runner is None else type(runner).__name__
    return report


@dataclass
class _Outcome:
    suite: str
    runner: str | None = None
    result: str = "passed"  # passed | failed | skipped
    capability: str | None = None


@dataclass
class _Row:
    suites: set[str] = field(default_factory=set)
    passed: int = 0
    failed: int = 0
    skipped_other: int = 0
    capabilities: Counter[str] = field(default_factory=Counter)


class ConformanceReport:
    """Collects the outcome of every conformance test; prints the per-runner table."""

    def __init__(self) -> None:
        self._outcomes: dict[str, _Outcome] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        suite = getattr(report, "braid_suite", None)
        if suite is None:
            return
        outcome = self._outcomes.setdefault(report.nodeid, _Outcome(suite))
        if getattr(report, "braid_runner", None):
            outcome.runner = report.braid_runner
        if report.failed:
            outcome.result = "failed"
        elif report.skipped and outcome.result != "failed":
            outcome.result = "skipped"
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
            match = CAPABILITY_SKIP.search(str(reason))
            outcome.capability = match.group(1) if match else None

    def rows(self) -> dict[str, _Row]:
        """Per runner class name: counts of passed, failed and skipped tests, in run order.

        A test that takes no ``runner`` fixture counts for the runner of its suite class.
        """
        runner_of_suite: dict[str, str] = {}
        for o in self._outcomes.values():
            if o.runner is not None:
                runner_of_suite.setdefault(o.suite, o.runner)
        rows: dict[str, _Row] = {}
        for o in self._outcomes.values():
            name = o.runner or runner_of_suite.get(o.suite) or o.suite.rpartition("::")[2]
            row = rows.setdefault(name, _Row())
            row.suites.add(o.suite)
            if o.result == "passed":
                row.passed += 1
            elif o.result == "failed":
                row.failed += 1
            elif o.capability is not None:
                row.capabilities[o.capability] += 1
            else:
                row.skipped_other += 1
        return rows

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        rows = self.rows()
        if not rows:
            return
        header = ("runner", "suites", "passed", "failed", "skipped: capability", "skipped: other")
        table = [header] + [
            (
                name,
                str(len(r.suites)),
                str(r.passed),
                str(r.failed),
                str(sum(r.capabilities.values())),
                str(r.skipped_other),
            )
            for name, r in rows.items()
        ]
        widths = [max(len(line[i]) for line in table) for i in range(len(header))]
        tr = terminalreporter
        tr.write_sep("=", "braid conformance suite, per runner")
        for i, line in enumerate(table):
            cells = [
                c.ljust(w) if j == 0 else c.rjust(w)
                for j, (c, w) in enumerate(zip(line, widths, strict=True))
            ]
            failed = i > 0 and line[3] != "0"
            tr.write_line("  ".join(cells), red=failed, green=i > 0 and not failed)
        for name, r in rows.items():
            if r.capabilities:
                needs = ", ".join(f"{cap} ({n})" for cap, n in sorted(r.capabilities.items()))
                tr.write_line(f"{name} skipped tests that need: {needs}")
