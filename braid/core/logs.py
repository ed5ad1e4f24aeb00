"""Run logging: ``log_prints``, and the path by which records made on a worker in another
process reach the driver's handlers.

On a remote worker, :func:`capture` collects the records of the run loggers
(``braid.task_runs``, ``braid.flow_runs``, and ``print`` under ``log_prints``) made
by the running task's thread; they travel in ``state.extra["logs"]`` with the
final state, and :func:`replay` hands them to the driver's loggers, which treat
them like local records (handlers and their levels apply).
"""

from __future__ import annotations

import builtins
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from braid.core.context import current_run, ensure_console, run_logger_for

__all__ = ["ensure_print_hook", "capture", "replay", "RUN_LOGGERS"]

RUN_LOGGERS = ("braid.task_runs", "braid.flow_runs")
_original_print = builtins.print
_hook_lock = threading.Lock()
_hook_installed = False


def _print(
    *args: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None, flush: bool = False
) -> None:
    ctx = current_run.get()
    if ctx is None or not ctx.log_prints or file not in (None, sys.stdout):
        _original_print(*args, sep=sep, end=end, file=file, flush=flush)
        return
    text = (" " if sep is None else sep).join(str(a) for a in args)
    run_logger_for(ctx).info(text, extra={"print": True})


def ensure_print_hook() -> None:
    """Route ``print`` to the run logger in runs with ``log_prints=True`` (installed once).

    The hook checks the current run on each call: code outside such runs prints as usual.
    """
    global _hook_installed
    if _hook_installed:
        return
    with _hook_lock:
        if not _hook_installed:
            builtins.print = _print
            _hook_installed = True


class _Collector(logging.Handler):
    """One per process: files each record under the thread that made it, if captured."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.by_thread: dict[int, list[logging.LogRecord]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        records = self.by_thread.get(record.thread)  # type: ignore[arg-type]
        if records is None:
            return
        record.msg = record.getMessage()  # freeze the message: its args may not pickle
        record.args = None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        records.append(record)


_collector: _Collector | None = None


@contextmanager
def capture(level: int) -> Iterator[list[logging.LogRecord]]:
    """Collect the run loggers' records made by this thread at ``level`` or above.

    Meant for worker processes: it lowers the run loggers' level to ``level`` for the
    rest of the process's life, so records the driver wants are made at all.
    """
    global _collector
    if _collector is None:
        with _hook_lock:
            if _collector is None:
                _collector = _Collector()
                for name in RUN_LOGGERS:
                    logging.getLogger(name).addHandler(_collector)
    for name in RUN_LOGGERS:
        lg = logging.getLogger(name)
        if lg.getEffectiveLevel() > level:
            lg.setLevel(level)
    me = threading.get_ident()
    records: list[logging.LogRecord] = []
    previous = _collector.by_thread.get(me)
    _collector.by_thread[me] = records
    try:
        yield records
    finally:
        if previous is None:
            _collector.by_thread.pop(me, None)
        else:
            _collector.by_thread[me] = previous


def driver_level() -> int:
    """The level the driver's run loggers pass (what workers should bother to collect);
    the console that shows run records is set up first, as a local run logger would."""
    ensure_console()
    return logging.getLogger(RUN_LOGGERS[0]).getEffectiveLevel()


def replay(records: list[logging.LogRecord] | None, where: str | None = None) -> None:
    """Hand records made on a worker to this process's loggers, as if made here (shown on
    the console as local run records are, until the application configures logging)."""
    if records:
        ensure_console()
    for record in records or ():
        if where is not None and not hasattr(record, "worker"):
            record.worker = where
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)
