"""Tasks for the live-logging tests: importable by name in worker processes, on Dask and
on Ray.

A *gate* is a file path: :func:`log_then_wait` logs, then waits for the test's handler
to create the file when it sees that first record on the driver, so the run can only
end if its first record reached the driver while it was still running.
"""

from __future__ import annotations

import logging
import os
import time
import warnings

from braid import get_run_logger, task

#: how long a task waits for its gate before it fails the test (a hang guard only)
GATE_TIMEOUT = 60.0
#: the logger standing for a library the task's code uses
LIBRARY_LOGGER = "braid_testing_lib"


class TaskWarning(UserWarning):
    """The warning :func:`warn_and_log_elsewhere` raises."""


def first_message(token: str) -> str:
    """The first record :func:`log_then_wait` makes."""
    return f"first record {token}"


@task
def log_then_wait(token: str, gate: str) -> str:
    """Log a first record, wait until ``gate`` exists (the driver saw that record), then
    log a second one just before returning; fail if the gate never opens."""
    logger = get_run_logger()
    logger.info(first_message(token))
    deadline = time.monotonic() + GATE_TIMEOUT
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the driver never saw {first_message(token)!r} while it ran")
        time.sleep(0.01)
    logger.info(f"second record {token}")
    return token


@task
def warn_and_log_elsewhere(token: str) -> str:
    """Log on a library's logger and raise a :class:`TaskWarning`, both naming ``token``."""
    logging.getLogger(LIBRARY_LOGGER).warning("library record %s", token)
    warnings.warn(f"careful {token}", TaskWarning, stacklevel=1)
    return token


@task(log_prints=True)
def log_everything(token: str) -> str:
    """Configure this worker's own logging (as a module the task imports might), then
    make one record of each kind, each naming ``token``."""
    logging.basicConfig(level=logging.INFO)
    get_run_logger().info("run record %s", token)
    logging.getLogger(LIBRARY_LOGGER).warning("library record %s", token)
    warnings.warn(f"careful {token}", TaskWarning, stacklevel=1)
    print(f"printed {token}")
    return token


@task(log_prints=True)
def print_lines(token: str, n: int) -> str:
    """Print ``n`` numbered lines naming ``token`` (become records under ``log_prints``)."""
    for i in range(n):
        print(f"printed {token} {i}")
    return token
