"""The three overhead cases, timed for a braid runner and for its raw backend.

Both sides do the same work with the same number of workers:

    case     braid                                   raw backend
    submit   N x task.submit(i), then .result()      N x executor.submit(fn, i), then .result()
    map      task.map(range(N)).result()             list(executor.map(fn, range(N)))
    chain    N/200 chains of 200 .submit(previous)   each link submitted from the done
             (braid schedules dependencies)          callback of the previous one

A raw pool that crosses a process boundary gets every call cloudpickled, as braid
does (``RawPool(pickled=True)``).  Each (case, N) starts a fresh pool on each side,
runs a warm-up of up to 1 000 tasks on each, then times repeats of the two sides
interleaved and keeps the median of each.  The task functions live here, at module
top level, so spawned workers import them by name.
"""

from __future__ import annotations

import concurrent.futures as cf
import statistics
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import cloudpickle
from common import (
    CASES,
    CHAIN_LENGTH,
    FULL_LINE_BUDGET_S,
    FULL_REPEATS,
    FULL_SIZES,
    QUICK_REPEATS,
    QUICK_SIZES,
    Row,
    make_row,
    overhead_table,
    progress,
    time_once,
    write_json,
)

from braid import TaskRunner, flow, task

WARMUP_TASKS = 1_000
# Small sizes take milliseconds per repeat: repeat them until this much time has been
# spent, so that the median is not one scheduler hiccup.
FULL_MIN_SECONDS = 2.0
QUICK_MIN_SECONDS = 0.25
MAX_REPEATS = 50


def identity(x: Any) -> Any:
    """The no-op task body: returns its argument (a chain link passes it on)."""
    return x


identity_task = task(name="identity")(identity)


def run_pickled(payload: bytes) -> Any:
    """Worker side of a raw cloudpickled call: load ``(fn, args)`` and call it."""
    fn, args = cloudpickle.loads(payload)
    return fn(*args)


class RawPool:
    """A ``concurrent.futures`` executor and the way a call is handed to it.

    ``pickled=True`` cloudpickles each ``(fn, args)`` before it is submitted, the
    work braid's process runner does too, so the comparison is like for like.
    """

    def __init__(self, executor: cf.Executor, pickled: bool = False) -> None:
        self.executor = executor
        self.pickled = pickled

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        if self.pickled:
            return self.executor.submit(run_pickled, cloudpickle.dumps((fn, args)))
        return self.executor.submit(fn, *args)

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        if self.pickled:
            return self.executor.map(run_pickled, (cloudpickle.dumps((fn, (i,))) for i in items))
        return self.executor.map(fn, items)

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True)


# -- the cases, raw side ------------------------------------------------------------------


def raw_submit(pool: RawPool, n: int) -> None:
    futures = [pool.submit(identity, i) for i in range(n)]
    for f in futures:
        f.result()


def raw_map(pool: RawPool, n: int) -> None:
    for _ in pool.map(identity, range(n)):
        pass


def raw_chain(pool: RawPool, n: int) -> None:
    """n // 200 chains; each link is submitted by the done callback of the one before."""
    chains = n // CHAIN_LENGTH
    finished = threading.Event()
    lock = threading.Lock()
    state = {"left": chains, "error": None}

    def follow(future: cf.Future, length: int) -> None:
        def on_done(f: cf.Future) -> None:
            try:
                value = f.result()
            except BaseException as exc:  # noqa: BLE001 - reported by the caller
                state["error"] = exc
                finished.set()
                return
            if length < CHAIN_LENGTH:
                follow(pool.submit(identity, value), length + 1)
                return
            with lock:
                state["left"] -= 1
                if state["left"] == 0:
                    finished.set()

        future.add_done_callback(on_done)

    for c in range(chains):
        follow(pool.submit(identity, c), 1)
    finished.wait()
    if state["error"] is not None:
        raise state["error"]


# -- the cases, braid side ------------------------------------------------------------------


def braid_submit(n: int) -> None:
    futures = [identity_task.submit(i) for i in range(n)]
    for f in futures:
        f.result()


def braid_map(n: int) -> None:
    identity_task.map(range(n)).result()


