"""The live progress line of ``braid run``: counts from the run records, fitted to the terminal.

A background thread redraws one line on stderr (``\\r``, erase, text) every 0.2 s.  The
counts come from ``FlowRunRecord.counts()`` of the flow runs being watched and of their
nested flow runs, which read each run's state type as the run table knows it: nothing is
fetched from a worker or a cluster, so the line never waits for results.

The line is never wider than the terminal minus one column (a full-width line makes some
terminals wrap, leaving a new line per redraw): it drops the flow run's name, the elapsed
time, the bar, then spells counts shorter, down to ``done/total`` and the ETA.

On runners whose backend orders runs itself (``native_dependencies``: Dask, Ray) a run
is handed to the cluster as soon as it is accepted and braid learns that a worker began
it only when it ends; there, until some run is seen RUNNING, runs not final are shown
as ``on cluster`` (queued or running there) instead of a running/pending split that
would always read "0 running".
"""

from __future__ import annotations

import collections
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple, TextIO

from braid.core.records import FlowRunRecord

__all__ = ["ProgressCounts", "ProgressLine", "count_runs", "render_progress", "terminal_width"]

#: seconds of history the rate (and so the ETA) is measured over
RATE_WINDOW = 10.0


class ProgressCounts(NamedTuple):
    """Task runs by what the live line shows, with the rate (runs/s, None: not known yet)."""

    done: int
    failed: int
    cancelled: int
    running: int
    pending: int
    elapsed: float
    rate: float | None
    on_cluster: bool = False  # running and pending cannot be told apart (see module doc)

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.cancelled

    @property
    def total(self) -> int:
        return self.finished + self.running + self.pending

    @property
    def eta(self) -> float | None:
        """Seconds until every run now known is final at the current rate, or None."""
        left = self.running + self.pending
        if left == 0:
            return 0.0
        if not self.rate:
            return None
        return left / self.rate


def count_runs(records: Sequence[FlowRunRecord]) -> dict[str, int]:
    """Task runs by state type now, over these flow runs and all their nested flow runs."""
    out: dict[str, int] = {}
    stack = list(records)
    while stack:
        record = stack.pop()
        for key, n in record.counts().items():
            out[key] = out.get(key, 0) + n
        stack.extend(record.flow_runs)
    return out


