"""Run logging: ``log_prints``, and the path by which records made on a worker in another
process reach the driver's handlers while the task runs.

How a record travels (processes, Dask and Ray; threads need none of this)::

    worker process                                        driver
    --------------                                        ------
    inside a task run, with a sink set (capture() or set_process_sink()):
      run logger / other logger / print (log_prints) /
      warnings.warn (as a ``py.warnings`` record)
        -> root logger -> _Forwarder: freeze the message
           (the run's fields are set), sink.put()  --*-->  replay(records): the driver's
           (the worker's own root handlers skip it)          loggers handle it as local
        at the run's end: sink.flush()                       (their handlers and levels)

``*`` is the backend's: the process runner's result pipe, Dask worker events, a Ray
actor (see each runner).  A sink delivers before the run's result, or flushes before
the task returns, so no record made in the run arrives after its flow ends.

The forwarder sits on the worker's root logger, so it sees records of every logger
that propagates; records made outside a run (and in runs without a sink) are left to
the worker's own logging.

In every process, records made inside a flow or task run carry the run's
``flow_run_name`` and ``task_run_name`` (the run loggers set them; a record factory
installed with this module sets them on other loggers' records), so a format such as
``%(task_run_name)s`` works for any record, on any runner.
"""

from __future__ import annotations

import builtins
import contextvars
import logging
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from braid.core import runlogs
from braid.core.context import current_run, ensure_console, run_logger_for

__all__ = [
    "ensure_print_hook",
    "capture",
    "set_process_sink",
    "RecordSink",
    "dumps_records",
    "replay",
    "driver_level",
    "RUN_LOGGERS",
]

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


class RecordSink(Protocol):
    """Where a worker sends the records of a run: the backend's channel to the driver."""

    def put(self, record: logging.LogRecord) -> None:
        """Send one record (already portable: message frozen, run fields set); never
        blocks for long, and may raise (the record is then dropped, the run goes on)."""

    def flush(self) -> None:
        """Return once every record put so far will reach the driver before the run's
        result does (called at the end of each run: cheap when nothing was put)."""


