"""The seed's ``.result()`` examples: read a submitted task's value, or its exception.

``.result()`` blocks until the run is final and raises the task's exception if it
failed; ``raise_on_failure=False`` hands the exception back as the result instead.
"""

from __future__ import annotations

from braid import flow, task


@task
def answer_task() -> int:
    return 42


@task
def my_task(fail: bool) -> str:
    if fail:
        raise ValueError("the task was asked to fail")
    return "I'm a task!"


@flow
def result_flow() -> None:
    future = answer_task.submit()
    result = future.result()
    print(f"result: {result}")


@flow
def my_flow(fail: bool) -> None:
    future = my_task.submit(fail)
    result = future.result(raise_on_failure=False)
    if future.state.is_failed():
        # `result` is an exception: handle it
        print(f"failed: {type(result).__name__}: {result}")
    else:
        # `result` is the expected return value of our task
        print(f"completed: {result}")


if __name__ == "__main__":
    result_flow()
    my_flow(fail=False)
    my_flow(fail=True)