def terminal_width(stream: TextIO) -> int:
    """Columns of the terminal ``stream`` writes to (``COLUMNS`` wins; 80 when unknown)."""
    if not os.environ.get("COLUMNS"):
        try:
            columns = os.get_terminal_size(stream.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
        if columns > 0:
            return columns
    return shutil.get_terminal_size().columns


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    s = int(seconds + 0.5)
    if s >= 3600:
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


def _rate(rate: float | None, unit: str) -> str:
    if rate is None:
        return f"-{unit}"
    return f"{rate:.1f}{unit}" if rate < 10 else f"{rate:.0f}{unit}"


def render_progress(name: str, c: ProgressCounts, width: int) -> str:
    """The progress line for counts ``c`` of flow run ``name``, at most ``width - 1`` long.

    Forms are tried from the most to the least spelled out; the first that fits wins,
    and the last resort is cut to fit.
    """
    limit = max(1, width - 1)
    pct = f"{100 * c.finished // c.total if c.total else 0}%"
    frac = f"{c.finished}/{c.total}"
    eta = _clock(c.eta)
    if c.on_cluster:
        active_long = f"{c.running + c.pending} queued or running on the cluster"
        active_mid = f"{c.running + c.pending} on cluster"
        active_short = f"c{c.running + c.pending}"
    else:
        active_long = active_mid = f"{c.running} running, {c.pending} pending"
        active_short = f"r{c.running} p{c.pending}"
    cancelled = f", {c.cancelled} cancelled" if c.cancelled else ""
    counts_long = f"{c.done} done, {c.failed} failed{cancelled}, {active_long}"
    counts_mid = f"{c.done} done, {c.failed} failed{cancelled}, {active_mid}"
    counts_short = (
        f"d{c.done} f{c.failed}" + (f" x{c.cancelled}" if c.cancelled else "") + f" {active_short}"
    )
    tail = f"{_rate(c.rate, ' runs/s')} | ETA {eta} | {_clock(c.elapsed)}"
    # each form takes the bar (\"\" or \" [###...]\"); most ignore it
    forms: list[Callable[[str], str]] = [
        lambda bar: f"{name}: {frac} {pct}{bar} | {counts_long} | {tail}",
        lambda bar: f"{name}: {frac} {pct} | {counts_mid} | {tail}",
        lambda bar: f"{frac} {pct}{bar} | {counts_long} | {tail}",
        lambda bar: f"{frac} {pct} | {counts_mid} | {_rate(c.rate, '/s')} | ETA {eta}",
        lambda bar: f"{frac} {counts_short} {_rate(c.rate, '/s')} ETA {eta}",
        lambda bar: f"{frac} {counts_short} ETA {eta}",
        lambda bar: f"{frac} f{c.failed} ETA {eta}",
        lambda bar: f"{frac} ETA {eta}",
    ]
    for form in forms:
        text = form("")
        if len(text) <= limit:
            cells = min(20, limit - len(text) - 3)  # a bar in the room left, if enough
            if cells >= 8:
                fraction = c.finished / c.total if c.total else 0.0
                filled = int(fraction * cells + 1e-9)
                text = form(" [" + "#" * filled + "." * (cells - filled) + "]")
            return text
    return forms[-1]("")[:limit]


class ProgressLine:
    """A live one-line progress display on a terminal, redrawn from a background thread.

    Reads the records of the flow runs being watched (``records`` fills as they start);
    ``cluster`` says the runner's backend orders runs itself (see the module's doc).
    ``stop()`` draws the last state and ends the line so the summary starts clean.
    """

    def __init__(
        self,
        stream: TextIO,
        records: list[FlowRunRecord],
        interval: float = 0.2,
        cluster: bool = False,
    ) -> None:
        self.stream = stream
        self.records = records
        self.interval = interval
        self.cluster = cluster
        self.started = time.monotonic()
        self._history: collections.deque[tuple[float, int]] = collections.deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="braid-cli-progress", daemon=True)

    def start(self) -> None:
        """Draw the first line and start redrawing."""
        self._draw()
        self._thread.start()

    def stop(self) -> None:
        """Stop redrawing, draw the final counts and end the line (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._draw()
        self.stream.write("\n")
        self.stream.flush()

    def counts(self) -> ProgressCounts:
        """The counts now, with the rate over the last ``RATE_WINDOW`` seconds."""
        c = count_runs(self.records)
        now = time.monotonic()
        done = c.get("COMPLETED", 0)
        failed = c.get("FAILED", 0) + c.get("CRASHED", 0)
        cancelled = c.get("CANCELLED", 0)
        finished = done + failed + cancelled
        history = self._history
        history.append((now, finished))
        while len(history) > 2 and now - history[1][0] >= RATE_WINDOW:
            history.popleft()
        then, before = history[0]
        rate = (finished - before) / (now - then) if now - then >= 0.5 else None
        if rate is not None and finished == 0:
            rate = None
        running = c.get("RUNNING", 0)
        if running:
            self.cluster = False  # the runner does report when runs begin
        return ProgressCounts(
            done,
            failed,
            cancelled,
            running,
            c.get("PENDING", 0),
            now - self.started,
            rate,
            self.cluster,
        )

    def line(self, width: int | None = None) -> str:
        """The text of the progress line now, for ``width`` columns (default: the terminal's)."""
        name = self.records[0].name if self.records else "starting"
        if width is None:
            width = terminal_width(self.stream)
        return render_progress(name, self.counts(), width)

    def _draw(self) -> None:
        try:
            self.stream.write("\r\x1b[2K" + self.line())
            self.stream.flush()
        except (OSError, ValueError):
            self._stop.set()  # the terminal went away: stop drawing, keep running

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._draw()
