"""``braid run`` driven as a user would: a subprocess, its exit status, stdout and stderr."""

from __future__ import annotations

import ast
import fcntl
import importlib
import io
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import textwrap
from pathlib import Path

import pytest

import braid.testing.cli_flows
from braid.progress import ProgressCounts, ProgressLine, render_progress

FLOWS = Path(braid.testing.cli_flows.__file__)
BRAID_SCRIPT = Path(sys.executable).parent / "braid"
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def braid(
    *args: str, cwd: Path | None = None, script: bool = False, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m braid ARGS`` (or the ``braid`` console script) and wait for it."""
    command = [str(BRAID_SCRIPT)] if script else [sys.executable, "-m", "braid"]
    # a session of its own, so a run that hangs is ended with what it started (a Ray)
    proc = subprocess.Popen(
        [*command, *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **RAY_ENV, **(env or {})},
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=110)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"braid {' '.join(args)} did not finish in 110 s; stderr:\n{err[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def target(flow: str) -> str:
    return f"{FLOWS}:{flow}"


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The single line a usage error prints; fails if there is more (or no) output."""
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("braid: error: ")
    return lines[0]


def report_data(path: Path) -> dict:
    html = path.read_text(encoding="utf-8")
    raw = re.search(r'<script type="application/json" id="run-data">(.*?)</script>', html, re.S)
    assert raw is not None
    return json.loads(raw.group(1))


def pid_of(where: str) -> int:
    match = re.match(r"pid (\d+)", where)
    assert match, where
    return int(match.group(1))


# -- completing flows ---------------------------------------------------------------------
@pytest.mark.parametrize("runner", ["threads", "processes"])
def test_completed_flow_prints_its_value_and_a_summary(runner):
    result = braid("run", target("completes"), "--runner", runner, "--max-workers", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "30\n"
    assert "flow run 'completes-" in result.stderr
    assert " COMPLETED in " in result.stderr
    assert "task runs: 6 (6 Completed)" in result.stderr
    assert "slowest task runs:" in result.stderr
    expected_runner = "ThreadPool" if runner == "threads" else "ProcessPool"
    assert f"on {expected_runner}TaskRunner(max_workers=2" in result.stderr
    assert "failed task runs" not in result.stderr
    summary_at = result.stderr.index("flow run 'completes-")
    for line in result.stderr[summary_at:].splitlines():  # an 80-column terminal
        assert len(line) < 80, line


def test_console_script_runs_the_flow_on_its_declared_runner(tmp_path):
    assert BRAID_SCRIPT.is_file(), "the braid console script is not installed in this venv"
    result = braid("run", target("completes"), "--param", "n=3", script=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "5\n"
    assert "on ThreadPoolTaskRunner(" in result.stderr


def test_nested_flows_keep_their_runner_while_the_named_flow_gets_the_override(tmp_path):
    report = tmp_path / "outer.html"
    result = braid(
        "run",
        target("outer"),
        "--runner",
        "processes",
        "--max-workers",
        "1",
        "--report",
        str(report),
    )
    assert result.returncode == 0, result.stderr
    assert ast.literal_eval(result.stdout) == {"first": [4, 9], "middle": 4, "second": [144, 169]}
    assert "task runs: 5 (5 Completed) in 3 flow runs" in result.stderr
    data = report_data(report)
    bars = data["bars"]
    columns = zip(bars["flow"], bars["lane"], bars["is_flow"], strict=True)
    places = {(flow, data["lanes"][lane]["name"]) for flow, lane, is_flow in columns if not is_flow}
    outer_pids = {pid_of(where) for flow, where in places if flow.startswith("outer-")}
    inner_pids = {pid_of(where) for flow, where in places if flow.startswith("inner-")}
    # the outer flow's task ran in a worker process; the inner flows stayed on threads
    # of the driver, so their task runs share one pid that is not the worker's
    assert len(outer_pids) == 1 and len(inner_pids) == 1
    assert outer_pids != inner_pids


def test_parameters_are_json_or_text_and_reach_the_flow_with_their_types():
    result = braid(
        "run",
        target("typed"),
        "-p",
        "count=3",
        "-p",
        "ratio=2",
        "-p",
        "label=42",
        "-p",
        'tags=["a", 1]',
        "-p",
        'options={"k": null}',
        "-p",
        "enabled=true",
        "-p",
        "note=null",
    )
    assert result.returncode == 0, result.stderr
    assert ast.literal_eval(result.stdout) == {
        "count": [3, "int"],
        "ratio": [2.0, "float"],
        "label": ["42", "str"],
        "tags": [["a", 1], "list"],
        "options": [{"k": None}, "dict"],
        "enabled": [True, "bool"],
        "note": [None, "NoneType"],
    }


HINTED = [
    "-p",
    "day=2024-05-01",
    "-p",
    "out=data/in.csv",
    "-p",
    "colour=green",
    "-p",
    "mode=fast",
    "-p",
    "ids=[3, 4]",
]


def test_parameters_are_converted_to_the_flows_type_hints():
    result = braid(
        "run",
        target("hinted"),
        *HINTED,
        "-p",
        "since=2024-05-01T10:00:00Z",
        "-p",
        'weights={"a": 1}',
    )
    assert result.returncode == 0, result.stderr
    assert ast.literal_eval(result.stdout) == {
        "day": "datetime.date(2024, 5, 1)",
        "out": "PosixPath('data/in.csv')",
        "colour": "<Colour.GREEN: 'green'>",
        "mode": "fast",
        "ids": [3, 4],
        "since": "datetime.datetime(2024, 5, 1, 10, 0, tzinfo=datetime.timezone.utc)",
        "weights": {"a": 1.0},
    }


def test_a_script_outside_any_package_runs_on_processes(tmp_path):
    (tmp_path / "helpers.py").write_text("OFFSET = 100\n")
    (tmp_path / "pipeline.py").write_text(
        textwrap.dedent("""
        from dataclasses import dataclass

        from braid import flow, task
        from helpers import OFFSET

        @dataclass
        class Point:
            x: int

        @task
        def shift(p: Point) -> Point:
            return Point(p.x + OFFSET)

        @flow
        def shifted(n: int = 2) -> list:
            return [p.x for p in shift.map([Point(i) for i in range(n)]).result()]

        if __name__ == "__main__":
            raise SystemExit("the __main__ block must not run")
    """)
    )
    result = braid(
        "run",
        "pipeline.py:shifted",
        "--runner",
        "processes",
        "--max-workers",
        "1",
        "-p",
        "n=3",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[100, 101, 102]\n"


def test_a_runner_class_given_as_module_and_name():
    result = braid(
        "run",
        target("completes"),
        "--runner",
        "braid.runners.threads:ThreadPoolTaskRunner",
        "--max-workers",
        "1",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "30\n"
    assert "on ThreadPoolTaskRunner(max_workers=1" in result.stderr


# -- failing flows ------------------------------------------------------------------------
@pytest.mark.parametrize("runner", ["threads", "processes"])
def test_failed_flow_exits_1_naming_the_task_its_error_and_the_traceback(runner):
    result = braid("run", target("fails"), "--runner", runner, "--max-workers", "1")
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    err = result.stderr
    assert "task runs: 4 (2 Completed, 1 Failed, 1 UpstreamFailed)" in err
    assert re.search(r"failing task run: check_stock-\w+ \(task 'check_stock', Failed", err)
    assert "error: InventoryError: negative stock for plums: -2" in err
    # the traceback reaches the line of the task that raised, wherever it ran
    assert "in check_stock" in err
    assert "raise InventoryError(" in err
    assert "cli_flows.InventoryError: negative stock for plums: -2" in err
    assert err.rstrip().splitlines()[-1].startswith("braid: flow 'fails' FAILED: ")
    assert (
        "failed task runs: 2, 2 kinds\n  InventoryError × 1 (task check_stock): negative "
        "stock for plums: -2\n    runs: check_stock-" in err
    )
    assert re.search(
        r"  UpstreamFailed × 1 \(task total\): task 'total' did not run: "
        r"InventoryError: .*\n    runs: total-\w+\n",
        err,
    )
    if runner == "processes":
        assert "Remote traceback" in err or '"""' in err


def test_summary_groups_many_failures_by_exception_type():
    result = braid(
        "run", target("messy"), "-p", "n=100", "--runner", "threads", "--max-workers", "4"
    )
    assert result.returncode == 1
    err = result.stderr
    summary = err.split("failing task run:")[0]
    assert "task runs: 103 (" in summary
    # 34 ValueErrors, 10 KeyErrors and one run skipped: three kinds, two lines each
    groups = summary.split("failed task runs: 45, 3 kinds\n")[1].splitlines()
    assert len(groups) == 6, summary
    assert re.fullmatch(
        r"  ValueError × 34 \(task parse_row\): row \d+: bad date 2024-13-\d\d", groups[0]
    ), groups[0]
    assert re.fullmatch(
        r"    runs: (parse_row-\w{8}, ){4}parse_row-\w{8} … and 29 more; its "
        r"traceback is below",
        groups[1],
    ), groups[1]
    assert re.fullmatch(r"  KeyError × 10 \(task parse_row\): 'column c\d+'", groups[2])
    assert groups[4].startswith("  UpstreamFailed × 1 (task total): task 'total' did not run")
    assert summary.count("\n") < 20
    assert "flaky" not in groups  # retried, then completed: not a failure
    assert err.count("raise ValueError(") == 1  # one traceback, not one per failure


def test_a_file_that_raises_on_import_exits_1_with_its_traceback(tmp_path):
    (tmp_path / "broken.py").write_text(
        "from braid import flow\n\nraise RuntimeError('config missing')\n"
    )
    result = braid("run", "broken.py:anything", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert 'broken.py", line 3' in result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == (
        "braid: error: importing broken.py failed: RuntimeError: config missing"
    )


def test_a_runner_that_cannot_start_exits_1_with_one_line():
    result = braid(
        "run",
        target("completes"),
        "--runner",
        "braid.testing.cli_flows:UnreachableRunner",
        "--max-workers",
        "2",
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "braid: error: flow 'completes' could not run: ConnectionError: no cluster answers "
        "at the configured address"
    ]


# -- bad usage: exit 2, one clear line ----------------------------------------------------
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "no/such/file.py:flow"], "no such file: no/such/file.py"),
        (["run", target("missing")], "has no flow named 'missing'; flows in it: completes, fails"),
        (["run", target("square")], "is a Task, not a flow (decorate it with @flow)"),
        (["run", str(FLOWS)], "expected FILE.py:FLOW"),
        (
            ["run", target("completes"), "--runner", "gpu-cloud"],
            "unknown runner 'gpu-cloud'; choose threads, processes, dask, ray or module:Class",
        ),
        (
            ["run", target("completes"), "--runner", "no_such_module:Runner"],
            "cannot import 'no_such_module'",
        ),
        (["run", target("completes"), "--runner", "braid:flow"], "not a TaskRunner class"),
        (
            ["run", target("completes"), "--runner", "threads", "--address", "tcp://x:1"],
            "--address applies to dask, ray or a custom runner, not threads",
        ),
        (["run", target("completes"), "--max-workers", "2"], "need --runner"),
        (
            ["run", target("completes"), "-p", "n=ten"],
            "parameter 'n' of flow 'completes' expects int, got 'ten'",
        ),
        (
            ["run", target("completes"), "-p", "size=3"],
            "flow 'completes' has no parameter 'size'; it takes: n: int = 5",
        ),
        (["run", target("completes"), "-p", "n"], "--param expects NAME=VALUE, got 'n'"),
        (["run", target("completes"), "-p", "n=1", "-p", "n=2"], "parameter 'n' given twice"),
        (
            ["run", target("typed"), "-p", "count=1"],
            "flow 'typed' needs --param ratio=VALUE, --param label=VALUE",
        ),
        (
            [
                "run",
                target("typed"),
                "-p",
                "count=true",
                "-p",
                "ratio=1",
                "-p",
                "label=x",
                "-p",
                "tags=[]",
                "-p",
                "options={}",
            ],
            "expects int, got 'true'",
        ),
        (
            ["run", target("hinted"), *HINTED[:4], "-p", "colour=blue"],
            "parameter 'colour' of flow 'hinted' expects Colour, got 'blue' "
            "(valid: RED ('red'), GREEN ('green'))",
        ),
        (
            ["run", target("hinted"), *HINTED[2:], "-p", "day=2024-02-30"],
            "parameter 'day' of flow 'hinted' expects date, got '2024-02-30' (ISO 8601",
        ),
        (
            ["run", target("hinted"), *HINTED[:8], "-p", "ids=1,two"],
            "parameter 'ids' of flow 'hinted' expects list[int], got '1,two' (item 1: 'two' is not "
            "int)",
        ),
        (
            ["run", target("hinted"), *HINTED[:6], *HINTED[8:], "-p", "mode=medium"],
            "parameter 'mode' of flow 'hinted' expects one of 'fast', 'slow', got 'medium'",
        ),
        (
            ["run", target("completes"), "--report", "/no/such/dir/run.html"],
            "no directory '/no/such/dir'",
        ),
    ],
)
def test_bad_usage_exits_2_with_one_clear_line(args, expected):
    line = one_error_line(braid(*args))
    assert expected in line


def test_missing_extra_names_the_install_command(tmp_path):
    # what a user without Dask sees: distributed cannot be imported
    code = (
        "import sys; sys.modules['distributed'] = None; from braid.cli import main; "
        f"sys.exit(main(['run', {target('completes')!r}, '--runner', 'dask']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=110, cwd=tmp_path
    )
    line = one_error_line(result)
    assert "pip install 'braid-flow[dask]'" in line


def test_argparse_errors_and_no_command_exit_2():
    assert braid("run", target("completes"), "--max-workers", "0").returncode == 2
    assert braid("run", target("completes"), "--bogus").returncode == 2
    bare = braid()
    assert bare.returncode == 2 and "usage: braid" in bare.stderr
    version = braid("--version")
    assert version.returncode == 0 and version.stdout.startswith("braid ")


# -- progress -----------------------------------------------------------------------------
def run_on_a_terminal(*args: str, columns: int = 200) -> tuple[int, str, str]:
    """Run ``python -m braid ARGS`` with stderr on a pseudo-terminal ``columns`` wide;
    (status, stdout, what the terminal received)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "braid", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    stdout = proc.stdout.read().decode() if proc.stdout else ""
    if proc.stdout:
        proc.stdout.close()
    return proc.wait(timeout=110), stdout, seen.decode(errors="replace")


def progress_lines(tty: str) -> list[str]:
    """Each redraw of the live line, without the erase sequence, in order."""
    drawn = []
    for chunk in tty.replace("\r\n", "\n").split("\r")[1:]:
        line = chunk.removeprefix("\x1b[2K").split("\n")[0]
        if "ETA" in line:
            drawn.append(line)
    return drawn


def test_progress_line_on_a_terminal():
    status, stdout, tty = run_on_a_terminal("run", target("completes"), "-p", "n=20")
    assert status == 0 and stdout == "2470\n"
    lines = progress_lines(tty)
    assert lines, tty
    assert re.fullmatch(
        r"completes-\w+: 21/21 100% \[#+\] \| 21 done, 0 failed, 0 running, "
        r"0 pending \| [-\d.]+ runs/s \| ETA 0:00 \| 0:\d\d",
        lines[-1],
    ), lines[-1]
    assert "task runs: 21 (21 Completed)" in tty


@pytest.mark.parametrize("columns", [80, 40])
def test_progress_line_fits_the_terminal_and_shows_runs_mid_run(columns):
    # 16 runs of 0.1 s, two at a time: a line every 0.2 s sees some running, some pending
    status, _, tty = run_on_a_terminal("run", target("steady"), columns=columns)
    assert status == 0
    lines = progress_lines(tty)
    assert len(lines) >= 3, tty
    assert max(len(line) for line in lines) < columns, lines
    # the line never wrapped: every redraw went back to the start of the same line
    before_summary = tty.split("flow run 'steady-")[0]
    assert before_summary.count("\n") <= 1, before_summary
    middle = [line for line in lines if not line.startswith(("0/", "16/16"))]
    assert middle, lines
    if columns == 80:
        sample = re.search(
            r"(\d+)/16 \d+% \| (\d+) done, 0 failed, (\d+) running, (\d+) pending "
            r"\| [-\d.]+/s \| ETA [-:\d]+",
            " ".join(middle),
        )
        assert sample, middle
        assert int(sample.group(3)) <= 2
    else:
        assert all(
            re.fullmatch(r"\d+/16 d\d+ f0 r[0-2] p\d+ ([-\d.]+/s )?ETA [-:\d]+", line)
            for line in middle
        ), middle
    assert lines[-1].startswith("16/16") or "16/16" in lines[-1]


@pytest.mark.parametrize("columns", [80, 40])
@pytest.mark.parametrize(
    "counts",
    [
        ProgressCounts(0, 0, 0, 0, 0, 0.0, None),
        ProgressCounts(45, 2, 0, 4, 49, 12.3, 7.25),
        ProgressCounts(45_000, 2_000, 3, 4, 53_000, 3723.3, 1234.5),
        ProgressCounts(45_000, 2_000, 3, 0, 53_000, 3723.3, 1234.5, on_cluster=True),
        ProgressCounts(10**9, 10**8, 10**7, 10**6, 10**9, 10**6, 0.01),
    ],
)
def test_rendered_line_fits_80_and_40_columns(columns, counts):
    line = render_progress("a-flow-run-with-a-rather-long-name-1a2b3c4d", counts, columns)
    assert len(line) <= columns - 1
    assert f"{counts.finished}/{counts.total}" in line or len(line) == columns - 1
    if columns == 80 and counts.total < 10**6:
        # at 80 columns every count, the rate and the ETA are there, spelled out when short
        assert "ETA" in line and "/s" in line
        numbers = re.findall(r"\d+", line)
        active = (
            [counts.running + counts.pending]
            if counts.on_cluster
            else [counts.running, counts.pending]
        )
        for n in [counts.done, counts.failed, *active]:
            assert str(n) in numbers, (n, line)
        if counts.total < 1000:
            assert f"{counts.running} running, {counts.pending} pending" in line
            assert f"{counts.done} done, {counts.failed} failed" in line


def test_rate_eta_and_the_cluster_notion_come_from_record_counts():
    class FakeRecord:
        name = "etl-1"
        flow_runs: list = []

        def __init__(self):
            self.now = {"PENDING": 10}

        def counts(self):
            return dict(self.now)

    record = FakeRecord()
    line = ProgressLine(io.StringIO(), [record], cluster=True)
    first = line.counts()
    assert first.on_cluster and first.pending == 10 and first.rate is None and first.eta is None
    assert "10 queued or running on the cluster" in line.line(200)
    line.started -= 2.0
    line._history[0] = (line._history[0][0] - 2.0, 0)
    record.now = {"COMPLETED": 4, "PENDING": 6}
    later = line.counts()
    assert later.rate == pytest.approx(2.0, rel=0.05) and later.eta == pytest.approx(3.0, rel=0.05)
    record.now = {"COMPLETED": 4, "RUNNING": 1, "PENDING": 5}
    assert not line.counts().on_cluster  # the runner does report begins after all
    assert "1 running, 5 pending" in line.line(200)


def test_no_progress_line_with_the_flag_or_without_a_terminal():
    status, _, tty = run_on_a_terminal("run", target("completes"), "--no-progress")
    assert status == 0
    assert "runs/s" not in tty and "task runs: 6" in tty
    piped = braid("run", target("completes"))
    assert "runs/s" not in piped.stderr and "\r" not in piped.stderr


# -- cluster runners: only when their adapter imports -------------------------------------
def adapter_importable(name: str) -> bool:
    try:
        importlib.import_module(f"braid.adapters.{name}")
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not adapter_importable("dask"), reason="braid.adapters.dask does not import")
def test_dask_runner_local_cluster(tmp_path):
    report = tmp_path / "dask.html"
    result = braid(
        "run",
        target("completes"),
        "--runner",
        "dask",
        "--max-workers",
        "1",
        "--report",
        str(report),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "30\n"
    assert "on DaskTaskRunner(" in result.stderr
    assert len(report_data(report)["bars"]["name"]) == 7


@pytest.mark.skipif(not adapter_importable("ray"), reason="braid.adapters.ray does not import")
def test_ray_runner_local_ray(tmp_path):
    report = tmp_path / "ray.html"
    result = braid(
        "run", target("fails"), "--runner", "ray", "--max-workers", "1", "--report", str(report)
    )
    assert result.returncode == 1, result.stderr
    assert "on RayTaskRunner(" in result.stderr
    assert "error: InventoryError: negative stock for plums: -2" in result.stderr
    assert "in check_stock" in result.stderr
    assert len(report_data(report)["bars"]["name"]) == 5


def test_remote_tracebacks_of_a_script_name_its_file(tmp_path):
    """Tasks of a script loaded by `braid run` travel by value; their tracebacks still
    name the script's file and line, not cloudpickle's <dynamic-code>."""
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "failing_script.py"
    script.write_text(
        "from braid import flow, task\n\n\n@task\ndef boom(x):\n"
        "    raise ValueError(f'bad {x}')\n\n\n@flow\ndef runs():\n"
        "    return boom.submit(1).result()\n"
    )
    braid_cmd = Path(sys.executable).parent / "braid"
    proc = subprocess.run(
        [str(braid_cmd), "run", f"{script}:runs", "--runner", "processes", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert f'File "{script}", line 6, in boom' in proc.stderr
    assert "<dynamic-code>" not in proc.stderr


@pytest.mark.parametrize("runner", ["threads", "processes"])
def test_ctrl_c_prints_what_stopped_the_summary_and_writes_the_report(tmp_path, runner):
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    started = tmp_path / "started"
    script = tmp_path / "slow_flow.py"
    script.write_text(
        "import time\nfrom pathlib import Path\nfrom braid import flow, task\n\n\n"
        "@task\ndef slow(i, marker):\n    Path(marker).touch()\n    time.sleep(30)\n"
        "    return i\n\n\n@flow\ndef many(marker):\n"
        "    return slow.map(range(6), marker).result()\n"
    )
    braid_cmd = Path(sys.executable).parent / "braid"
    report = tmp_path / "report.html"
    proc = subprocess.Popen(
        [
            str(braid_cmd),
            "run",
            f"{script}:many",
            "--runner",
            runner,
            "--max-workers",
            "2",
            "--param",
            f"marker={started}",
            "--no-progress",
            "--report",
            str(report),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), "the flow never started a task"
        time.sleep(0.3)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)  # hang guard
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err[-3000:]
    assert "braid: interrupted flow run 'many-" in err
    assert "stopped while running" in err and "cancelled before they started" in err
    assert "Traceback" not in err
    assert report.is_file()
    assert took < 30, took  # hang guard: far less than the tasks' 30 s


def test_limit_on_the_command_line_bounds_tagged_runs(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from braid.testing.limited_tasks import TAG, peak

    spans = tmp_path / "spans"
    spans.mkdir()
    script = tmp_path / "limited_flow.py"
    script.write_text(
        "from braid import flow\nfrom braid.testing import limited_tasks as lt\n\n\n"
        "@flow\ndef limited(folder: str):\n"
        "    return lt.tagged_span.map(folder, range(6), 0.15).result()\n"
    )
    braid_cmd = Path(sys.executable).parent / "braid"
    proc = subprocess.run(
        [
            str(braid_cmd),
            "run",
            f"{script}:limited",
            "--param",
            f"folder={spans}",
            "--limit",
            f"{TAG}=1",
            "--runner",
            "threads",
            "--max-workers",
            "4",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert peak(str(spans)) == 1
    bad = subprocess.run(
        [
            str(braid_cmd),
            "run",
            f"{script}:limited",
            "--param",
            f"folder={spans}",
            "--limit",
            "db=many",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert bad.returncode == 2 and "--limit" in bad.stderr
