"""The seed's state dependencies: ``wait_for`` orders tasks that share no data.

``task_c`` starts only after ``task_a`` and ``task_b`` are final; ``task_d``, called
directly, waits for ``task_c`` first.
"""

from __future__ import annotations

import time

from braid import flow, task


@task
def task_a() -> None:
    time.sleep(0.05)
    print("task_a done")


@task
def task_b() -> None:
    time.sleep(0.1)
    print("task_b done")


@task
def task_c() -> None:
    print("task_c done")


@task
def task_d() -> None:
    print("task_d done")


@flow
def my_flow() -> None:
    a = task_a.submit()
    b = task_b.submit()
    # Wait for task_a and task_b to complete
    c = task_c.submit(wait_for=[a, b])
    # task_d will wait for task_c to complete
    # Note: If waiting for one task it must still be in a list.
    task_d(wait_for=[c])


if __name__ == "__main__":
    my_flow()
