"""What a ported Prefect script relies on beyond the runners: states, flow hooks, runtime,
validation, generator and method flows, tags, the mirrored modules."""

from __future__ import annotations

import datetime
import enum
import importlib
import logging

import pytest

import braid
from braid import errors, flow, runtime, tags, task
from braid.context import FlowRunContext, TaskRunContext
from braid.logging import disable_run_logger, get_run_logger
from braid.states import Cancelled, Completed, Crashed, Failed, Pending, Running, StateType
from braid.tasks import exponential_backoff
from braid.testing import porting_tasks as pt
from braid.testing import sample_tasks as st
from braid.utilities.annotations import opaque


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


# -- states ---------------------------------------------------------------------------------
def test_state_constructors_take_prefects_keywords():
    done = Completed(data=5, message="fine", name="Cached")
    assert (done.type, done.name, done.message, done.result()) == (
        StateType.COMPLETED,
        "Cached",
        "fine",
        5,
    )
    failed = Failed(message="bad input", name="Rejected")
    assert failed.is_failed() and failed.name == "Rejected"
    with pytest.raises(errors.RunFailed, match="bad input"):
        failed.result()
    assert isinstance(Failed(data=KeyError("k")).result(raise_on_failure=False), KeyError)
    assert Crashed(message="node gone").is_crashed()
    with pytest.raises(errors.TaskCancelled):
        Cancelled(message="stop").result()
    assert Pending(name="Scheduled").name == "Scheduled" and Running().is_running()


def test_a_state_returned_from_a_flow_is_its_state():
    @flow
    def decides(ok: bool):
        return Completed(message="all good") if ok else Failed(message="not ok")

    assert decides(True, return_state=True).message == "all good"
    with pytest.raises(errors.RunFailed, match="not ok"):
        decides(False)


# -- hooks on flows ---------------------------------------------------------------------------
def test_flow_hooks_by_option_decorator_and_with_options():
    seen: list[tuple[str, str]] = []

    @flow(on_running=[lambda f, r, s: seen.append(("running", r.name))])
    def body(fail: bool):
        if fail:
            raise ValueError("boom")
        return 1

    @body.on_completion
    def done(f, r, s):
        seen.append(("completed", s.name))

    @body.on_failure
    def failed(f, r, s):
        seen.append(("failed", s.message))

    assert body(False) == 1
    with pytest.raises(ValueError):
        body(True)
    kinds = [k for k, _ in seen]
    assert kinds == ["running", "completed", "running", "failed"]
    assert seen[3] == ("failed", "ValueError: boom")
    copy = body.with_options(name="copy")
    seen.clear()
    copy(False)
    assert [k for k, _ in seen] == ["running", "completed"]


def test_a_flow_hook_that_raises_is_logged_and_changes_nothing(caplog):
    caplog.set_level(logging.ERROR, logger="braid")

    @flow(on_completion=[pt.broken_hook])
    def body():
        return 3

    assert body() == 3
    assert any("broken_hook" in r.getMessage() for r in caplog.records)


# -- runtime and contexts ---------------------------------------------------------------------
def test_runtime_and_contexts_outside_a_run_are_empty():
    assert runtime.flow_run.id is None and runtime.flow_run.parameters == {}
    assert runtime.task_run.name is None and runtime.task_run.tags == []
    assert runtime.deployment.name is None
    assert FlowRunContext.get() is None and TaskRunContext.get() is None
    with pytest.raises(AttributeError, match="it has"):
        runtime.flow_run.no_such_thing  # noqa: B018


def test_runtime_mocked_by_environment(monkeypatch):
    monkeypatch.setenv("BRAID__RUNTIME__FLOW_RUN__NAME", "mocked")
    monkeypatch.setenv("BRAID__RUNTIME__TASK_RUN__RUN_COUNT", "4")
    assert runtime.flow_run.name == "mocked"
    assert runtime.task_run.run_count == 4


