"""Module-level tasks and hooks the porting conformance tests use (workers import them by
name): state change hooks that leave a trace in a file, tasks that return States, and a
task that reports what ``braid.runtime`` says inside it."""

from __future__ import annotations

import os
from typing import Any

from braid import get_run_logger, runtime, task
from braid.states import Completed, Failed, State


def _note(path: str, text: str) -> None:
    with open(path, "a") as fh:
        fh.write(text + "\n")


def note_completed(tsk: Any, run: Any, state: State) -> None:
    """An ``on_completion`` hook: ``completed <run name> <pid>`` into the run's ``path``."""
    _note(run.parameters["path"], f"completed {run.name} {os.getpid()}")


def note_failed(tsk: Any, run: Any, state: State) -> None:
    """An ``on_failure`` hook: ``failed <state message>`` into the run's ``path``."""
    _note(run.parameters["path"], f"failed {state.message}")


def note_running(tsk: Any, run: Any, state: State) -> None:
    """An ``on_running`` hook: ``running <task name>`` into the run's ``path``."""
    _note(run.parameters["path"], f"running {tsk.name}")


def log_completion(tsk: Any, run: Any, state: State) -> None:
    """An ``on_completion`` hook that logs through the run logger."""
    get_run_logger().info("hook saw %s end %s", run.name, state.name)


def broken_hook(tsk: Any, run: Any, state: State) -> None:
    """A hook that raises: the run's state must not change."""
    raise RuntimeError("this hook is broken")


@task(on_completion=[note_completed], on_failure=[note_failed], on_running=[note_running])
def hooked(path: str, fail: bool) -> str:
    """Completes, or raises ``ValueError('asked to fail')``."""
    if fail:
        raise ValueError("asked to fail")
    return "ok"


@task(on_completion=[broken_hook, log_completion])
def with_broken_hook(x: int) -> int:
    """Returns ``x``; its first completion hook raises, its second logs."""
    return x


@task
def returns_state(fail: bool) -> State:
    """Returns ``Failed(message=...)`` or ``Completed(message=...)`` instead of a value."""
    if fail:
        return Failed(message="I was told to fail")
    return Completed(message="I was told to succeed")


@task
def what_runtime_says(x: int) -> dict[str, Any]:
    """What ``braid.runtime`` reports inside a task run."""
    return {
        "task_run.name": runtime.task_run.name,
        "task_run.task_name": runtime.task_run.task_name,
        "task_run.parameters": runtime.task_run.parameters,
        "task_run.tags": runtime.task_run.tags,
        "task_run.run_count": runtime.task_run.run_count,
        "flow_run.name": runtime.flow_run.name,
        "flow_run.id": runtime.flow_run.id,
        "flow_run.parameters": runtime.flow_run.parameters,
    }


def set_worker_mark(value: str) -> None:
    """A process runner initializer: leaves ``value`` in the worker's environment."""
    os.environ["BRAID_TEST_WORKER_MARK"] = value


@task
def worker_mark() -> str | None:
    """What the worker's initializer left in its environment."""
    return os.environ.get("BRAID_TEST_WORKER_MARK")


@task
def flow_parameters_seen() -> Any:
    """``braid.runtime.flow_run.parameters`` inside a task, or the error's class name."""
    try:
        return runtime.flow_run.parameters
    except Exception as exc:  # noqa: BLE001 - the test reads the class
        return type(exc).__name__
