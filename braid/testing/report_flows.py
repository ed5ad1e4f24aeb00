"""A flow with retries, failures and dependencies, for the record, report and trace tests.

``retries_and_failures`` runs on any runner (``braid run`` names it by file and flow):
``fetch`` fails its first two attempts and completes on the third, after a retry
delay of :data:`RETRY_DELAY` seconds each time; ``load`` completes; ``join`` waits for
both, is given a large list besides (its record must keep a short repr of it, never
the list), and raises ``KeyError`` so the flow ends FAILED; ``report`` never runs (its
upstream failed).  Run names are fixed, so tests can open ``REPORT.html#run=NAME``.
``size_of`` takes any value and a note, for tests of what a record keeps of arguments.
"""

from __future__ import annotations

import time

from braid import flow, get_run_context, get_run_logger, task

__all__ = ["RETRY_DELAY", "ROWS", "retries_and_failures", "size_of"]

#: seconds between attempts of ``fetch``
RETRY_DELAY = 0.3
#: the length of the list ``join`` is given
ROWS = 100_000


class FetchError(ConnectionError):
    """What ``fetch`` raises on its first two attempts."""


@task(retries=2, retry_delay_seconds=RETRY_DELAY, task_run_name="fetch-{source}")
def fetch(source: str) -> list[int]:
    attempt = get_run_context().task_run.attempt
    time.sleep(0.05)
    if attempt < 3:
        raise FetchError(f"connection reset on attempt {attempt}")
    return [1, 2, 3]


@task(task_run_name="load-{n}")
def load(n: int) -> list[int]:
    get_run_logger().info("loading %d rows", n)
    return list(range(n))


@task(task_run_name="join-{on}")
def join(left: list[int], right: list[int], rows: list[int], on: str = "user_id") -> int:
    time.sleep(0.05)
    raise KeyError(on)


@task(task_run_name="report")
def report(joined: int) -> str:
    return f"{joined} rows"


@flow(flow_run_name="retries-and-failures")
def retries_and_failures() -> str:
    """fetch (retried twice) and load feed join, which fails; report never runs."""
    left = fetch.submit("api")
    right = load.submit(3)
    joined = join.submit(left, right, list(range(ROWS)), on="user_id")
    return report.submit(joined).result()


@task
def size_of(value: object, note: str) -> int:
    return len(repr(value)) + len(note)
