"""Tasks for the tests of chains whose links share Ray tasks (tests/test_ray_chains.py):
importable on the Ray workers, so defined at module level."""

from __future__ import annotations

import os
import time

from braid import task


@task
def link(x: int) -> int:
    """``x + 1``."""
    return x + 1


@task
def fails_at(x: int, at: int) -> int:
    """``x + 1``, except when ``x == at``: raises ``ValueError`` naming ``x``."""
    if x == at:
        raise ValueError(f"link at {x}")
    return x + 1


@task
def blob_after(x: int, size: int) -> bytes:
    """``size`` bytes (over the header's inline limit: the result stays in Ray)."""
    return bytes(size)


@task
def length(data: bytes) -> int:
    """``len(data)``."""
    return len(data)


@task
def got(value: object) -> str:
    """The type name of what the run was given (an exception under ``allow_failure``)."""
    return type(value).__name__


@task
def logged_link(log: str, marker: str, x: int, kill_at: int) -> int:
    """``x + 1``; appends ``x`` to the file ``log`` each time it runs, and the first run
    to start with ``x == kill_at`` (``marker`` records it) kills its worker process."""
    with open(log, "a") as f:
        f.write(f"{x}\n")
    if x == kill_at and not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        os._exit(1)
    return x + 1


@task
def dies_after(seconds: float) -> int:
    """Sleep ``seconds``, then kill the worker process running it (never returns)."""
    time.sleep(seconds)
    os._exit(1)


@task
def add(x: int, y: int) -> int:
    """``x + y``."""
    return x + y
