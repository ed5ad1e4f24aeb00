"""Conformance tests of the task lifecycle: retries, time-outs, async, logging, options."""

from __future__ import annotations

import asyncio
import logging

import pytest

from braid import errors, flow, get_run_logger, quote, task, wait
from braid.testing import sample_tasks as st
from braid.testing.harness import require, run_in_flow

__all__ = ["RetryTests", "TimeoutTests", "AsyncTests", "LoggingTests", "OptionTests"]


class RetryTests:
    """Retries run the function again; the final state is the last attempt's."""

    def test_retries_until_success(self, runner):
        def body():
            return st.fails_until_third.submit("x").result()

        assert run_in_flow(runner, body) == 3

    def test_retries_exhausted_keeps_last_error(self, runner):
        def body():
            f = st.always_fails.submit(1)
            f.wait()
            return quote([f.state])  # states in a flow's return value would be resolved

        [state] = run_in_flow(runner, body).unquote()
        assert state.is_failed()
        with pytest.raises(st.UserError, match="attempt 3"):
            state.result()

    def test_retry_condition_false_stops_retrying(self, runner):
        def body():
            f = st.fails_no_retry.submit()
            f.wait()
            return quote([f.state])  # states in a flow's return value would be resolved

        with pytest.raises(st.UserError, match="attempt 1"):
            run_in_flow(runner, body).unquote()[0].result()

    def test_with_options_retries_and_callable_delay(self, runner):
        flaky = st.fails_until_third.with_options(retries=1, retry_delay_seconds=lambda n: [0])

        def body():
            f = flaky.submit("y")
            f.wait()
            return quote([f.state])  # states in a flow's return value would be resolved

        with pytest.raises(st.UserError, match="attempt 2"):
            run_in_flow(runner, body).unquote()[0].result()

    def test_retry_with_upstream_value(self, runner):
        def body():
            a = st.identity.submit("v")
            return st.fails_until_third.submit(a).result()

        assert run_in_flow(runner, body) == 3


class TimeoutTests:
    """``timeout_seconds``: a final FAILED state named TimedOut at the deadline."""

    def test_flow_timeout_bounds_the_wait_for_its_runs(self, runner):
        require(runner, "runs_inline", False)

        @flow(task_runner=runner, timeout_seconds=1)
        def returns_a_slow_run():
            return st.sleep_then.submit(1, 4)  # the body returns at once; the run does not

        with pytest.raises(errors.FlowTimeout):
            returns_a_slow_run()

        @flow(task_runner=runner, timeout_seconds=1)
        def gives_up_waiting():
            return st.sleep_then.submit(1, 4).result(timeout=0.2)

        with pytest.raises(errors.WaitTimeout):  # the body's own error, at the deadline
            gives_up_waiting()

    def test_stuck_task_times_out(self, runner):
        def body():
            f = st.stuck.submit(30)
            f.wait(timeout=20)  # hang guard: the deadline is 0.3 s
            return quote([f.state])  # states in a flow's return value would be resolved

        [state] = run_in_flow(runner, body).unquote()
        assert state.is_failed() and state.name == "TimedOut", state
        with pytest.raises(errors.TaskTimeout) as info:
            state.result()
        assert isinstance(info.value, TimeoutError)

    def test_async_task_times_out(self, runner):
        def body():
            f = st.async_stuck.submit(30)
            f.wait(timeout=20)
            return quote([f.state])  # states in a flow's return value would be resolved

        [state] = run_in_flow(runner, body).unquote()
        assert state.name == "TimedOut", state

    def test_timeout_not_reached(self, runner):
        def body():
            return st.quick_with_timeout.submit(4).result()

        assert run_in_flow(runner, body) == 4

    def test_flow_timeout_cancels_queued_runs(self, runner):
        require(runner, "runs_inline", False)
        holder = {}

        @flow(task_runner=runner, timeout_seconds=0.5)
        def slow_flow():
            gate = st.sleep_then.submit(0, 3.0)
            holder["queued"] = st.inc.submit(gate)
            gate.wait()
            return "never"

        state = slow_flow(return_state=True)
        assert state.is_failed() and state.name == "TimedOut"
        with pytest.raises(errors.FlowTimeout):
            state.result()
        queued = holder["queued"]
        queued.wait(timeout=20)
        assert queued.state.is_cancelled() or queued.state.is_crashed(), queued.state


