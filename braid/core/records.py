"""Run records: what a flow run did — its task runs, their states, times and places.

Every flow run keeps a :class:`FlowRunRecord`; ``.submit()``/``.map()`` and direct
calls in the flow's body add to it (one list append per run; what a run's record
shows is kept as a small snapshot when the run ends and formatted only when asked).
The final flow State carries it as ``state.record``, which is what ``braid run``
summarises and draws.

What a task run's record holds, the same way for every runner: names, final state
and its whole message, start, end and place, its attempts (start, end, state name,
place, the error's first line and the retry delay of each), the ids of the runs it
waited for, its arguments shortened and the traceback of its last failure.
Attempts come from where the run table sees them: each ``AwaitingRetry`` state a
runner reports (a retry the table reschedules: threads and processes, after a
delay), and the attempts an engine retried in place before the state it reports,
when it lists them in ``state.extra["attempts"]`` as tuples (start, end, state name,
where, the error's first line, the retry delay).  Today's engine does not list them,
so a run retried in place (on Dask and Ray, or with no delay) shows its last attempt
only, and an ``AwaitingRetry`` state carries no place (its attempt's start is when a
worker took the run).
A record is a snapshot that keeps nothing of the run alive: arguments are kept as
they are only when they are small scalars, else as reprs cut to
:data:`ARGUMENT_CHARS` characters; a traceback is kept as frame summaries (file,
line, function; no locals) and formatted when read.

Task runs submitted from inside other tasks are not listed (they still drain with
their runner).
"""

from __future__ import annotations

import operator
import reprlib
import time
import traceback
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from braid.core.context import default_run_name
from braid.core.resolve import UpstreamSlot
from braid.core.runlogs import lines_of, register
from braid.core.states import State, StateType

__all__ = [
    "ARGUMENT_CHARS",
    "TaskRunRecord",
    "FlowRunRecord",
    "DirectRun",
    "watch_flow_runs",
]

#: the longest repr kept of one argument (a longer one loses its middle)
ARGUMENT_CHARS = 120
#: the innermost frames of a failure's traceback that a record keeps
TRACEBACK_FRAMES = 40

_watchers: list[list[FlowRunRecord]] = []


