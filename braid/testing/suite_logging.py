"""Conformance tests of live logging: a task's records reach the driver's handlers while it
runs, once each, and all of them before its flow returns, on every runner.

Ordering is checked by events, not by time: the task waits for a file that the
driver's handler creates when it sees the task's first record (a 60 s hang guard in
the task fails the test if the record only comes at the end).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from braid import flow
from braid.testing import log_tasks as lt
from braid.testing.harness import run_in_flow

__all__ = ["LiveLoggingTests"]


class _Seen(logging.Handler):
    """A driver handler: keeps every record, and opens the gate on the first one."""

    def __init__(self, token: str, gate: Path) -> None:
        super().__init__(logging.NOTSET)
        self.token, self.gate = token, gate
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if record.getMessage() == lt.first_message(self.token):
            self.gate.touch()

    def messages(self, logger: str | None = None) -> list[str]:
        """The messages naming this test's token (of ``logger`` only, if given)."""
        return [
            r.getMessage()
            for r in self.records
            if self.token in r.getMessage() and (logger is None or r.name == logger)
        ]


@contextmanager
def _seen(tmp_path: Path) -> Iterator[_Seen]:
    token = uuid.uuid4().hex[:12]
    handler = _Seen(token, tmp_path / f"gate-{token}")
    root = logging.getLogger()
    braid_logger = logging.getLogger("braid")
    old_level = braid_logger.level
    braid_logger.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        braid_logger.setLevel(old_level)


class LiveLoggingTests:
    """Records, other loggers, warnings and prints of a task reach the driver live, once."""

    def test_a_record_reaches_the_driver_while_its_task_runs(self, runner, tmp_path):
        with _seen(tmp_path) as seen:

            def body():
                return lt.log_then_wait.submit(seen.token, str(seen.gate)).result()

            assert run_in_flow(runner, body) == seen.token
            # the second record was made just before the task returned: here already
            assert seen.messages("braid.task_runs") == [
                lt.first_message(seen.token),
                f"second record {seen.token}",
            ]
            first = next(r for r in seen.records if r.getMessage().startswith("first"))
            assert first.task_run_name.startswith("log_then_wait-")
            assert first.flow_run_name

    @pytest.mark.filterwarnings("always::braid.testing.log_tasks.TaskWarning")
    def test_other_loggers_and_warnings_arrive_once(self, runner, tmp_path):
        logging.captureWarnings(True)  # warnings as records, here as on workers
        try:
            with _seen(tmp_path) as seen:

                def body():
                    f = lt.warn_and_log_elsewhere.submit(seen.token)
                    f.wait()
                    return f.task_run_name

                name = run_in_flow(runner, body)
        finally:
            logging.captureWarnings(False)
        assert seen.messages(lt.LIBRARY_LOGGER) == [f"library record {seen.token}"]
        warned = seen.messages("py.warnings")
        assert len(warned) == 1 and f"TaskWarning: careful {seen.token}" in warned[0]
        for r in seen.records:  # they carry the run they were made in
            if r.name in (lt.LIBRARY_LOGGER, "py.warnings") and seen.token in r.getMessage():
                assert r.task_run_name == name
                assert r.flow_run_name

    def test_prints_under_log_prints_arrive_once_in_order(self, runner, tmp_path):
        with _seen(tmp_path) as seen:

            def body():
                return lt.print_lines.submit(seen.token, 5).result()

            run_in_flow(runner, body)
        assert seen.messages("braid.task_runs") == [f"printed {seen.token} {i}" for i in range(5)]

    def test_a_runs_log_lines_are_kept_in_its_record(self, runner, tmp_path):
        with _seen(tmp_path) as seen:

            def body():
                lt.print_lines.submit(seen.token, 3).wait()
                lt.print_lines.submit(seen.token, 2).wait()

            state = flow(body, name="kept_lines", task_runner=runner)(return_state=True)
        assert state.is_completed()
        three, two = state.record.task_runs
        for run, n in ((three, 3), (two, 2)):
            assert run.logs is not None, run
            lines = run.logs.splitlines()
            assert [line.split(": ", 1)[1] for line in lines] == [
                f"printed {seen.token} {i}" for i in range(n)
            ]
            assert all(" INFO braid.task_runs: " in line for line in lines)