class AsyncTests:
    """``async def`` tasks and flows."""

    def test_submit_async_task(self, runner):
        def body():
            return st.async_add.submit(1, 2).result(), st.async_add.map([1, 2], 10).result()

        assert run_in_flow(runner, body) == (3, [11, 12])

    def test_async_failure(self, runner):
        def body():
            f = st.async_fail.submit()
            f.wait()
            return quote([f.state])  # states in a flow's return value would be resolved

        [state] = run_in_flow(runner, body).unquote()
        with pytest.raises(st.UserError, match="async boom"):
            state.result()

    def test_async_flow_awaits_tasks_on_its_loop(self, runner):
        @flow(task_runner=runner)
        async def aflow(x):
            direct = await st.async_add(x, 1)
            here = await st.loop_id()
            submitted = st.async_add.submit(direct, 1)
            return direct, here == id(asyncio.get_running_loop()), submitted

        assert asyncio.run(aflow(1)) == (2, True, 3)


class LoggingTests:
    """Run loggers and ``log_prints``; records reach the driver's handlers."""

    def test_run_logger_records_carry_names(self, runner, caplog):
        caplog.set_level(logging.INFO, logger="braid")

        def body():
            f = st.log_something.submit("hello from a task")
            f.wait()
            return f.task_run_name

        name = run_in_flow(runner, body)
        records = [r for r in caplog.records if r.getMessage() == "hello from a task"]
        assert records, caplog.records
        assert records[0].task_run_name == name
        assert records[0].flow_run_name

    def test_log_prints_routes_print(self, runner, caplog):
        caplog.set_level(logging.INFO, logger="braid")

        def body():
            return st.prints.submit("printed line").result()

        run_in_flow(runner, body)
        assert any(r.getMessage() == "printed line" for r in caplog.records)

    def test_flow_logger(self, runner, caplog):
        caplog.set_level(logging.INFO, logger="braid")

        @flow(task_runner=runner, flow_run_name="named-{x}")
        def logging_flow(x):
            get_run_logger().info("in the flow")
            return st.flow_run_name_of.submit().result()

        assert logging_flow(7) == "named-7"
        rec = [r for r in caplog.records if r.getMessage() == "in the flow"]
        assert rec and rec[0].flow_run_name == "named-7"

    def test_logger_outside_run(self):
        with pytest.raises(errors.MissingContextError, match="outside"):
            get_run_logger()


class OptionTests:
    """``with_options``, ``return_state``, reserved names, flow retries."""

    def test_task_with_options_name_and_run_name(self, runner):
        renamed = st.identity.with_options(name="renamed", task_run_name="r-{x}")

        def body():
            f = renamed.submit(5)
            return f.task_run_name, f.result()

        assert run_in_flow(runner, body) == ("r-5", 5)
        assert st.identity.name == "identity"

    def test_a_future_kept_from_a_finished_flow_feeds_a_later_flow(self, runner):
        kept = []

        def first():
            read, unread = st.inc.submit(1), st.inc.submit(10)
            kept.extend([read, unread])
            unread.wait()
            return read.result()

        def second():
            return [st.inc.submit(f).result(timeout=60) for f in kept]  # hang guard

        assert run_in_flow(runner, first) == 2
        assert run_in_flow(runner.duplicate(), second) == [3, 12]

    def test_flow_with_options_runner_and_retries(self, runner):
        attempts = []

        @flow(retries=0)
        def flaky_flow():
            attempts.append(1)
            if len(attempts) < 2:
                raise st.UserError("first flow attempt")
            return st.inc.submit(1).result()

        assert flaky_flow.with_options(task_runner=runner, retries=1)() == 2
        assert len(attempts) == 2

    def test_reserved_parameter_names_refused(self):
        with pytest.raises(errors.ReservedParameterName, match="wait_for"):

            @task
            def bad(wait_for):
                return wait_for

        with pytest.raises(errors.ReservedParameterName, match="return_state"):

            @flow
            def bad_flow(return_state):
                return return_state

    def test_unknown_option_refused(self):
        with pytest.raises(errors.ConfigurationError, match="retrys"):
            st.identity.with_options(retrys=3)
        with pytest.raises(errors.ConfigurationError, match="timeout_seconds"):
            task(timeout_seconds=-1)(lambda: None)

    def test_return_state_everywhere(self, runner):
        @flow(task_runner=runner)
        def states():
            direct = st.fail(return_state=True)
            submitted = st.identity.submit(1, return_state=True)
            mapped = st.identity.map([1, 2], return_state=True)
            wait([])
            return direct.name, submitted.result(), [s.result() for s in mapped]

        assert states() == ("Failed", 1, [1, 2])
        assert states(return_state=True).is_completed()
