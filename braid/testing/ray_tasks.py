"""Module-level tasks the Ray runner's own tests use (Ray workers import them by name)."""

from __future__ import annotations

import os
import time

from braid import as_completed, get_run_context, task, wait
from braid.testing import sample_tasks as st


@task
def pid_then_sleep(path: str, seconds: float) -> int:
    """Write this worker's pid to ``path`` (atomically), then sleep: a task to kill."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        fh.write(str(os.getpid()))
    os.replace(tmp, path)
    time.sleep(seconds)
    return os.getpid()


@task
def ray_view() -> dict:
    """What Ray says about the task running this: its name and its assigned resources."""
    import ray

    ctx = ray.get_runtime_context()
    return {"name": ctx.get_task_name(), "resources": ctx.get_assigned_resources()}


@task(resources={"braid_slot": 1, "cpus": 1})
def ray_view_with_hints() -> dict:
    """``ray_view`` for a task that declares its own resource hints."""
    return ray_view.fn()


@task
def nested_where() -> tuple:
    """The nested runner's type, this pid, and the pid a child task ran in."""
    runner = get_run_context().task_runner
    child_pid = st.where.submit().result()[0]
    return type(runner).__name__, os.getpid(), child_pid


@task
def blob(n: int) -> bytes:
    """``n`` bytes: a result too large to pass through the driver unnoticed."""
    return b"x" * n


@task
def size_of(data: bytes) -> int:
    """The length of ``data``."""
    return len(data)


@task
def wait_on_children(x: int, how: str) -> int:
    """Submit two children, wait for them with ``braid.wait`` or ``as_completed``, add up."""
    children = [st.inc.submit(x), st.inc.submit(x + 10)]
    if how == "wait":
        done, not_done = wait(children)
        assert not not_done
        return sum(f.result() for f in done)
    return sum(f.result() for f in as_completed(children))


@task
def mark_then_sleep(path: str, seconds: float) -> str:
    """Create the file ``path`` (the run has started), then sleep ``seconds``."""
    with open(path, "w"):
        pass
    time.sleep(seconds)
    return path


@task
def five_fails(x: int) -> int:
    """``x``, except for 5: raises ``ValueError`` (one failure among a map's runs)."""
    if x == 5:
        raise ValueError("five")
    return x


@task
def first_kills_worker(marker: str, x: int) -> int:
    """``x``; the first run to start kills its worker process (``marker`` records it)."""
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        os._exit(1)
    return x
