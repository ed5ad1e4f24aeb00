"""Conformance tests of what a Prefect script ports to: state change hooks, tasks that
return States, and the runtime context, on every runner."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest

from braid import errors, flow, quote, runtime, tags
from braid.testing import porting_tasks as pt

__all__ = ["PortingTests"]


class PortingTests:
    """Hooks, returned States and ``braid.runtime`` behave the same on every runner."""

    def test_task_hooks_run_where_the_run_runs(self, runner, tmp_path):
        path = str(tmp_path / "hooks.txt")

        @flow(task_runner=runner)
        def body() -> Any:
            ok = pt.hooked.submit(path, False)
            bad = pt.hooked.submit(path, True)
            ok.wait()
            bad.wait()
            return quote((ok.task_run_name, ok.state, bad.state))

        name, ok, bad = body().unquote()
        assert ok.is_completed() and bad.is_failed()
        lines = Path(path).read_text().splitlines()
        completed = [line for line in lines if line.startswith("completed ")]
        assert len(completed) == 1
        _, hook_run, pid = completed[0].split()
        assert hook_run == name
        if runner.capabilities.remote:
            assert int(pid) != os.getpid()  # the hook ran where the run ran
        assert [line for line in lines if line.startswith("failed ")] == [
            "failed ValueError: asked to fail"
        ]
        assert lines.count("running hooked") == 2

    def test_a_hook_that_raises_changes_nothing_and_hooks_log(self, runner, caplog):
        caplog.set_level(logging.INFO, logger="braid")

        @flow(task_runner=runner)
        def body() -> Any:
            f = pt.with_broken_hook.submit(7)
            return f.result(), f.task_run_name

        value, name = body()
        assert value == 7
        messages = [r.getMessage() for r in caplog.records]
        assert f"hook saw {name} end Completed" in messages
        broken = [
            r
            for r in caplog.records
            if r.getMessage().startswith("on_completion hook broken_hook of")
        ]
        assert broken, messages
        # the traceback comes along (formatted, when the record crossed a process)
        assert "this hook is broken" in (broken[0].exc_text or "") + repr(broken[0].exc_info)

    def test_a_task_that_returns_a_state_ends_in_it(self, runner):
        @flow(task_runner=runner)
        def body() -> Any:
            failed = pt.returns_state.submit(True)
            done = pt.returns_state.submit(False)
            failed.wait()
            done.wait()
            return quote((failed.state, done.state))

        failed, done = body().unquote()
        assert failed.is_failed() and failed.message == "I was told to fail"
        with pytest.raises(errors.RunFailed, match="I was told to fail"):
            failed.result()
        assert done.is_completed() and done.message == "I was told to succeed"
        assert done.result() is None

    def test_a_flow_that_returns_a_failed_state_fails(self, runner):
        @flow(task_runner=runner)
        def body() -> Any:
            return "bar", pt.returns_state(True, return_state=True)

        with pytest.raises(errors.RunFailed, match="I was told to fail"):
            body()

    def test_runtime_inside_tasks(self, runner):
        @flow(task_runner=runner, flow_run_name="ported-{n}")
        def body(n: int) -> Any:
            with tags("etl"):
                f = pt.what_runtime_says.submit(n)
            return f.result(), f.task_run_name, runtime.flow_run.id

        seen, name, flow_run_id = body(3)
        assert seen["task_run.name"] == name
        assert seen["task_run.task_name"] == "what_runtime_says"
        assert seen["task_run.parameters"] == {"x": 3}
        assert seen["task_run.tags"] == ["etl"]
        assert seen["task_run.run_count"] == 1
        assert seen["flow_run.name"] == "ported-3"
        assert seen["flow_run.id"] == flow_run_id
        assert seen["flow_run.parameters"] == {"n": 3}
