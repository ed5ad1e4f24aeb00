"""The conformance suite: every line of braid's semantics, written once against a runner.

A runner author subclasses :class:`RunnerConformance` and provides one fixture,
``runner``, returning an unstarted runner instance::

    class TestMyRunner(RunnerConformance):
        @pytest.fixture
        def runner(self):
            return MyRunner()

Tests that need a capability the runner does not declare are skipped with a reason
that names the capability.
"""

from __future__ import annotations

import pytest

from braid import (
    FutureList,
    State,
    StateType,
    TaskFuture,
    allow_failure,
    as_completed,
    errors,
    flow,
    quote,
    unmapped,
    wait,
)
from braid.testing import sample_tasks as st
from braid.testing.harness import require, run_in_flow
from braid.testing.suite_caching import CachingTests
from braid.testing.suite_faults import FaultTests, SerializationTests, TracebackTests
from braid.testing.suite_lifecycle import (
    AsyncTests,
    LoggingTests,
    OptionTests,
    RetryTests,
    TimeoutTests,
)
from braid.testing.suite_limits import LimitTests
from braid.testing.suite_logging import LiveLoggingTests
from braid.testing.suite_porting import PortingTests

__all__ = ["RunnerConformance", "require", "run_in_flow"]


class SubmitTests:
    """``.submit()`` and futures."""

    def test_submit_returns_future_and_result(self, runner):
        def body():
            f = st.add.submit(1, 2)
            assert isinstance(f, TaskFuture)
            return f.result()

        assert run_in_flow(runner, body) == 3

    def test_future_id_name_state(self, runner):
        def body():
            f = st.identity.submit(5)
            early = f.state
            f.wait()
            return quote((f.task_run_id, f.task_run_name, early, f.state))

        run_id, name, early, final = run_in_flow(runner, body).unquote()
        assert isinstance(early, State)
        assert final.is_completed() and final.is_final()
        assert name.startswith("identity-")
        assert run_id.version == 4

    def test_result_raise_on_failure(self, runner):
        def body():
            f = st.fail.submit("nope")
            with pytest.raises(st.UserError, match="nope"):
                f.result()
            exc = f.result(raise_on_failure=False)
            return type(exc).__name__, f.state.is_failed()

        assert run_in_flow(runner, body) == ("UserError", True)

    def test_result_timeout_raises_wait_timeout(self, runner):
        require(runner, "runs_inline", False)

        def body():
            f = st.sleep_then.submit(1, 1.0)
            with pytest.raises(errors.WaitTimeout):
                f.result(timeout=0.01)
            return f.result()

        assert run_in_flow(runner, body) == 1

    def test_add_done_callback(self, runner):
        seen = []

        def body():
            f = st.identity.submit(7)
            f.add_done_callback(lambda fut: seen.append(fut.state.type))
            f.wait()
            f.add_done_callback(lambda fut: seen.append("late"))
            return f.result()

        assert run_in_flow(runner, body) == 7
        assert seen[-1] == "late"
        assert StateType.COMPLETED in seen

    def test_bad_arguments_refused_at_submit(self, runner):
        def body():
            errs = []
            for call in (
                lambda: st.add.submit(1),
                lambda: st.add.submit(1, 2, 3),
                lambda: st.add.submit(1, 2, z=2),
                lambda: st.add.map([1], y=[1], x=[2]),
                lambda: st.add(1),
            ):
                with pytest.raises(errors.ParameterBindError) as info:
                    call()
                errs.append(str(info.value))
            return errs

        errs = run_in_flow(runner, body)
        assert "missing a required argument: 'y'" in errs[0]
        assert "too many positional arguments" in errs[1]
        assert "unexpected keyword argument 'z'" in errs[2]
        assert all(e.startswith("task 'add'") for e in errs)

    def test_submit_outside_flow_uses_default_runner(self):
        assert st.add.submit(2, 3).result() == 5

    def test_direct_call_runs_in_caller_and_raises(self, runner):
        def body():
            value = st.add(1, 1)
            with pytest.raises(st.UserError):
                st.fail()
            state = st.fail(return_state=True)
            return value, state.is_failed()

        assert run_in_flow(runner, body) == (2, True)

    def test_return_state_on_submit_and_map(self, runner):
        def body():
            s = st.add.submit(1, 2, return_state=True)
            states = st.inc.map([1, 2], return_state=True)
            return quote((s, states))

        s, states = run_in_flow(runner, body).unquote()
        assert isinstance(s, State) and s.result() == 3
        assert [x.result() for x in states] == [2, 3]


