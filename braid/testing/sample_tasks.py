"""Module-level tasks and flows the conformance suite runs.

They live at module top level so that spawned processes, Dask and Ray workers can
import them by name.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import dataclass

from braid import get_run_context, get_run_logger, task, wait


class UserError(ValueError):
    """An exception type of the user's, to check types survive every runner."""


@dataclass
class Box:
    """A dataclass whose fields may hold futures."""

    value: object
    label: str = "box"


@dataclass
class Named:
    name: str


@task
def identity(x):
    return x


@task
def add(x, y):
    return x + y


@task
def inc(x):
    return x + 1


@task
def noop():
    return None


@task
def fail(message="boom"):
    raise UserError(message)


@task
def total(values):
    return sum(values)


@task
def describe(x):
    """Return the type name and value, to check what a task received."""
    return type(x).__name__, x


@task
def sleep_then(x, seconds):
    time.sleep(seconds)
    return x


@task
def run_name_of(x=None):
    return get_run_context().task_run.name


@task(task_run_name="double-{x}")
def double_named(x):
    return get_run_context().task_run.name, x * 2


@task(task_run_name="train on {dataset.name}")
def train_named(dataset):
    return get_run_context().task_run.name


def _callable_name():
    params = get_run_context().task_run.parameters
    return f"callable-{params['x']}"


@task(task_run_name=_callable_name)
def callable_named(x):
    return get_run_context().task_run.name


@task
def where():
    """Where the task ran: process id and thread name."""
    return os.getpid(), threading.current_thread().name


@task
def submit_children(n):
    """Submit ``n`` children from inside a task and wait for them."""
    futures = [inc.submit(i) for i in range(n)]
    return [f.result() for f in futures]


@task
def map_children(values):
    futures = inc.map(values)
    wait(futures)
    return futures.result()


@task
def nested_depth(depth):
    """Each level submits the next and waits for it: a chain of blocked parents."""
    if depth == 0:
        return 0
    return nested_depth.submit(depth - 1).result() + 1


@task
def log_something(message):
    get_run_logger().info(message)
    return message


@task
def raise_keyboard_interrupt():
    raise KeyboardInterrupt


@task
def raise_system_exit():
    raise SystemExit(3)


@task
async def async_add(x, y):
    await asyncio.sleep(0)
    return x + y


@task
async def async_fail():
    await asyncio.sleep(0)
    raise UserError("async boom")


@task
async def loop_id():
    """The id of the event loop the task ran on."""
    return id(asyncio.get_running_loop())


@task
def unpicklable_result():
    return threading.Lock()


@task
def attempt_number():
    return get_run_context().task_run.attempt


_flaky_counts: dict = {}
_flaky_lock = threading.Lock()


@task(retries=2)
def flaky(key, fail_times):
    """Fail the first ``fail_times`` attempts (counted by attempt number)."""
    attempt = get_run_context().task_run.attempt
    if attempt <= fail_times:
        raise UserError(f"attempt {attempt} fails")
    return attempt


@task(retries=3, retry_delay_seconds=[0.01, 0.02])
def fails_until_third(x):
    attempt = get_run_context().task_run.attempt
    if attempt < 3:
        raise UserError(f"attempt {attempt} of {x} fails")
    return attempt


@task(retries=2)
def always_fails(x):
    attempt = get_run_context().task_run.attempt
    raise UserError(f"attempt {attempt}")


def never_retry(task, task_run, state):
    return False


def retry_only_user_errors(task, task_run, state):
    return isinstance(state.data, UserError)


@task(retries=3, retry_condition_fn=never_retry)
def fails_no_retry():
    raise UserError(f"attempt {get_run_context().task_run.attempt}")


@task(timeout_seconds=0.3)
def stuck(seconds):
    time.sleep(seconds)
    return "woke"


@task(timeout_seconds=0.3)
async def async_stuck(seconds):
    await asyncio.sleep(seconds)
    return "woke"


@task(timeout_seconds=5)
def quick_with_timeout(x):
    return x


@task(log_prints=True)
def prints(message):
    print(message)
    return message


@task
def flow_run_name_of():
    ctx = get_run_context()
    return ctx.flow_run.name if ctx.flow_run else None


@task
def exit_process(code=1):
    """End the worker process abruptly, as a crash would."""
    os._exit(code)


@task
def kill_self():
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


@task
def takes_anything(value):
    return "ran"


@task(timeout_seconds=0.5)
def stuck_then_write(path, seconds):
    """Sleep past the deadline, then write ``path``: the file appears only if not stopped.

    The write is in a ``finally``: an exception raised into the thread when the sleep
    returns (what a thread runner can do) does not stop it; ending the process does.
    """
    try:
        time.sleep(seconds)
    finally:
        with open(path, "w") as fh:
            fh.write("still running")
    return "woke"


@task
def nested_where():
    """Where a task submitted from inside this task ran, next to where this one ran."""
    inner = where.submit().result()
    return os.getpid(), inner[0]


class Unrebuildable(Exception):
    """An exception whose __init__ does not accept its own args: it cannot be unpickled."""

    def __init__(self, a, b):
        super().__init__(f"{a}-{b}")


@task
def raise_unrebuildable():
    raise Unrebuildable(1, 2)


class HoldsLock(Exception):
    """An exception carrying a lock: it cannot be pickled at all."""

    def __init__(self, what):
        super().__init__(what)
        self.lock = threading.Lock()


@task
def raise_holds_lock():
    raise HoldsLock("locked")


@task
def fire_and_forget(path):
    """Submit a task from inside this one and do not wait for it."""
    write_file.submit(path, "nested ran")
    return "parent done"


@task
def write_file(path, text):
    time.sleep(0.3)
    with open(path, "w") as fh:
        fh.write(text)
    return text


@task(timeout_seconds=0.5)
def waits_on_child(seconds):
    """Time out while waiting on a child (the child keeps its slot on threads)."""
    return sleep_then.submit("child", seconds).result()


@task
def returns_local_class(x):
    """Return an instance of a class made inside the task: it can only travel by value."""

    class Local:
        def __init__(self, value):
            self.value = value

    return Local(x)
