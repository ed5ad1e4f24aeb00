"""The log lines of each run, kept in its flow run's record (the report's detail panel).

Every record made in this process inside a run (the record factory of
:mod:`braid.core.logs` sees it) and every record a worker sent here (``logs.replay``)
carries its flow run id and task run id; :func:`note` appends the record's line to
that flow run's record, if the flow run is in this process.  A run keeps its last
:data:`LINES_PER_RUN` lines and a flow run at most :data:`LINES_PER_FLOW` in all, so
a run that logs much costs a bounded amount; a run that logs nothing costs nothing.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import weakref
from typing import Any

__all__ = ["LINES_PER_FLOW", "LINES_PER_RUN", "LINE_CHARS", "lines_of", "note", "register"]

#: the last lines kept per run, and in all per flow run; characters kept per line
LINES_PER_RUN = 50
LINES_PER_FLOW = 20_000
LINE_CHARS = 500

_records: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
_lock = threading.Lock()


def register(flow_run_id: str, record: Any) -> None:
    """Keep the lines of flow run ``flow_run_id``'s runs in ``record`` (a FlowRunRecord)."""
    _records[flow_run_id] = record


def note(log: logging.LogRecord, flow_run_id: Any, task_run_id: Any) -> None:
    """Add ``log``'s line to its run's lines (a flow run's own lines under ``None``)."""
    if not _records or flow_run_id is None:
        return
    record = _records.get(flow_run_id)
    if record is None:
        return
    try:
        text = log.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string: the raw message will do
        text = str(log.msg)
    stamp = time.strftime("%H:%M:%S", time.localtime(log.created))
    line = f"{stamp}.{int(log.msecs):03d} {log.levelname} {log.name}: {text}"[:LINE_CHARS]
    with _lock:
        lines = record.logs
        if lines is None:
            lines = record.logs = {}
        if record.log_count >= LINES_PER_FLOW:
            return
        record.log_count += 1
        kept = lines.get(task_run_id)
        if kept is None:
            kept = lines[task_run_id] = collections.deque(maxlen=LINES_PER_RUN)
        kept.append(line)


def lines_of(record: Any, task_run_id: str) -> str | None:
    """The kept lines of one run of ``record``, one per line (None: it logged nothing)."""
    lines = record.logs
    if not lines:
        return None
    kept = lines.get(task_run_id)
    return "\n".join(kept) if kept else None