class TaskRunRecord:
    """One task run: names, final state, start and end (epoch seconds), where it ran, and
    its attempts, upstream ids, shortened arguments, message and traceback when known.

    ``attempts`` lists every attempt in order, each ``{start, end, state_name, where,
    error, delay}`` (``delay``: seconds waited before the next attempt; None for the
    last); it is empty for a run that never started.  ``upstreams`` holds the ids of
    the task runs it waited for, ``parameters`` its arguments by name (shortened
    reprs; None when none are known), ``message`` the whole state message and
    ``traceback`` the last failure's, formatted (None when it did not fail).
    """

    def __init__(
        self,
        id: str,  # noqa: A002
        name: str,
        task_name: str,
        state_type: str,
        state_name: str,
        start: float | None,
        end: float | None,
        where: str | None,
        error: str | None,
        attempts: list[dict[str, Any]] | None = None,
        upstreams: list[str] | None = None,
        parameters: dict[str, str] | None = None,
        message: str | None = None,
        traceback: str | None = None,
        logs: str | None = None,
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
        self.attempts: list[dict[str, Any]] = attempts or []
        self.upstreams: list[str] = upstreams or []
        self.parameters = parameters
        self.message = message
        self.traceback = traceback
        #: the run's log lines (not recorded yet on any runner: always None)
        self.logs = logs

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
        #: log lines by task run id (None: the flow run's own), see braid.core.runlogs
        self.logs: dict[Any, Any] | None = None
        self.log_count = 0

    def __repr__(self) -> str:
        return f"FlowRunRecord(name={self.name!r}, state_name={self.state_name!r})"

    # -- filled in while running ------------------------------------------------------
    def add(self, entry: Any) -> int:
        """Record a submitted run (the run table's ``Run``) or a direct call (``DirectRun``);
        return its place, for :meth:`settle`."""
        entries = self._entries
        at = len(entries)
        entries.append(entry)
        return at

    def add_many(self, entries: list[Any]) -> int:
        """Record many submitted runs at once (a ``.map()``), in their order; return the
        place of the first (the others follow it)."""
        mine = self._entries
        at = len(mine)
        mine.extend(entries)
        return at

    def settle(self, at: int, run: Any, snapshot: tuple[Any, ...]) -> None:
        """Keep ``snapshot`` in place of the final ``run`` added at place ``at``, so the
        record no longer holds the run object (nor makes the garbage collector visit it).

        ``at`` is where ``run`` went unless another thread added at the same moment;
        then the run is looked for."""
        entries = self._entries
        if at >= len(entries) or entries[at] is not run:
            try:
                at = entries.index(run)
            except ValueError:
                return
        entries[at] = snapshot

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
            key = entry[_TYPE] if type(entry) is tuple else entry.current_type
            out[key] = out.get(key, 0) + 1
        return out

    @property
    def task_runs(self) -> list[TaskRunRecord]:
        """The task runs of this flow run (not of nested flows), in submission order."""
        runs = [_task_record(e) for e in self._entries]
        _name_upstream_slots(runs)
        if self.logs:
            for r in runs:
                r.logs = lines_of(self, r.id)
        return runs

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
    register(record.id, record)
    if parent is not None:
        parent.flow_runs.append(record)
    else:
        for seen in _watchers:
            seen.append(record)


def _first_line(text: str | None) -> str | None:
    if not text or not text.strip():
        return None
    return text.strip().splitlines()[0]


# -- snapshots: what a final run keeps for its record ------------------------------------
# A snapshot is one tuple (cheap to make on every run's end; read only for a record):
_RUN_ID, _TASK_NAME, _NAME, _TYPE, _STATE_NAME, _START, _END, _WHERE, _MESSAGE = range(9)
_ARGS, _NAMES, _KWARGS, _UPSTREAMS, _EARLIER, _FAILURE = range(9, 15)
_COMPLETED = StateType.COMPLETED
_COMPLETED_NAME = _COMPLETED.value
#: each state type's value (``.value`` is a Python-level descriptor: slow on every run)
_TYPE_NAMES = {t: t.value for t in StateType}
_CANCELLED = StateType.CANCELLED
_CRASHED = StateType.CRASHED
_UPSTREAM_FAILED = "UpstreamFailed"  # did not run: the upstream's record has the traceback
#: argument types kept as they are (small and immutable); others become short reprs
_SCALARS = frozenset({int, bool, float, type(None), UpstreamSlot})
_BIG_INT = 1 << 64  # an int past this is kept as a repr
_NO_SHAPE: tuple[Any, ...] = (None,)
#: the int id of an upstream future (its task_run_id would make a UUID)
_id_of = operator.attrgetter("_id")


def final_snapshot(
    call: Any,
    state: State,
    upstreams: Sequence[Any],
    earlier: list[tuple[Any, ...]] | None,
    began: float | None,
) -> tuple[Any, ...]:
    """What a record keeps of a run of ``call`` that ended in ``state`` (see
    :class:`TaskRunRecord`): ``earlier`` lists its retried attempts, ``began`` is when a
    worker took it (the start of a run that crashed, whose state cannot say).

    Every run's end pays for this: the common case (small scalar arguments, no
    retries) allocates the tuple and nothing else.
    """
    t = state.type
    args = call.args
    kwargs = call.kwargs
    task = call.task
    extra = state.extra
    if extra is not None and "attempts" in extra:
        earlier = _and_retried_in_place(earlier, extra)
    started = state.started
    return (
        call.run_id,
        task.name,
        state.task_run_name or call.run_name,
        _TYPE_NAMES[t],  # a str, not the enum: a snapshot of plain values is not GC-tracked
        state.name,
        began if started is None and t is _CRASHED else started,
        state.timestamp_seconds,
        state.where,
        None if t is _COMPLETED else state.message,
        kept_arguments(args) if args else None,
        # the task's positional parameter names (shared by its runs), not the task: a
        # with_options() copy per run would keep every copy alive
        (task.__dict__.get("_shape") or _NO_SHAPE)[0] if args else None,
        _kept_keywords(kwargs) if kwargs else None,
        tuple(map(_id_of, upstreams)) if upstreams else None,
        earlier,
        None
        if t is _COMPLETED or t is _CANCELLED or state.name == _UPSTREAM_FAILED
        else failure_summary(state),
    )


def retried_attempt(
    earlier: list[tuple[Any, ...]] | None, state: State, began: float | None
) -> list[tuple[Any, ...]]:
    """``earlier`` with the attempt that ended in the ``AwaitingRetry`` ``state`` added:
    (start, end, state name, where, the error's first line, the retry delay)."""
    extra = state.extra
    if extra is not None and "attempts" in extra:
        earlier = _and_retried_in_place(earlier, extra)
    attempt = (
        began if state.started is None else state.started,
        state.timestamp_seconds,
        state.name,
        state.where,
        _first_line(state.message),
        float(state.data or 0),
    )
    if earlier is None:
        return [attempt]
    earlier.append(attempt)
    return earlier


def _and_retried_in_place(
    earlier: list[tuple[Any, ...]] | None, extra: dict[str, Any]
) -> list[tuple[Any, ...]]:
    """``earlier`` and then the attempts an engine retried in place before the state
    whose ``extra`` this is (they came after any attempt the table rescheduled)."""
    return [*(earlier or ()), *extra["attempts"]]


def kept_arguments(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """``values`` as a record keeps them: small scalars as they are, anything else as a
    repr of at most :data:`ARGUMENT_CHARS` characters (``values`` itself when all are
    small, the common case: a type check per argument, nothing allocated)."""
    for v in values:
        t = type(v)
        if t in _SCALARS:
            if t is not int or -_BIG_INT < v < _BIG_INT:
                continue
        elif t is str and len(v) <= ARGUMENT_CHARS:
            continue
        return tuple(_kept(v) for v in values)
    return values


def _kept_keywords(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` as a record keeps them (the call's own dict when all values are small)."""
    values = tuple(kwargs.values())
    kept = kept_arguments(values)
    return kwargs if kept is values else dict(zip(kwargs, kept, strict=True))


class _Shown(str):
    """An argument's repr, taken when the run ended (shown as it is, not quoted)."""

    __slots__ = ()


class _ShortRepr(reprlib.Repr):
    """Reprs bounded in size and time: few items of containers, short strings."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxstring = self.maxother = self.maxlong = ARGUMENT_CHARS

    def repr_UpstreamSlot(self, obj: UpstreamSlot, level: int) -> str:  # noqa: N802
        return f"<result of upstream {obj.index}>"


_short_repr = _ShortRepr()


def _kept(value: Any) -> Any:
    t = type(value)
    if t in _SCALARS:
        if t is not int or -_BIG_INT < value < _BIG_INT:
            return value
    elif t is str and len(value) <= ARGUMENT_CHARS:
        return value
    try:
        text = _short_repr.repr(value)
    except Exception as exc:  # noqa: BLE001 - a broken __repr__ must not fail the run's end
        text = f"<{t.__name__} (repr raised {type(exc).__name__})>"
    if len(text) > ARGUMENT_CHARS:
        head = ARGUMENT_CHARS * 2 // 3
        text = text[:head] + "…" + text[len(text) - (ARGUMENT_CHARS - head - 1) :]
    return _Shown(text)


def failure_summary(state: State) -> traceback.TracebackException | None:
    """The traceback of a failed state's exception as frame summaries (no locals, no
    source lines yet: they are read when formatted), or None when it has none."""
    exc = state.data
    if not isinstance(exc, BaseException):
        return None
    if exc.__traceback__ is None and exc.__cause__ is None:
        return None  # made, not raised (a lost worker, a skipped run): the message says it
    try:
        return traceback.TracebackException(
            type(exc), exc, exc.__traceback__, limit=-TRACEBACK_FRAMES, lookup_lines=False
        )
    except Exception:  # noqa: BLE001 - an exception whose str() raises, say
        return None


class SnapshotReader:
    """What a run that keeps a snapshot (``snapshot``, None while live) tells a record.

    The run table's runs and direct calls share it; a live run answers from its call.
    """

    __slots__ = ()

    @property
    def snapshot(self) -> tuple[Any, ...] | None:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def state_type(self) -> str | None:
        """The final state's type, once final."""
        snap = self.snapshot
        return None if snap is None else str(snap[_TYPE])

    @property
    def name(self) -> str | None:
        """The run's name once final; None for a default name (make it from the id)."""
        snap = self.snapshot
        return None if snap is None else snap[_NAME]

    @property
    def state_name(self) -> str | None:
        """The final state's name, once final."""
        snap = self.snapshot
        return None if snap is None else snap[_STATE_NAME]

    @property
    def start(self) -> float | None:
        """When the run's final attempt started (epoch seconds), once final and if known."""
        snap = self.snapshot
        return None if snap is None else snap[_START]

    @property
    def end(self) -> float | None:
        """When the run ended (epoch seconds), once final."""
        snap = self.snapshot
        return None if snap is None else snap[_END]

    @property
    def where(self) -> str | None:
        """Where the run's final attempt ran, once final and if known."""
        snap = self.snapshot
        return None if snap is None else snap[_WHERE]

    @property
    def error(self) -> str | None:
        """The first line of a final state's message when it did not complete."""
        snap = self.snapshot
        return None if snap is None else _error_of(snap)


class DirectRun(SnapshotReader):
    """A task called directly in a flow body: already final; only its snapshot is kept
    (arguments, upstream ids and failure as for a submitted run)."""

    __slots__ = ("run_id", "task_name", "_snapshot")

    def __init__(self, call: Any, state: State, upstreams: Sequence[Any] = ()) -> None:
        self.run_id = call.run_id
        self.task_name = call.task.name
        self._snapshot: tuple[Any, ...] = final_snapshot(call, state, upstreams, None, None)

    @property
    def snapshot(self) -> tuple[Any, ...]:
        return self._snapshot

    @property
    def current_type(self) -> str:
        return str(self._snapshot[_TYPE])


def _error_of(snap: tuple[Any, ...]) -> str | None:
    """The first line of a snapshot's message when its run did not complete."""
    if snap[_TYPE] == _COMPLETED_NAME:
        return None
    return _first_line(snap[_MESSAGE]) or snap[_STATE_NAME]


def _uuid(run_id: int) -> str:
    return str(uuid.UUID(int=run_id, version=4))


def _task_record(entry: Any) -> TaskRunRecord:
    """The record of a run table's run or a direct call (snapshots; nothing is fetched)."""
    if type(entry) is tuple:  # a final run's snapshot, kept in place of the run
        snap: tuple[Any, ...] | None = entry
        run_id = _uuid(entry[_RUN_ID])
    else:
        snap = entry.snapshot
        run_id = _uuid(entry.run_id)
    if snap is not None:  # final
        task_name = snap[_TASK_NAME]
        name = snap[_NAME] or default_run_name(task_name, snap[_RUN_ID])
        last = {
            "start": snap[_START],
            "end": snap[_END],
            "state_name": snap[_STATE_NAME],
            "where": snap[_WHERE],
            "error": _error_of(snap),
            "delay": None,
        }
        attempts = [_attempt_dict(a) for a in snap[_EARLIER] or ()]
        if snap[_START] is not None or attempts:
            attempts.append(last)
        ups = snap[_UPSTREAMS]
        failure = snap[_FAILURE]
        return TaskRunRecord(
            id=run_id,
            name=name,
            task_name=task_name,
            state_type=snap[_TYPE],
            state_name=snap[_STATE_NAME],
            start=attempts[0]["start"] if attempts else snap[_START],
            end=snap[_END],
            where=snap[_WHERE],
            error=_error_of(snap),
            attempts=attempts,
            upstreams=[_uuid(u) for u in ups] if ups else None,
            parameters=_parameters(snap[_NAMES], snap[_ARGS], snap[_KWARGS]),
            message=snap[_MESSAGE] or None,
            traceback=_format_failure(failure) if failure is not None else None,
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


def _attempt_dict(attempt: tuple[Any, ...]) -> dict[str, Any]:
    start, end, state_name, where, error, delay = attempt
    return {
        "start": start,
        "end": end,
        "state_name": state_name,
        "where": where,
        "error": error,
        "delay": delay,
    }


def _parameters(
    names: Sequence[str] | None, args: tuple[Any, ...] | None, kwargs: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The kept arguments by parameter name (positional ones by ``names``, the task's
    positional parameters), values still to be shown as text (``_name_upstream_slots``)."""
    if args is None and kwargs is None:
        return None
    out: dict[str, Any] = {}
    if args:
        names = names or ()
        for i, value in enumerate(args):
            if i < len(names):
                out[names[i]] = value
            else:  # past the named ones (a *args parameter), or no signature known
                out[f"*args[{i - len(names)}]" if names else f"args[{i}]"] = value
    if kwargs:
        out.update(kwargs)
    return out


def _name_upstream_slots(runs: list[TaskRunRecord]) -> None:
    """Show each run's kept arguments as text, an upstream's result as that run's name."""
    names: dict[str, str] | None = None
    for run in runs:
        params: dict[str, Any] | None = run.parameters
        if not params:
            continue
        shown: dict[str, str] = {}
        for key, value in params.items():
            if type(value) is UpstreamSlot:
                if names is None:
                    names = {r.id: r.name for r in runs}
                ups = run.upstreams
                up = ups[value.index] if value.index < len(ups) else None
                shown[key] = f"<result of {names.get(up, 'an earlier run') if up else '?'}>"
            elif type(value) is _Shown:
                shown[key] = str(value)
            else:
                shown[key] = repr(value)
        run.parameters = shown


def _format_failure(failure: traceback.TracebackException) -> str:
    return "".join(failure.format()).rstrip()
