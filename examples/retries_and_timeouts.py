"""Retries and time-outs: a flaky task that succeeds on its third attempt, and one that times out.

``retry_delay_seconds=[0.1, 0.2]`` waits 0.1 s before the first retry and 0.2 s
before each later one.  A run past ``timeout_seconds`` ends FAILED, named
``TimedOut``; ``return_state=True`` hands that State back instead of raising.
"""

from __future__ import annotations

import time

from braid import flow, get_run_context, task


@task(retries=3, retry_delay_seconds=[0.1, 0.2])
def flaky() -> str:
    attempt = get_run_context().task_run.attempt
    print(f"flaky: attempt {attempt}")
    if attempt < 3:
        raise ConnectionError(f"attempt {attempt} lost the connection")
    return f"flaky succeeded on attempt {attempt}"


@task(timeout_seconds=0.5)
def too_slow() -> str:
    time.sleep(5)
    return "too_slow finished"


@flow
def lifecycle() -> None:
    print(flaky.submit().result())

    t0 = time.perf_counter()
    state = too_slow.submit(return_state=True)
    waited = time.perf_counter() - t0
    print(f"too_slow: {state.type.value} {state.name} (gave up after {waited:.1f} s)")
    print(f"too_slow failed: {state.is_failed()}")


if __name__ == "__main__":
    t0 = time.perf_counter()
    lifecycle()
    print(f"flow returned after {time.perf_counter() - t0:.1f} s")