def test_flow_run_runtime_in_the_flow_body():
    @flow(version="2.1", flow_run_name="v-{x}")
    def body(x: int):
        ctx = FlowRunContext.get()
        return (
            runtime.flow_run.flow_version,
            runtime.flow_run.name,
            runtime.flow_run.tags,
            ctx.flow is body,
            ctx.parameters,
            runtime.flow_run.run_count,
        )

    with tags("night"):
        assert body(1) == ("2.1", "v-1", ["night"], True, {"x": 1}, 1)


def test_large_flow_parameters_do_not_travel_and_say_why():
    @flow(task_runner=braid.ProcessPoolTaskRunner(max_workers=1))
    def body(blob: bytes, small: int):
        return pt.flow_parameters_seen.submit().result()

    assert body(b"x" * 10_000, 1) == "MissingContextError"

    @flow(task_runner=braid.ProcessPoolTaskRunner(max_workers=1))
    def small(a: int):
        return pt.flow_parameters_seen.submit().result()

    assert small(5) == {"a": 5}


# -- validation --------------------------------------------------------------------------------
def test_flow_parameters_are_converted_to_their_type_hints():
    @flow
    def typed(n: int, when: datetime.date, colour: Colour, names: list[str] | None = None):
        return n, when, colour, names

    assert typed("3", "2024-05-01", "GREEN", ["a"]) == (
        3,
        datetime.date(2024, 5, 1),
        Colour.GREEN,
        ["a"],
    )


def test_a_bad_parameter_fails_before_any_task_runs():
    ran: list[int] = []

    @flow
    def typed(n: int):
        ran.append(n)
        return st.identity.submit(n).result()

    with pytest.raises(errors.InvalidParameterValue, match="parameter 'n' .* expects int"):
        typed("many")
    assert ran == []
    unchecked = typed.with_options(validate_parameters=False)
    assert unchecked("many") == "many"


# -- generator flows, flows in classes -------------------------------------------------------
def test_a_generator_flow_body_runs_as_the_flow_run(caplog):
    caplog.set_level(logging.INFO, logger="braid")

    @flow
    def numbers(n: int):
        for i in range(n):
            get_run_logger().info("making %s", i)
            yield st.inc.submit(i).result()

    assert list(numbers(3)) == [1, 2, 3]
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("making")] == [
        "making 0",
        "making 1",
        "making 2",
    ]
    assert FlowRunContext.get() is None  # nothing leaks into the caller between items


class Pipeline:
    factor = 3

    @flow
    def scaled(self, x: int):
        return st.identity.submit(x * self.factor).result()

    @classmethod
    @flow
    def on_class(cls, x: int):
        return x + cls.factor


def test_flows_as_methods_and_classmethods():
    assert Pipeline().scaled("2") == 6
    assert Pipeline.on_class(1) == 4
    assert isinstance(Pipeline.__dict__["scaled"], braid.Flow)


# -- tasks: backoff, opaque, tags, logger ----------------------------------------------------
def test_exponential_backoff_doubles():
    assert exponential_backoff(10)(3) == [10, 20, 40]
    with pytest.raises(errors.ConfigurationError):
        exponential_backoff(-1)


def test_opaque_resolves_the_top_level_only():
    @task
    def keys(d, other):
        return sorted(d) + sorted(other)

    @task
    def kind_of_a(d):
        return type(d["a"]).__name__

    @flow
    def body():
        made = st.identity.submit({"b": 1})
        inner = {"a": st.identity.submit(2)}  # not walked: the future stays a future
        return (
            keys.submit(opaque(made), opaque({"a": 0})).result(),
            kind_of_a.submit(opaque(inner)).result(),
            kind_of_a.submit(inner).result(),
        )

    assert body() == (["b", "a"], "TaskFuture", "int")


def test_tags_nest_and_reach_task_runs():
    @task
    def my_tags():
        return sorted(TaskRunContext.get().task_run.tags)

    tagged = my_tags.with_options(tags=["own"])

    @flow
    def body():
        with tags("a"):
            with tags("b") as now:
                assert now == {"a", "b"}
                return tagged.submit().result()

    assert body() == ["a", "b", "own"]


