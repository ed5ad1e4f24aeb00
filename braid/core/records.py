"""Run records: what a flow run did — its task runs, their states, times and places.

Every flow run keeps a :class:`FlowRunRecord`; ``.submit()``/``.map()`` and direct
calls in the flow's body add to it (one list append per run; the details are read
from the futures' final states only when asked).  The final flow State carries it as
``state.record``, which is what ``braid run`` summarises and draws.

Task runs submitted from inside other tasks are not listed (they still drain with
their runner).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from braid.core.context import default_run_name
from braid.core.states import State

__all__ = ["TaskRunRecord", "FlowRunRecord", "DirectRun", "watch_flow_runs"]

_watchers: list[list[FlowRunRecord]] = []


class TaskRunRecord:
    """One task run: names, final state, start and end (epoch seconds), where it ran."""

    def __init__(
        self,
        id: str,
        name: str,
        task_name: str,
        state_type: str,  # noqa: A002
        state_name: str,
        start: float | None,
        end: float | None,
        where: str | None,
        error: str | None,
    ) -> None:
        self.id = id
        self.name = name
        self.task_name = task_name
        self.state_type = state_type
        self.state_name = state_name
        self.start = start
        self.end = end
        self.where = where
        self.error = error

    def __repr__(self) -> str:
        return f"TaskRunRecord(name={self.name!r}, state_name={self.state_name!r})"

    @property
    def duration(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return max(0.0, self.end - self.start)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "duration": self.duration}


class FlowRunRecord:
    """One flow run: its task runs and nested flow runs, filled in as the run goes."""

    def __init__(self, id: str, name: str, flow_name: str, runner: str) -> None:  # noqa: A002
        self.id = id
        self.name = name
        self.flow_name = flow_name
        self.runner = runner
        self.start: float = time.time()
        self.end: float | None = None
        self.state_type: str | None = None
        self.state_name: str | None = None
        self.error: str | None = None
        self.flow_runs: list[FlowRunRecord] = []
        self._entries: list[Any] = []  # the run table's Runs and DirectRuns

    def __repr__(self) -> str:
        return f"FlowRunRecord(name={self.name!r}, state_name={self.state_name!r})"

    # -- filled in while running ------------------------------------------------------
    def add(self, entry: Any) -> None:
        """Record a submitted run (the run table's ``Run``) or a direct call (``DirectRun``)."""
        self._entries.append(entry)

    def finish(self, state: State) -> None:
        self.end = time.time()
        self.state_type = state.type.value
        self.state_name = state.name
        if not state.is_completed():
            self.error = _first_line(state.message)

    # -- read -------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Task runs by state type now (PENDING, RUNNING, COMPLETED, ...), this flow only."""
        out: dict[str, int] = {}
        for entry in self._entries:
            key = entry.current_type
            out[key] = out.get(key, 0) + 1
        return out

    @property
    def task_runs(self) -> list[TaskRunRecord]:
        """The task runs of this flow run (not of nested flows), in submission order."""
        return [_task_record(e) for e in self._entries]

    def all_task_runs(self) -> list[TaskRunRecord]:
        """Task runs of this flow run and of every nested flow run."""
        out = self.task_runs
        for child in self.flow_runs:
            out.extend(child.all_task_runs())
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "flow_name": self.flow_name,
            "runner": self.runner,
            "start": self.start,
            "end": self.end,
            "state_type": self.state_type,
            "state_name": self.state_name,
            "error": self.error,
            "task_runs": [t.to_dict() for t in self.task_runs],
            "flow_runs": [f.to_dict() for f in self.flow_runs],
        }


@contextmanager
def watch_flow_runs() -> Iterator[list[FlowRunRecord]]:
    """Collect the records of top-level flow runs started inside the block, as they start.

    The list fills while the flows run, so another thread can show live progress
    (``record.counts()``); nested flow runs appear under their parent's ``flow_runs``.
    """
    seen: list[FlowRunRecord] = []
    _watchers.append(seen)
    try:
        yield seen
    finally:
        _watchers.remove(seen)


def started(record: FlowRunRecord, parent: FlowRunRecord | None) -> None:
    """Called by the flow engine when a flow run starts."""
    if parent is not None:
        parent.flow_runs.append(record)
    else:
        for seen in _watchers:
            seen.append(record)


def _first_line(text: str | None) -> str | None:
    if not text:
        return None
    return text.strip().splitlines()[0] if text.strip() else None


class DirectRun:
    """A task called directly in a flow body: already final; only its snapshot is kept."""

    __slots__ = (
        "run_id",
        "task_name",
        "name",
        "state_type",
        "state_name",
        "start",
        "end",
        "where",
        "error",
    )

    def __init__(self, state: State, task: Any, run_id: int) -> None:
        self.run_id = run_id
        self.task_name = task.name
        self.name = state.task_run_name
        self.state_type = state.type.value
        self.state_name = state.name
        self.start = state.started
        self.end = state.timestamp_seconds
        self.where = state.where
        self.error = None if state.is_completed() else (_first_line(state.message) or state.name)

    @property
    def current_type(self) -> str:
        return self.state_type


def _task_record(entry: Any) -> TaskRunRecord:
    """The record of a run table's run or a direct call (snapshots; nothing is fetched)."""
    import uuid

    run_id = str(uuid.UUID(int=entry.run_id, version=4))
    if entry.state_type is not None:  # final: the snapshot
        return TaskRunRecord(
            id=run_id,
            name=entry.name or default_run_name(entry.task_name, entry.run_id),
            task_name=entry.task_name,
            state_type=entry.state_type,
            state_name=entry.state_name,
            start=entry.start,
            end=entry.end,
            where=entry.where,
            error=entry.error,
        )
    future = entry.future
    st = future.state if future is not None else None
    return TaskRunRecord(
        id=run_id,
        name=(future.task_run_name if future is not None else None) or "",
        task_name=entry.task_name,
        state_type=entry.current_type,
        state_name=st.name if st is not None else entry.current_type.title(),
        start=None,
        end=None,
        where=None,
        error=None,
    )