class _Collect:
    """The sink of last resort: keeps the records, to travel with the final state."""

    def __init__(self) -> None:
        self.records: list[logging.LogRecord] = []

    def put(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def flush(self) -> None:
        pass


_sink: contextvars.ContextVar[RecordSink | None] = contextvars.ContextVar(
    "braid_log_sink", default=None
)
_process_sink: RecordSink | None = None
_in_emit = threading.local()


def _target() -> RecordSink | None:
    """The sink for a record made now: a run's (or this worker process's) while a run is
    current, else None (the record is local business)."""
    sink = _sink.get() or _process_sink
    if sink is None or current_run.get() is None:
        return None
    return sink


class _Forwarder(logging.Handler):
    """On the worker's root logger: sends the records made inside runs to their sink."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)

    def handle(self, record: logging.LogRecord) -> bool:
        # no handler lock: sinks are thread-safe, and a sink that logs must not deadlock
        if getattr(_in_emit, "active", False):
            return False  # a record the sink itself made while sending: stays local
        sink = _target()
        if sink is None:
            return False
        _in_emit.active = True
        try:
            sink.put(_portable(record))
        except Exception:  # noqa: BLE001 - losing a record must never fail the run
            pass
        finally:
            _in_emit.active = False
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.handle(record)


class _NotForwarded(logging.Filter):
    """On the worker's other root handlers: a record sent to the driver is shown there
    only, never here as well."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(_in_emit, "active", False) or _target() is None


_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def _portable(record: logging.LogRecord) -> logging.LogRecord:
    """The record as it travels: message frozen (its args may not pickle), traceback as
    text."""
    record.msg = record.getMessage()
    record.args = None
    if record.exc_info:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.exc_info = None
    return record


def dumps_records(records: list[logging.LogRecord]) -> bytes:
    """Pickle portable records; an attribute that will not pickle (set with ``extra=``)
    travels as its ``repr``."""
    from braid.core.serialization import dumps

    try:
        return dumps(records)
    except Exception:  # noqa: BLE001 - rare: fall back record by record
        for record in records:
            for key, value in list(record.__dict__.items()):
                if key in _STANDARD:
                    continue
                try:
                    dumps(value)
                except Exception:  # noqa: BLE001
                    record.__dict__[key] = repr(value)
        return dumps(records)


def _with_run_fields(factory: Any) -> Any:
    """``factory``, making records that carry the current run's fields (the run loggers'
    records get them from their adapter, as ``extra``)."""

    def make(name: str, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = factory(name, *args, **kwargs)
        ctx = current_run.get()
        if ctx is not None:
            flow_run, task_run = ctx.flow_run, ctx.task_run
            if name not in RUN_LOGGERS:
                record.flow_run_name = flow_run.name if flow_run is not None else None
                record.task_run_name = task_run.name if task_run is not None else None
            # which run made it: its line is kept in the run's record (braid.core.runlogs)
            fid = record.flow_run_id = flow_run.id if flow_run is not None else None
            tid = record.task_run_id = str(task_run.id) if task_run is not None else None
            runlogs.note(record, fid, tid)
        return record

    return make


logging.setLogRecordFactory(_with_run_fields(logging.getLogRecordFactory()))

_original_showwarning = warnings.showwarning


def _showwarning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    if file is None and _target() is not None:
        # as logging.captureWarnings does: the formatted warning on ``py.warnings``
        text = warnings.formatwarning(message, category, filename, lineno, line)
        logging.getLogger("py.warnings").warning("%s", text)
        return
    _original_showwarning(message, category, filename, lineno, file, line)


_forwarder: _Forwarder | None = None
_not_forwarded = _NotForwarded()
_installed = (-1, 0)  # (level, number of root handlers) when last installed


def _install(level: int) -> None:
    """Make records the driver wants at all (levels at most ``level``), forward them, and
    keep the worker's own root handlers from showing them too (cheap when nothing
    changed since the last run: the common case)."""
    global _forwarder, _installed
    root = logging.getLogger()
    if _installed == (level, len(root.handlers)):
        return
    with _hook_lock:
        if _forwarder is None:
            _forwarder = _Forwarder()
            root.addHandler(_forwarder)
            if warnings.showwarning is _original_showwarning:
                warnings.showwarning = _showwarning
        for handler in root.handlers:  # handlers the task's modules added since, too
            if handler is not _forwarder and _not_forwarded not in handler.filters:
                handler.addFilter(_not_forwarded)
        for lg in (root, *(logging.getLogger(name) for name in RUN_LOGGERS)):
            if lg.getEffectiveLevel() > level:
                lg.setLevel(level)
        _installed = (level, len(root.handlers))


@contextmanager
def capture(level: int, sink: RecordSink | None = None) -> Iterator[list[logging.LogRecord]]:
    """Send the records made inside the run entered in this block to ``sink`` as they are
    made (at ``level`` and above), and flush it at the end.

    Meant for worker processes: it lowers the root and run loggers' levels to ``level``
    for the rest of the process's life, so records the driver wants are made at all.
    Without a sink (and without a process sink) the records are kept and yielded, to
    travel with the final state.
    """
    _install(level)
    kept: list[logging.LogRecord] = []
    if sink is None and _process_sink is None:
        collect = _Collect()
        kept = collect.records
        sink = collect
    token = _sink.set(sink)
    try:
        yield kept
    finally:
        _sink.reset(token)
        target = sink or _process_sink
        try:
            if target is not None:
                target.flush()
        except Exception:  # noqa: BLE001 - losing records must never fail the run
            pass


def set_process_sink(sink: RecordSink | None) -> None:
    """Send records made inside any run in this process to ``sink`` (a worker process
    that braid owns whole, such as the process runner's); None stops it."""
    global _process_sink
    _process_sink = sink


def driver_level() -> int:
    """The lowest level the driver passes, of its run loggers and its root logger (what
    workers should bother to make); the console that shows run records is set up first,
    as a local run logger would."""
    ensure_console()
    return min(
        logging.getLogger(RUN_LOGGERS[0]).getEffectiveLevel(),
        logging.getLogger().getEffectiveLevel(),
    )


def replay(records: list[logging.LogRecord] | None, where: str | None = None) -> None:
    """Hand records made on a worker to this process's loggers, as if made here (shown on
    the console as local run records are, until the application configures logging)."""
    if records:
        ensure_console()
    for record in records or ():
        if where is not None and not hasattr(record, "worker"):
            record.worker = where
        runlogs.note(
            record, getattr(record, "flow_run_id", None), getattr(record, "task_run_id", None)
        )
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)
