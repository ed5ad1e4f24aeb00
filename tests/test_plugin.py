"""braid's pytest plugin and the suite as a product, checked in real pytest sessions.

Each session runs in a subprocess (``pytester``), in a directory outside the braid
package, with warnings as errors.  The sequential runner of
``examples/sequential_runner`` passes the whole suite by both routes: one class with
a ``runner`` fixture, and ``pytest --pyargs braid.testing --braid-runner ...``.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
from pathlib import Path

import pytest

from braid.testing.runner_spec import RunnerSpecError, load_runner_factory

pytest_plugins = ["pytester"]

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sequential_runner"

# Once braid is installed with its pytest11 entry point the plugin loads by itself;
# naming it again with -p would register the same module twice.
PLUGIN = (
    ()
    if importlib.metadata.entry_points(group="pytest11", name="braid")
    else ("-p", "braid.testing.plugin")
)

# A few suite tests, each hitting one path: passes everywhere, needs pickling,
# needs a remote worker, needs runs that can be interrupted, takes no runner fixture.
FEW = (
    "-k",
    "test_simple_map or test_unpicklable_parameter_named_at_submit "
    "or test_worker_death_crashes_only_its_run or test_reserved_parameter_names_refused"
    " or test_stuck_task_is_really_stopped",
)


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project outside braid, strict about warnings, holding the example runner."""
    pytester.makeini("[pytest]\nfilterwarnings = error\naddopts = -p no:cacheprovider\n")
    for name in ("seqrunner.py", "test_seqrunner.py"):
        shutil.copy(EXAMPLE / name, pytester.path / name)
    pytester.mkpydir("mypkg")
    pytester.makepyfile(
        **{
            "mypkg/runners": """
        from braid import ThreadPoolTaskRunner
        from braid.runners.base import Capabilities

        class MyRunner(ThreadPoolTaskRunner):
            '''A runner outside braid (its pool is the thread runner's).'''

        class ClaimsInterrupts(ThreadPoolTaskRunner):
            '''Declares a capability it does not have: the suite must catch it.'''
            capabilities = Capabilities(can_interrupt_running=True)

        def two_threads():
            return ThreadPoolTaskRunner(max_workers=2)
    """
        }
    )
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*PLUGIN, *args)


def row(result: pytest.RunResult, runner: str) -> dict[str, int]:
    """The counts of ``runner``'s line in the per-runner table."""
    pattern = re.compile(rf"^{re.escape(runner)}\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$")
    lines = [m for line in result.outlines if (m := pattern.match(line))]
    assert len(lines) == 1, result.stdout.str()
    keys = ("suites", "passed", "failed", "capability", "other")
    return dict(zip(keys, map(int, lines[0].groups()), strict=True))


# -- the sequential runner passes the whole suite, by both routes --------------------------
def test_sequential_runner_one_class_route(project: pytest.Pytester) -> None:
    result = run(project, "test_seqrunner.py", "-rs")
    assert result.ret == 0, result.stdout.str()
    counts = row(result, "SequentialTaskRunner")
    assert counts["passed"] > 50 and counts["failed"] == 0 and counts["other"] == 0
    result.assert_outcomes(passed=counts["passed"], skipped=counts["capability"])
    result.stdout.re_match_lines(
        [
            r".*needs capability requires_pickling=True; SequentialTaskRunner has "
            r"requires_pickling=False",
        ]
    )


def test_sequential_runner_dotted_path_route(project: pytest.Pytester) -> None:
    result = run(
        project, "--pyargs", "braid.testing", "--braid-runner", "seqrunner:SequentialTaskRunner"
    )
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["braid conformance suite against: seqrunner:SequentialTaskRunner"])
    counts = row(result, "SequentialTaskRunner")
    assert counts["passed"] > 50 and counts["failed"] == 0 and counts["other"] == 0
    result.assert_outcomes(passed=counts["passed"], skipped=counts["capability"])


# -- the dotted-path option ----------------------------------------------------------------
@pytest.mark.parametrize(
    "spec", ["mypkg.runners:MyRunner", "mypkg.runners.MyRunner", "mypkg.runners:two_threads"]
)
def test_dotted_path_forms(project: pytest.Pytester, spec: str) -> None:
    result = run(project, "--pyargs", "braid.testing", "--braid-runner", spec, *FEW)
    assert result.ret == 0, result.stdout.str()
    assert row(result, "ThreadPoolTaskRunner" if "two_threads" in spec else "MyRunner") == {
        "suites": 1,
        "passed": 2,
        "failed": 0,
        "capability": 3,
        "other": 0,
    }


def test_bad_dotted_path_is_a_usage_error(project: pytest.Pytester) -> None:
    result = run(project, "--pyargs", "braid.testing", "--braid-runner", "mypkg.runners:Nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: --braid-runner: runner 'mypkg.runners:Nope': 'mypkg.runners' has no attribute "
            "'Nope'; runners it defines: ClaimsInterrupts, MyRunner",
        ]
    )