class DependencyTests:
    """Futures in parameters, ``wait_for``, upstream failure, ``allow_failure``, ``quote``."""

    def test_future_as_argument(self, runner):
        def body():
            a = st.add.submit(1, 2)
            return st.add.submit(a, 10).result()

        assert run_in_flow(runner, body) == 13

    def test_futures_nested_in_containers(self, runner):
        def body():
            a = st.identity.submit(1)
            b = st.identity.submit(2)
            payload = {
                "list": [a, b],
                "tuple": (a,),
                "set": {b},
                "dict": {"k": a},
                "box": st.Box(b),
            }
            return st.describe.submit(payload).result()

        name, value = run_in_flow(runner, body)
        assert name == "dict"
        assert value["list"] == [1, 2]
        assert value["tuple"] == (1,)
        assert value["set"] == {2}
        assert value["dict"] == {"k": 1}
        assert value["box"] == st.Box(2)

    def test_chain_of_dependencies(self, runner):
        def body():
            f = st.inc.submit(0)
            for _ in range(30):
                f = st.inc.submit(f)
            return f.result()

        assert run_in_flow(runner, body) == 31

    def test_wait_for_orders_without_data(self, runner):
        def body():
            a = st.sleep_then.submit("a", 0.2)
            b = st.where.submit(wait_for=[a])
            b.wait()
            return a.state.is_final(), b.state.timestamp >= a.state.timestamp

        assert run_in_flow(runner, body) == (True, True)

    def test_upstream_failure_propagates(self, runner):
        @flow(task_runner=runner)
        def outer():
            a = st.fail.submit("root cause")
            b = st.inc.submit(a)
            c = st.inc.submit(b)
            w = st.noop.submit(wait_for=[a])
            for f in (b, c, w):
                f.wait()
            return quote((b.state, c.state, w.state))

        b, c, w = outer().unquote()
        for s in (b, c, w):
            assert s.is_failed() and s.name == "UpstreamFailed"
        with pytest.raises(errors.UpstreamFailed) as info:
            b.result()
        assert isinstance(info.value.__cause__, st.UserError)
        assert "root cause" in str(info.value.__cause__)

    def test_allow_failure_passes_exception(self, runner):
        def body():
            a = st.fail.submit("tolerated")
            return st.describe.submit(allow_failure(a)).result()

        name, value = run_in_flow(runner, body)
        assert name == "UserError"

    def test_quote_passes_value_untouched(self, runner):
        require(runner, "requires_pickling", False)  # a future inside cannot be pickled

        def body():
            a = st.identity.submit(1)
            a.wait()
            name, value = st.describe.submit(quote([a, 2])).result()
            return name, value[0] is a, value[1]

        assert run_in_flow(runner, body) == ("list", True, 2)