def test_disable_run_logger_silences_run_loggers(caplog):
    caplog.set_level(logging.INFO, logger="braid")

    @flow
    def body():
        with disable_run_logger():
            get_run_logger().info("hidden")
        get_run_logger().info("shown")

    body()
    messages = [r.getMessage() for r in caplog.records]
    assert "shown" in messages and "hidden" not in messages


# -- runners -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "runner",
    [
        braid.ThreadPoolTaskRunner(max_workers=3),
        braid.ThreadPoolTaskRunner(check_pickling=True),
        braid.ProcessPoolTaskRunner(max_workers=2, start_method="spawn"),
    ],
)
def test_a_duplicate_equals_its_runner(runner):
    assert runner.duplicate() == runner
    assert runner != braid.ThreadPoolTaskRunner(max_workers=7)


def test_process_runner_initializer_runs_in_every_worker():
    runner = braid.ProcessPoolTaskRunner(
        max_workers=2, initializer=pt.set_worker_mark, initargs=("ready",)
    )

    @flow(task_runner=runner)
    def body():
        return [f.result() for f in [pt.worker_mark.submit() for _ in range(4)]]

    assert body() == ["ready"] * 4
    with pytest.raises(errors.ConfigurationError, match="initargs must be a tuple"):
        braid.ProcessPoolTaskRunner(initializer=pt.set_worker_mark, initargs=["x"])


# -- where Prefect's names live ------------------------------------------------------------------
@pytest.mark.parametrize(
    "module, names",
    [
        ("braid.futures", ["TaskFuture", "FutureList", "wait", "as_completed"]),
        ("braid.task_runners", ["TaskRunner", "ThreadPoolTaskRunner", "ProcessPoolTaskRunner"]),
        (
            "braid.states",
            [
                "State",
                "StateType",
                "Completed",
                "Failed",
                "Crashed",
                "Cancelled",
                "Pending",
                "Running",
            ],
        ),
        ("braid.context", ["get_run_context", "FlowRunContext", "TaskRunContext", "tags"]),
        ("braid.logging", ["get_run_logger", "disable_run_logger"]),
        ("braid.tasks", ["task", "Task", "exponential_backoff", "task_input_hash"]),
        ("braid.flows", ["flow", "Flow"]),
        ("braid.utilities.annotations", ["unmapped", "allow_failure", "quote", "opaque"]),
        ("braid.adapters.dask.task_runners", ["DaskTaskRunner", "DaskFuture"]),
        ("braid.adapters.dask.utils", ["get_dask_client", "get_async_dask_client"]),
        ("braid.adapters.ray.task_runners", ["RayTaskRunner"]),
        ("braid.adapters.ray.context", ["remote_options"]),
        (
            "braid",
            [
                "flow",
                "task",
                "Flow",
                "Task",
                "State",
                "tags",
                "unmapped",
                "allow_failure",
                "get_run_logger",
                "get_dask_client",
                "remote_options",
                "Transaction",
            ],
        ),
    ],
)
def test_prefects_names_import_from_the_mirrored_modules(module, names):
    mod = importlib.import_module(module)
    for name in names:
        assert getattr(mod, name) is not None, f"{module}.{name}"


def test_defaults_are_not_validated_and_str_failed_is_a_message():
    @flow
    def optional(k: int = None):  # type: ignore[assignment]  # a common Prefect pattern
        return k

    assert optional() is None and optional("4") == 4
    state = Failed("the text")
    assert state.message == "the text"
    with pytest.raises(errors.RunFailed, match="the text"):
        state.result()


def test_submodules_load_on_first_access():
    import subprocess
    import sys

    code = "import braid; print(braid.runtime.flow_run.name, braid.states.Completed().name)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["None", "Completed"], out.stderr


def test_disable_run_logger_gives_a_silent_logger_outside_runs(caplog):
    caplog.set_level(logging.DEBUG)
    with disable_run_logger():
        get_run_logger().info("dropped")
    assert "dropped" not in [r.getMessage() for r in caplog.records]
    with pytest.raises(errors.MissingContextError):
        get_run_logger()