def test_pyargs_without_runner_is_a_usage_error(project: pytest.Pytester) -> None:
    result = run(project, "--pyargs", "braid.testing")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: pytest --pyargs braid.testing runs braid's conformance"
            " suite against the runner given with --braid-runner*"
        ]
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "expected 'package.module:ClassName' or 'package.module.ClassName'"),
        ("ThreadPoolTaskRunner", "expected 'package.module:ClassName'"),
        ("braid.runners.threads:", "expected"),
        ("braid.runners threads:X", "expected"),
        (
            "no_such_module_here:Runner",
            "cannot import module 'no_such_module_here' "
            "(ModuleNotFoundError: No module named 'no_such_module_here')",
        ),
        (
            "braid.runners.threads:Nope",
            "has no attribute 'Nope'; runners it defines: ThreadPoolTaskRunner",
        ),
        (
            "braid.runners.threads:ThreadPoolTaskRunner.Nope",
            "'braid.runners.threads.ThreadPoolTaskRunner' has no attribute 'Nope'",
        ),
        ("braid.runners.threads:os", "is module <module 'os'"),
        ("braid.errors:BraidError", "class BraidError is not a subclass of braid.TaskRunner"),
        ("braid.runners.base:TaskRunner", "could not be created with no arguments (TypeError"),
        ("os:getcwd", "returned str, not a braid.TaskRunner"),
    ],
)
def test_runner_spec_errors_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(RunnerSpecError) as info:
        load_runner_factory(spec)
    assert message in str(info.value)
    assert f"runner {spec.strip()!r}" in str(info.value)


def test_runner_spec_module_that_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "braid_spec_broken.py").write_text("raise RuntimeError('broken on purpose')\n")
    monkeypatch.syspath_prepend(tmp_path)
    with pytest.raises(
        RunnerSpecError,
        match=r"importing module 'braid_spec_broken' raised "
        r"RuntimeError: broken on purpose",
    ):
        load_runner_factory("braid_spec_broken:Runner")


@pytest.mark.parametrize(
    "spec",
    [
        "braid.runners.threads:ThreadPoolTaskRunner",
        "braid.runners.threads.ThreadPoolTaskRunner",
        "braid:ThreadPoolTaskRunner",
    ],
)
def test_runner_spec_forms(spec: str) -> None:
    from braid import ThreadPoolTaskRunner

    factory = load_runner_factory(spec)
    assert factory is ThreadPoolTaskRunner
    assert isinstance(factory(), ThreadPoolTaskRunner)


# -- the per-runner report and capability skips --------------------------------------------
SUITES = """
    import pytest
    from braid import ThreadPoolTaskRunner
    from braid.testing.suite import RunnerConformance
    from mypkg.runners import ClaimsInterrupts

    class TestThreads(RunnerConformance):
        @pytest.fixture
        def runner(self):
            return ThreadPoolTaskRunner(max_workers=2)

    class TestClaimsInterrupts(RunnerConformance):
        @pytest.fixture
        def runner(self):
            return ClaimsInterrupts(max_workers=2)

    class TestUnavailable(RunnerConformance):
        @pytest.fixture
        def runner(self):
            pytest.skip("no cluster here")
"""


def check_report(result: pytest.RunResult) -> None:
    assert row(result, "ThreadPoolTaskRunner") == {
        "suites": 1,
        "passed": 2,
        "failed": 0,
        "capability": 3,
        "other": 0,
    }
    assert row(result, "ClaimsInterrupts") == {
        "suites": 1,
        "passed": 2,
        "failed": 1,
        "capability": 2,
        "other": 0,
    }
    # no runner was ever made: the row is named after the class, its tests skipped
    assert row(result, "TestUnavailable") == {
        "suites": 1,
        "passed": 1,
        "failed": 0,
        "capability": 0,
        "other": 4,
    }
    result.stdout.fnmatch_lines(
        [
            "*= braid conformance suite, per runner =*",
            "runner * suites * passed * failed * skipped: capability * skipped: other",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "ThreadPoolTaskRunner skipped tests that need: can_interrupt_running=True (1), "
            "remote=True (1), requires_pickling=True (1)",
            "ClaimsInterrupts skipped tests that need: remote=True (1), requires_pickling=True (1)",
        ]
    )
    result.assert_outcomes(passed=5, failed=1, skipped=9)


def test_report_per_runner(project: pytest.Pytester) -> None:
    project.makepyfile(test_suites=SUITES)
    result = run(project, "test_suites.py", "-rsf", *FEW)
    check_report(result)
    result.stdout.re_match_lines(
        [
            r"SKIPPED \[1\] .*needs capability remote=True; ThreadPoolTaskRunner has remote=False",
            r"SKIPPED \[1\] .*needs capability requires_pickling=True; ThreadPoolTaskRunner has "
            r"requires_pickling=False",
        ],
        consecutive=False,
    )
    result.stdout.fnmatch_lines(["FAILED *TestClaimsInterrupts::test_stuck_task_is_really_stop*"])


def test_report_under_xdist(project: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    project.makepyfile(test_suites=SUITES)
    check_report(run(project, "test_suites.py", "-n", "2", *FEW))


def test_plugin_is_inert_elsewhere(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_plain="""
        def test_plain():
            assert 1 + 1 == 2
    """
    )
    result = run(project, "test_plain.py")
    assert result.ret == 0
    result.assert_outcomes(passed=1)
    assert "braid conformance" not in result.stdout.str()


def test_guide_shows_the_example_runner_as_it_is() -> None:
    guide = (EXAMPLE.parent.parent / "docs" / "writing-a-runner.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```$", guide, re.MULTILINE | re.DOTALL)
    assert (EXAMPLE / "seqrunner.py").read_text() in blocks