class MapTests:
    """``.map()``: zip, broadcast, ``unmapped``, dicts, generators, futures, errors."""

    def test_simple_map(self, runner):
        def body():
            futures = st.inc.map([1, 2, 3])
            assert isinstance(futures, FutureList)
            return futures.result()

        assert run_in_flow(runner, body) == [2, 3, 4]

    def test_static_values_broadcast(self, runner):
        def body(numbers, static_value):
            return st.add.map(numbers, static_value).result()

        assert run_in_flow(runner, body, [1, 2, 3], 5) == [6, 7, 8]

    def test_unmapped_iterable(self, runner):
        def body():
            return st.add.map([[1], [2]], unmapped([10])).result()

        assert run_in_flow(runner, body) == [[1, 10], [2, 10]]

    def test_zip_keywords_dict_keys_and_generators(self, runner):
        def body():
            a = st.add.map(x={"p": 1, "q": 2}, y=["1", "2"]).result()
            b = st.inc.map(i * 10 for i in range(3)).result()
            return a, b

        assert run_in_flow(runner, body) == (["p1", "q2"], [1, 11, 21])

    def test_positional_and_keyword_arguments_mapped_and_broadcast_together(self, runner):
        def body():
            a = st.add.map([1, 2, 3], y=10).result()
            b = st.add.map([1, 2], y=[10, 20]).result()
            c = st.add.map(x=unmapped([0]), y=[[1], [2]]).result()
            named = st.double_named.map([4, 5]).result()
            return a, b, c, named

        assert run_in_flow(runner, body) == (
            [11, 12, 13],
            [11, 22],
            [[0, 1], [0, 2]],
            [("double-4", 8), ("double-5", 10)],
        )

    def test_future_as_iterable(self, runner):
        def body():
            items = st.identity.submit([1, 2, 3])
            return st.inc.map(items).result()

        assert run_in_flow(runner, body) == [2, 3, 4]

    def test_map_over_futures(self, runner):
        def body():
            first = st.inc.map([1, 2])
            return st.inc.map(first).result()

        assert run_in_flow(runner, body) == [3, 4]

    def test_map_missing_iterable(self, runner):
        def body():
            with pytest.raises(errors.MappingMissingIterable, match="add"):
                st.add.map(1, 2)
            return True

        assert run_in_flow(runner, body)

    def test_map_length_mismatch_names_each(self, runner):
        def body():
            with pytest.raises(errors.MappingLengthMismatch) as info:
                st.add.map([1, 2], [1, 2, 3])
            return str(info.value)

        msg = run_in_flow(runner, body)
        assert "'x' has 2" in msg and "'y' has 3" in msg

    def test_map_wait_for(self, runner):
        def body():
            gate = st.sleep_then.submit(0, 0.1)
            futures = st.inc.map([1, 2], wait_for=[gate])
            futures.wait()
            return gate.state.is_completed(), futures.result()

        assert run_in_flow(runner, body) == (True, [2, 3])

    def test_futurelist_result_fails_fast(self, runner):
        def body():
            futures = st.identity.map([1, 2])
            bad = st.fail.map(["x"])
            combined = FutureList([*futures, *bad])
            with pytest.raises(st.UserError):
                combined.result()
            return combined.result(raise_on_failure=False)[:2]

        assert run_in_flow(runner, body) == [1, 2]


class WaitTests:
    """``wait()`` and ``as_completed()``."""

    def test_wait_done_and_not_done(self, runner):
        require(runner, "runs_inline", False)

        def body():
            quick = st.identity.submit(1)
            slow = st.sleep_then.submit(2, 1.0)
            quick.wait()
            done, not_done = wait([quick, slow], timeout=0.05)
            all_done = wait([quick, slow])
            return quick in done, slow in not_done, len(all_done.done)

        assert run_in_flow(runner, body) == (True, True, 2)

    def test_as_completed_in_completion_order(self, runner):
        def body():
            first = st.sleep_then.submit("first", 0.2)
            second = st.identity.submit("second", wait_for=[first])
            return [f.result() for f in as_completed([second, first])]

        assert run_in_flow(runner, body) == ["first", "second"]

    def test_as_completed_timeout(self, runner):
        require(runner, "runs_inline", False)

        def body():
            slow = st.sleep_then.submit("slow", 1.0)
            with pytest.raises(errors.WaitTimeout):
                list(as_completed([slow], timeout=0.05))
            return slow.result()

        assert run_in_flow(runner, body) == "slow"


class StateTests:
    """State types, names, messages, timestamps."""

    def test_state_predicates_and_result(self, runner):
        def body():
            ok = st.identity.submit(1)
            bad = st.fail.submit("x")
            wait([ok, bad])
            return quote((ok.state, bad.state))

        ok, bad = run_in_flow(runner, body).unquote()
        assert ok.is_completed() and not ok.is_failed() and ok.is_final()
        assert ok.result() == 1
        assert bad.is_failed() and bad.name == "Failed" and "UserError: x" in bad.message
        assert bad.timestamp.tzinfo is not None
        assert isinstance(bad.result(raise_on_failure=False), st.UserError)

    def test_base_exceptions_crash(self, runner):
        def body():
            a = st.raise_keyboard_interrupt.submit()
            b = st.raise_system_exit.submit()
            wait([a, b])
            return quote((a.state, b.state))

        a, b = run_in_flow(runner, body).unquote()
        for s, what in ((a, "KeyboardInterrupt"), (b, "SystemExit")):
            assert s.is_crashed(), s
            assert what in s.message
            with pytest.raises(errors.Crash):
                s.result()