def braid_chain(n: int) -> None:
    ends = []
    for c in range(n // CHAIN_LENGTH):
        f = identity_task.submit(c)
        for _ in range(CHAIN_LENGTH - 1):
            f = identity_task.submit(f)
        ends.append(f)
    for f in ends:
        f.result()


RAW_CASES: dict[str, Callable[[RawPool, int], None]] = {
    "submit": raw_submit,
    "map": raw_map,
    "chain": raw_chain,
}
BRAID_CASES: dict[str, Callable[[int], None]] = {
    "submit": braid_submit,
    "map": braid_map,
    "chain": braid_chain,
}


def time_pair(
    make_runner: Callable[[], TaskRunner],
    make_pool: Callable[[], RawPool],
    case: str,
    n: int,
    min_repeats: int,
    min_seconds: float,
) -> tuple[list[float], list[float]]:
    """Seconds per repeat of ``case`` on the raw pool and on braid, interleaved.

    Both pools are started and warmed up first; then each repeat times one raw run
    and one braid run back to back (alternating which goes first), so noise from
    other work on the machine hits both sides alike.  Repeats go on until there are
    ``min_repeats`` and ``min_seconds`` have been spent, or ``MAX_REPEATS``.
    """
    raw_body, braid_body = RAW_CASES[case], BRAID_CASES[case]
    pool = make_pool()

    @flow(name="bench-overhead", task_runner=make_runner())
    def paired() -> tuple[list[float], list[float]]:
        warm = min(n, WARMUP_TASKS)
        raw_body(pool, warm)
        braid_body(warm)
        raw: list[float] = []
        braid: list[float] = []
        while len(raw) < MAX_REPEATS and (
            len(raw) < min_repeats or sum(raw) + sum(braid) < min_seconds
        ):
            if len(raw) % 2:
                braid.append(time_once(lambda: braid_body(n)))
                raw.append(time_once(lambda: raw_body(pool, n)))
            else:
                raw.append(time_once(lambda: raw_body(pool, n)))
                braid.append(time_once(lambda: braid_body(n)))
        return raw, braid

    try:
        return paired()
    finally:
        pool.shutdown()


def repeats_for(n: int, quick: bool) -> int:
    """Fewer repeats for the big sizes, so the full run stays within minutes."""
    if quick:
        return QUICK_REPEATS
    return FULL_REPEATS if n <= 10_000 else 3


def measure_overhead(
    runner: str,
    backend: str,
    make_runner: Callable[[], TaskRunner],
    make_pool: Callable[[], RawPool],
    quick: bool = False,
    budget_s: float = FULL_LINE_BUDGET_S,
) -> list[Row]:
    """Rows for every case and size; a size whose estimated time exceeds the budget
    (from the µs/task of the size before) gets a row with a note instead."""
    sizes = QUICK_SIZES if quick else FULL_SIZES
    rows: list[Row] = []
    for case in CASES:
        us_per_task_both: float | None = None
        for n in sizes:
            repeats = repeats_for(n, quick)
            if us_per_task_both is not None:
                estimate = us_per_task_both * n * (repeats + 1) / 1e6
                if estimate > budget_s:
                    note = f"skipped: ~{estimate:.0f} s > {budget_s:.0f} s budget"
                    rows.append(make_row(runner, backend, case, n, None, None, note))
                    progress(f"{runner} {case} N={n:,}: {note}")
                    continue
            raw_s, braid_s = time_pair(
                make_runner,
                make_pool,
                case,
                n,
                repeats,
                QUICK_MIN_SECONDS if quick else FULL_MIN_SECONDS,
            )
            raw = statistics.median(raw_s) / n * 1e6
            braid = statistics.median(braid_s) / n * 1e6
            us_per_task_both = raw + braid
            rows.append(make_row(runner, backend, case, n, braid, raw))
            progress(
                f"{runner} {case} N={n:,}: braid {braid:.1f} µs/task, "
                f"raw {raw:.1f} µs/task, ratio {braid / raw:.2f}"
            )
    return rows


def report_overhead(rows: list[Row], header: str, json_path: str | None) -> None:
    """Print the overhead table under ``header`` and write the rows as JSON if asked."""
    print(f"{header}\n")
    print(overhead_table(rows))
    if json_path:
        write_json(json_path, rows)
