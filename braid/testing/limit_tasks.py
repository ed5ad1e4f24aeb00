"""Module-level helpers the concurrency-limit tests run in worker processes, Dask workers
and Ray workers (they import them by name)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

from braid.concurrency import LimitsHandle, use_limits
from braid.concurrency.sync import concurrency, rate_limit


def hold(
    handle: LimitsHandle, name: str, seconds: float, occupy: int = 1, timeout: float | None = None
) -> tuple[float, float]:
    """Hold ``occupy`` slots of ``name`` for ``seconds``; return (start, end) wall times taken
    inside the block."""
    with use_limits(handle), concurrency(name, occupy=occupy, timeout_seconds=timeout):
        start = time.time()
        time.sleep(seconds)
        return start, time.time()


def rate_times(handle: LimitsHandle, name: str, count: int) -> list[tuple[float, float]]:
    """Call ``rate_limit(name)`` ``count`` times; return the wall times just before and
    just after each call (the slot was granted somewhere between the two)."""
    times = []
    with use_limits(handle):
        for _ in range(count):
            before = time.time()
            rate_limit(name)
            times.append((before, time.time()))
    return times


def granted_span(spans: Iterable[list[tuple[float, float]]]) -> float:
    """The latest return minus the earliest call over ``rate_times`` results: never less
    than the time from the first grant to the last (each grant lies inside its call), so
    a rate limit spacing n grants ``interval`` apart makes it at least (n - 1) * interval."""
    pairs = [pair for calls in spans for pair in calls]
    return max(after for _, after in pairs) - min(before for before, _ in pairs)


def hold_then_die(handle: LimitsHandle, name: str, flag: str | None = None, slots: int = 1) -> None:
    """Take ``slots`` of ``name``, write ``flag`` (if given), then SIGKILL this process
    while holding them."""
    with use_limits(handle), concurrency(name, occupy=slots):
        if flag:
            Path(flag).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)


def hold_until_killed(handle: LimitsHandle, name: str, flag: str) -> None:
    """Take a slot of ``name``, write ``flag``, then wait to be killed from outside."""
    with use_limits(handle), concurrency(name):
        Path(flag).write_text(str(os.getpid()))
        time.sleep(60)


def peak(spans: list[tuple[float, float]]) -> int:
    """The largest number of (start, end) spans open at one time (an end before a start at
    the same instant)."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    current = best = 0
    for _, step in events:
        current += step
        best = max(best, current)
    return best


def hold_then_die_once(handle: LimitsHandle, name: str, flag: str) -> int:
    """The first time (``flag`` absent): take a slot of ``name``, write ``flag`` and SIGKILL
    this process while holding it.  When run again (a backend's retry): take a slot, give
    it back and return this pid."""
    if not Path(flag).exists():
        hold_then_die(handle, name, flag)
    hold(handle, name, 0)
    return os.getpid()
