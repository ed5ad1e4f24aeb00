"""Flows that the ``braid run`` tests run from the command line, one per behaviour.

``completes`` ends COMPLETED, ``fails`` ends FAILED with a traceback from a task,
``typed`` takes parameters of several types and reports what it received, and
``outer`` runs a nested flow that declares its own runner, ``hinted`` takes parameters
whose hints ``--param`` converts (dates, paths, an Enum, a Literal, containers),
``steady`` keeps a few runs going for a while (the live line mid-run), and ``messy``
fails many runs in a few ways, after retries (the summary and the report).  They are top-level
functions in an importable module so every runner can import them by name.
``UnreachableRunner`` is a ``--runner module:Class`` that cannot start.
"""

from __future__ import annotations

import datetime
import enum
import time
from pathlib import Path
from typing import Literal

from braid import ThreadPoolTaskRunner, flow, get_run_context, task


class UnreachableRunner(ThreadPoolTaskRunner):
    """A runner whose start fails, like a cluster that cannot be reached."""

    def __enter__(self) -> UnreachableRunner:
        raise ConnectionError("no cluster answers at the configured address")


class InventoryError(RuntimeError):
    """The error ``fails`` raises in a task, so tests can find its type and message."""


@task
def square(x: int) -> int:
    return x * x


@task
def total(values: list[int]) -> int:
    return sum(values)


@task
def check_stock(item: str, count: int) -> int:
    if count < 0:
        raise InventoryError(f"negative stock for {item}: {count}")
    return count


@task
def describe(value: object) -> str:
    return type(value).__name__


@flow
def completes(n: int = 5) -> int:
    """Sum of the squares of 0..n-1, one task run per square plus one for the sum."""
    return total.submit(square.map(range(n))).result()


@flow
def fails() -> int:
    """Two task runs complete, one raises InventoryError, one never runs (upstream failed)."""
    ok = check_stock.map(["apples", "pears"], [3, 4])
    bad = check_stock.submit("plums", -2)
    downstream = total.submit([bad, ok[0]])
    return downstream.result()


@flow
def typed(
    count: int,
    ratio: float,
    label: str,
    tags: list,
    options: dict,
    enabled: bool = False,
    note: str | None = None,
) -> dict:
    """Echo each parameter with the type name a task saw, to check parsing end to end."""
    values = {
        "count": count,
        "ratio": ratio,
        "label": label,
        "tags": tags,
        "options": options,
        "enabled": enabled,
        "note": note,
    }
    names = {k: describe.submit(v) for k, v in values.items()}
    return {k: [values[k], f.result()] for k, f in names.items()}


@flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
def inner(base: int) -> list[int]:
    """The nested flow: it keeps its own one-thread runner whatever ``braid run`` picks."""
    return square.map([base, base + 1]).result()


@flow
def outer(base: int = 2) -> dict:
    """Runs ``inner`` twice as nested flows around a task run of its own."""
    first = inner(base)
    middle = square.submit(base).result()
    second = inner(base + 10)
    return {"first": first, "middle": middle, "second": second}


class Colour(enum.Enum):
    """The Enum ``hinted`` takes: by member name or by value."""

    RED = "red"
    GREEN = "green"


@flow
def hinted(
    day: datetime.date,
    out: Path,
    colour: Colour,
    mode: Literal["fast", "slow"],
    ids: list[int],
    since: datetime.datetime | None = None,
    weights: dict[str, float] | None = None,
) -> dict:
    """Report what each hinted parameter became, as text, to check ``--param`` conversion."""
    return {
        "day": repr(day),
        "out": repr(out),
        "colour": repr(colour),
        "mode": mode,
        "ids": ids,
        "since": repr(since),
        "weights": weights,
    }


@task
def nap(i: int, seconds: float) -> int:
    time.sleep(seconds)
    return i


@flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
def steady(n: int = 16, seconds: float = 0.1) -> int:
    """``n`` runs of ``seconds`` each, two at a time: about ``n * seconds / 2`` long."""
    return sum(nap.map(range(n), seconds).result())


@task
def parse_row(i: int) -> int:
    """Fails for every third row (ValueError) and every seventh other one (KeyError)."""
    if i % 3 == 0:
        raise ValueError(f"row {i}: bad date 2024-13-{i % 28 + 1:02d}")
    if i % 7 == 0:
        raise KeyError(f"column c{i}")
    return i


@task(retries=2, retry_delay_seconds=0.05)
def flaky(i: int) -> int:
    """Fails its first attempt (a retry shows in records and the report), then succeeds."""
    if get_run_context().task_run.attempt == 1:
        raise ConnectionError(f"row {i}: connection reset")
    return i


@flow
def messy(n: int = 30) -> int:
    """``n`` parse_row runs (some fail two ways), two flaky runs that succeed on retry, and
    a total that does not run because its upstreams failed."""
    rows = parse_row.map(range(n))
    retried = flaky.map(range(2))
    return total.submit([*rows, *retried]).result()
