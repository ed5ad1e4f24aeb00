"""A Prefect-style flow: retries with exponential backoff, task hooks by decorator, tags,
the run logger, log_prints, nested flows and the task run context (Prefect 3)."""

import os
import tempfile

from prefect import flow, get_run_logger, tags, task
from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging import disable_run_logger
from prefect.tasks import exponential_backoff

MARKER = os.path.join(tempfile.gettempdir(), f"nightly-{os.getpid()}")


@task(retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=0.01))
def flaky(marker: str) -> int:
    attempts = int(open(marker).read()) + 1 if os.path.exists(marker) else 1
    with open(marker, "w") as fh:
        fh.write(str(attempts))
    if attempts < 2:
        raise ConnectionError("try again")
    return attempts


@flaky.on_completion
def log_done(tsk, run, state):
    get_run_logger().info("%s finished as %s", run.name, state.name)


@task(log_prints=True)
def tagged() -> list:
    ctx = TaskRunContext.get()
    if ctx is None:  # called as .fn(), outside a task run
        return []
    print("running", ctx.task_run.name)
    return sorted(ctx.task_run.tags)


@flow
def child(x: int) -> int:
    assert FlowRunContext.get().flow_run.parent_flow_run_id is not None
    return x * 2


@flow(log_prints=True)
def nightly_retries(marker: str = MARKER) -> dict:
    logger = get_run_logger()
    logger.info("starting")
    attempts = flaky.submit(marker).result()
    with tags("nightly", "etl"):
        labels = tagged.submit().result()
    if os.path.exists(marker):
        os.remove(marker)
    with disable_run_logger():
        assert tagged.fn() == []
    result = {"attempts": attempts, "labels": labels, "child": child(21)}
    assert result == {"attempts": 2, "labels": ["etl", "nightly"], "child": 42}, result
    return result


if __name__ == "__main__":
    print(nightly_retries())