class NamingTests:
    """``task_run_name`` templates and callables."""

    def test_default_name(self, runner):
        def body():
            f = st.run_name_of.submit()
            return f.task_run_name, f.result()

        future_name, inside = run_in_flow(runner, body)
        assert future_name == inside and inside.startswith("run_name_of-")

    def test_template_name(self, runner):
        def body():
            f = st.double_named.submit(4)
            return f.task_run_name, f.result()

        assert run_in_flow(runner, body) == ("double-4", ("double-4", 8))

    def test_template_with_attribute_access_from_upstream(self, runner):
        def body():
            ds = st.identity.submit(st.Named("orders"))
            f = st.train_named.submit(ds)
            result = f.result()
            return f.task_run_name, result

        assert run_in_flow(runner, body) == ("train on orders", "train on orders")

    def test_callable_name(self, runner):
        def body():
            f = st.callable_named.submit(3)
            return f.result(), f.task_run_name

        assert run_in_flow(runner, body) == ("callable-3", "callable-3")


class FlowTests:
    """Flows: drain, state from the return value, nested flows, return_state."""

    def test_drain_before_return(self, runner):
        holder = {}

        def body():
            holder["f"] = st.sleep_then.submit("late", 0.3)
            return "done"

        assert run_in_flow(runner, body) == "done"
        assert holder["f"].state.is_completed()

    def test_return_value_futures_resolved(self, runner):
        def body():
            return {"a": st.identity.submit(1), "b": [st.identity.submit(2)]}

        assert run_in_flow(runner, body) == {"a": 1, "b": [2]}

    def test_failed_future_in_return_fails_flow(self, runner):
        @flow(task_runner=runner)
        def failing():
            return [st.identity.submit(1), st.fail.submit("returned")]

        state = failing(return_state=True)
        assert state.is_failed()
        with pytest.raises(st.UserError, match="returned"):
            failing()

    def test_failed_state_in_return_fails_flow(self, runner):
        @flow(task_runner=runner)
        def returns_states():
            return [st.fail(return_state=True), st.identity(1, return_state=True)]

        state = returns_states(return_state=True)
        assert state.is_failed()

    def test_returned_futurelist_becomes_a_list(self, runner):
        @flow(task_runner=runner)
        def returns_map():
            return st.inc.map([1, 2])

        value = returns_map()
        assert value == [2, 3] and type(value) is list

    def test_unreturned_failure_does_not_fail_flow(self, runner):
        @flow(task_runner=runner)
        def tolerant():
            st.fail.submit("ignored")
            return "fine"

        assert tolerant() == "fine"

    def test_exception_fails_flow_after_drain(self, runner):
        holder = {}

        @flow(task_runner=runner)
        def raising():
            holder["f"] = st.sleep_then.submit(1, 0.2)
            raise st.UserError("flow body")

        state = raising(return_state=True)
        assert state.is_failed()
        assert holder["f"].state.is_completed()
        with pytest.raises(st.UserError, match="flow body"):
            raising()

    def test_nested_flow_with_its_own_runner(self, runner):
        @flow(task_runner=runner)
        def child(x):
            return st.inc.submit(x).result()

        @flow
        def parent():
            a = st.identity.submit(1)
            return child(a), child(10)

        assert parent() == (2, 11)

    def test_runner_instance_reused_across_flow_runs(self, runner):
        @flow(task_runner=runner)
        def again(x):
            return st.inc.submit(x).result()

        assert [again(i) for i in range(3)] == [1, 2, 3]


class NestedSubmissionTests:
    """Tasks that submit or map tasks and wait on them never deadlock."""

    def test_task_submits_children(self, runner):
        def body():
            return st.submit_children.submit(5).result()

        assert run_in_flow(runner, body) == [1, 2, 3, 4, 5]

    def test_task_maps_children(self, runner):
        def body():
            return st.map_children.submit([1, 2, 3]).result()

        assert run_in_flow(runner, body) == [2, 3, 4]

    def test_many_blocked_parents(self, runner):
        def body():
            return st.nested_depth.map([3, 3, 3, 3]).result()

        assert run_in_flow(runner, body) == [3, 3, 3, 3]


class RunnerConformance(
    SubmitTests,
    DependencyTests,
    MapTests,
    WaitTests,
    StateTests,
    NamingTests,
    FlowTests,
    NestedSubmissionTests,
    RetryTests,
    TimeoutTests,
    AsyncTests,
    LoggingTests,
    LiveLoggingTests,
    OptionTests,
    SerializationTests,
    TracebackTests,
    FaultTests,
    PortingTests,
    CachingTests,
    LimitTests,
):
    """Every behaviour test; subclass it and provide a ``runner`` fixture."""
