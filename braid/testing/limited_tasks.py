"""Module-level tasks the limits conformance tests use (workers import them by name): they
note when they start and end, so a test can measure how many ran at once."""

from __future__ import annotations

import os
import time
from pathlib import Path

from braid import task
from braid.concurrency.sync import concurrency

#: the tag (and limit name) the tests declare
TAG = "braid-test-db"
#: the limit name tasks take slots of themselves, with concurrency()
NAME = "braid-test-api"


def _span(folder: str, label: str, seconds: float) -> None:
    start = time.time()
    time.sleep(seconds)
    Path(folder, f"{label}-{time.monotonic_ns()}").write_text(f"{start} {time.time()}")


@task(tags=[TAG])
def tagged_span(folder: str, i: int, seconds: float = 0.2) -> int:
    """Sleeps ``seconds`` and notes its start and end in ``folder``; tagged with TAG."""
    _span(folder, f"t{i}", seconds)
    return i


@task
def untagged_span(folder: str, i: int, seconds: float = 0.2) -> int:
    """As ``tagged_span`` without tags of its own (given them with ``tags()``)."""
    _span(folder, f"u{i}", seconds)
    return i


@task
def guarded_span(folder: str, i: int, seconds: float = 0.15) -> int:
    """Takes a slot of NAME with ``concurrency()`` around its noted span."""
    with concurrency(NAME, occupy=1, strict=True):
        _span(folder, f"g{i}", seconds)
    return i


@task
def plain_child(x: int) -> int:
    """An untagged child."""
    return x + 1


@task(tags=[TAG])
def tagged_parent(x: int) -> int:
    """Holds a TAG slot while it submits a child and waits for it."""
    return plain_child.submit(x).result()


def peak(folder: str) -> int:
    """The most spans of ``folder`` that overlapped at one moment."""
    events = []
    for f in Path(folder).iterdir():
        start, end = map(float, f.read_text().split())
        events += [(start, 1), (end, -1)]
    now = best = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        now += step
        best = max(best, now)
    return best


@task
def exit_worker(code: int = 3) -> None:
    """Ends the worker process it runs in at once (a process runner replaces it)."""
    os._exit(code)
