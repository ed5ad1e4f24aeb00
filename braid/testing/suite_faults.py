"""Conformance tests of serialization, exceptions with their tracebacks, and faults."""

from __future__ import annotations

import os
import threading
import time
import traceback

import pytest

from braid import errors, flow, quote, wait
from braid.testing import sample_tasks as st
from braid.testing.harness import require, run_in_flow

__all__ = ["SerializationTests", "TracebackTests", "FaultTests"]


class SerializationTests:
    """On runners that pickle: bad input named at submit, bad results as FAILED states."""

    def test_unpicklable_parameter_named_at_submit(self, runner):
        require(runner, "requires_pickling")
        cfg = {"path": "x", "conn": threading.Lock()}

        def body():
            with pytest.raises(errors.SerializationError) as info:
                st.takes_anything.submit(cfg)
            return str(info.value)

        message = run_in_flow(runner, body)
        assert "task 'takes_anything'" in message
        assert "parameter 'value' → value['conn'] → _thread.lock" in message

    def test_unpicklable_result_fails_the_run(self, runner):
        require(runner, "requires_pickling")

        def body():
            f = st.unpicklable_result.submit()
            f.wait()
            return quote([f.state])

        [state] = run_in_flow(runner, body).unquote()
        assert state.is_failed()
        with pytest.raises(errors.SerializationError, match="return value → _thread.lock"):
            state.result()

    def test_result_made_inside_the_task_travels_by_value(self, runner):
        def body():
            return st.returns_local_class.submit(41).result().value + 1

        assert run_in_flow(runner, body) == 42


class TracebackTests:
    """User exceptions keep their type, with the line of the task that raised."""

    def test_exception_whose_init_takes_other_arguments_keeps_its_type(self, runner):
        def body():
            f = st.raise_unrebuildable.submit()
            f.wait(timeout=60)  # hang guard
            return quote([f.state])

        [state] = run_in_flow(runner, body).unquote()
        assert state.is_failed()
        exc = state.result(raise_on_failure=False)
        assert isinstance(exc, st.Unrebuildable) and str(exc) == "1-2"

    def test_exception_that_cannot_be_pickled_becomes_remote_error(self, runner):
        require(runner, "requires_pickling")

        def body():
            f = st.raise_holds_lock.submit()
            f.wait(timeout=60)  # hang guard
            return quote([f.state])

        [state] = run_in_flow(runner, body).unquote()
        assert state.is_failed()
        exc = state.result(raise_on_failure=False)
        assert isinstance(exc, errors.RemoteError)
        assert "HoldsLock: locked" in str(exc)

    def test_exception_type_and_traceback(self, runner):
        def body():
            f = st.fail.submit("with traceback")
            f.wait()
            return quote([f.state])

        [state] = run_in_flow(runner, body).unquote()
        exc = state.result(raise_on_failure=False)
        assert type(exc) is st.UserError
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        assert "sample_tasks.py" in text
        assert "raise UserError(message)" in text

    def test_upstream_failed_cause_survives(self, runner):
        def body():
            a = st.fail.submit("deep cause")
            b = st.inc.submit(a)
            b.wait()
            return quote([b.state])

        [state] = run_in_flow(runner, body).unquote()
        exc = state.result(raise_on_failure=False)
        assert isinstance(exc, errors.UpstreamFailed)
        assert isinstance(exc.__cause__, st.UserError)


class FaultTests:
    """A dead worker ends its run CRASHED with WorkerLost; the rest still run."""

    def test_worker_death_crashes_only_its_run(self, runner):
        require(runner, "remote")

        @flow(task_runner=runner)
        def dying():
            doomed = st.exit_process.submit(3)
            others = st.inc.map(range(4))
            wait([doomed, *others], timeout=240)  # hang guard
            later = st.inc.submit(10)
            return quote(doomed.state), others.result(), later.result()

        doomed, others, later = dying()
        doomed = doomed.unquote()
        assert doomed.is_crashed(), doomed
        with pytest.raises(errors.WorkerLost):
            doomed.result()
        assert others == [1, 2, 3, 4]
        assert later == 11

    def test_stuck_task_is_really_stopped(self, runner, tmp_path):
        require(runner, "can_interrupt_running")
        marker = tmp_path / "marker"

        def body():
            f = st.stuck_then_write.submit(str(marker), 2.0)
            f.wait(timeout=30)
            return quote([f.state])

        [state] = run_in_flow(runner, body).unquote()
        assert state.name == "TimedOut"
        time.sleep(2.5)
        assert not os.path.exists(marker), "the timed-out task went on running"
