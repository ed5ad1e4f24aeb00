"""States of task and flow runs: what happened, when, and the result or the error.

A State is immutable once made.  Final states (COMPLETED, FAILED, CRASHED,
CANCELLED) carry the return value or the exception in ``data``.  States travel
between processes: a failed state pickles its exception together with the
formatted traceback and the ``__cause__`` chain, and the receiving side attaches
that traceback as a :class:`RemoteTraceback` cause so the user sees the line of
the task that raised.
"""

from __future__ import annotations

import enum
import time
from typing import TYPE_CHECKING, Any

from braid import errors

if TYPE_CHECKING:
    import datetime
    from collections.abc import Callable
    from typing import TypeAlias

    #: an exception, its formatted traceback (or None) and its packed ``__cause__``
    _PackedException: TypeAlias = "tuple[BaseException, str | None, _PackedException | None]"

__all__ = [
    "DeferredState",
    "RemoteTraceback",
    "State",
    "StateType",
    "Cancelled",
    "Completed",
    "Crashed",
    "Failed",
    "Pending",
    "Running",
    "TimedOut",
    "UpstreamFailedState",
]


class StateType(str, enum.Enum):
    """The kind of a state; the last four are final."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CRASHED = "CRASHED"
    CANCELLED = "CANCELLED"

    # the hash of the value, in C: equal to a plain string's as equality already is, and
    # no Python call per set or dict look-up (Enum's own __hash__ is Python code)
    __hash__ = str.__hash__


_FINAL = frozenset({StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED})
_time = time.time


class RemoteTraceback(Exception):
    """The formatted traceback of an exception raised in another process.

    Attached as ``__cause__`` of an exception re-raised after crossing a process
    boundary; its string is the remote traceback, file, line and source included.
    """

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


def _pack_exception(exc: BaseException, depth: int = 0) -> _PackedException:
    """Reduce an exception to picklable parts that keep its traceback and cause."""
    tb = exc.__traceback__
    if tb is not None:
        import traceback

        text = "".join(traceback.format_exception(type(exc), exc, tb, chain=False))
        text = '\n"""\n' + text + '"""'
    elif isinstance(exc.__cause__, RemoteTraceback):
        text = exc.__cause__.tb
    else:
        text = None
    cause = exc.__cause__
    packed_cause = None
    if cause is not None and not isinstance(cause, RemoteTraceback) and depth < 8:
        packed_cause = _pack_exception(cause, depth + 1)
    return (_rebuildable(exc), text, packed_cause)


def _rebuildable(exc: BaseException) -> BaseException:
    """``exc`` if it survives a pickle round trip, else a RemoteError standing in for it.

    An exception whose ``__init__`` does not accept its own ``args`` pickles fine but
    cannot be rebuilt on the other side; the receiver would fail, not the sender.  This
    runs only when a failed state is pickled, so the happy path pays nothing.
    """
    import cloudpickle

    try:
        cloudpickle.loads(cloudpickle.dumps(exc))
    except Exception as why:  # noqa: BLE001 - any failure to rebuild
        # its __init__ wants other arguments than its args: rebuild it without calling
        # __init__ (its class, args and attributes), as long as that round-trips
        by_state = _ExceptionByState(exc)
        try:
            back = cloudpickle.loads(cloudpickle.dumps(by_state))
        except Exception:  # noqa: BLE001 - then a stand-in says what it was
            back = None
        if isinstance(back, type(exc)):
            return by_state  # type: ignore[return-value]  # pickles as the exception
        stand_in = errors.RemoteError(
            f"{type(exc).__module__}.{type(exc).__qualname__}: {exc} (the exception could not "
            f"be rebuilt here: {type(why).__name__}: {why})"
        )
        stand_in.original_type = f"{type(exc).__module__}.{type(exc).__qualname__}"
        return stand_in
    return exc


class _ExceptionByState:
    """Pickles as the exception it holds, rebuilt without calling its ``__init__``."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __reduce__(self) -> tuple[Any, ...]:
        exc = self.exc
        return (_exception_from_state, (type(exc), exc.args, dict(vars(exc))))


def _exception_from_state(
    cls: type[BaseException], args: tuple[Any, ...], attrs: dict[str, Any]
) -> BaseException:
    exc = cls.__new__(cls)
    exc.args = args
    vars(exc).update(attrs)
    return exc


def _unpack_exception(packed: _PackedException) -> BaseException:
    exc, text, packed_cause = packed
    if packed_cause is not None:
        cause = _unpack_exception(packed_cause)
        if text is not None:
            # the remote traceback hangs off the innermost cause of the chain we rebuild
            exc.__cause__ = cause
            # typeshed declares __notes__ from 3.11 on; on 3.10 it is a plain attribute
            exc.__notes__ = [  # type: ignore[attr-defined,unused-ignore]
                *getattr(exc, "__notes__", []),
                f"Remote traceback:{text}",
            ]
        else:
            exc.__cause__ = cause
    elif text is not None:
        exc.__cause__ = RemoteTraceback(text)
    return exc


def _rebuild_state(
    type_: StateType,
    name: str,
    message: str,
    ts: float,
    data: Any,
    packed_exc: _PackedException | None,
    task_run_name: str | None,
    extra: dict[str, Any] | None,
    started: float | None = None,
    where: str | None = None,
) -> State:
    if packed_exc is not None:
        data = _unpack_exception(packed_exc)
    state = State(type_, name, message, data, ts)
    state.task_run_name = task_run_name
    state.extra = extra
    state.started = started
    state.where = where
    return state


class State:
    """The state of a task or flow run: a type, a name, a message, a timestamp and data.

    ``data`` holds the return value of a COMPLETED run and the exception of any other
    final run.  ``result()`` returns the value or raises the exception.
    """

    __slots__ = (
        "type",
        "name",
        "message",
        "data",
        "timestamp_seconds",
        "task_run_name",
        "extra",
        "started",
        "where",
    )

    def __init__(
        self,
        type: StateType,
        name: str | None = None,
        message: str = "",
        data: Any = None,
        timestamp: float | None = None,
    ) -> None:
        self.type = type
        self.name = name if name is not None else type.value.title()
        self.message = message
        self.data = data
        #: when the run entered this state, in seconds since the epoch
        self.timestamp_seconds: float = _time() if timestamp is None else timestamp
        #: the rendered name of the task run, set by the engine when it ran the task
        self.task_run_name: str | None = None
        #: small metadata the runner attached (log records, ...); or None
        self.extra: dict[str, Any] | None = None
        #: for a final task run state: when the run started (epoch seconds), or None
        self.started: float | None = None
        #: for a final task run state: where it ran (process and thread, worker, node)
        self.where: str | None = None

    @property
    def record(self) -> Any:
        """For a flow run's final state: its :class:`~braid.core.records.FlowRunRecord`."""
        return self.extra.get("record") if self.extra else None

    # -- when ---------------------------------------------------------------------
    @property
    def timestamp(self) -> datetime.datetime:
        """When the run entered this state, as an aware UTC datetime."""
        import datetime

        return datetime.datetime.fromtimestamp(self.timestamp_seconds, datetime.timezone.utc)

    def copy(self, **changes: Any) -> State:
        """A copy of this state with some fields replaced (``name=``, ``message=``, ...)."""
        new = State.__new__(State)
        for slot in State.__slots__:
            setattr(new, slot, changes.pop(slot, getattr(self, slot)))
        if changes:
            raise TypeError(f"State has no field(s) {sorted(changes)}")
        return new

    # -- predicates ---------------------------------------------------------------
    def is_pending(self) -> bool:
        return self.type is StateType.PENDING

    def is_running(self) -> bool:
        return self.type is StateType.RUNNING

    def is_completed(self) -> bool:
        return self.type is StateType.COMPLETED

    def is_failed(self) -> bool:
        return self.type is StateType.FAILED

    def is_crashed(self) -> bool:
        return self.type is StateType.CRASHED

    def is_cancelled(self) -> bool:
        return self.type is StateType.CANCELLED

    def is_final(self) -> bool:
        return self.type in _FINAL

    # -- result -------------------------------------------------------------------
    def result(self, raise_on_failure: bool = True) -> Any:
        """Return the run's value; for a failed, crashed or cancelled run raise its error.

        With ``raise_on_failure=False`` the exception is returned instead of raised.
        A state that is not final has no result: ``ValueError``.
        """
        t = self.type
        if t is StateType.COMPLETED:
            return self.data
        if t not in _FINAL:
            raise ValueError(f"a {self.name} state has no result yet; wait for the run first")
        exc = self.data
        if not isinstance(exc, BaseException):
            text = self.message or f"the run ended {self.name}"
            exc = errors.RunFailed(text) if t is StateType.FAILED else errors.Crash(text)
        if raise_on_failure:
            raise exc
        return exc

    def __repr__(self) -> str:
        msg = f", message={self.message!r}" if self.message else ""
        return f"{self.name}({self.type.value}{msg})"

    def __reduce__(self) -> tuple[Any, ...]:
        data, packed = self.data, None
        if isinstance(data, BaseException):
            data, packed = None, _pack_exception(self.data)
        return (
            _rebuild_state,
            (
                self.type,
                self.name,
                self.message,
                self.timestamp_seconds,
                data,
                packed,
                self.task_run_name,
                self.extra,
                self.started,
                self.where,
            ),
        )


_DATA = State.__dict__["data"]  # the slot descriptor a State keeps its data in


class DeferredState(State):
    """A final state whose full form (the result, for a COMPLETED run) stays remote until read.

    Everything but ``data`` comes from a small header the backend sent; reading
    ``data`` or ``result()``, or pickling the state, calls ``fetch()`` once for the full
    State.  If fetching fails (the node holding it is gone, its class is not
    importable here), ``fetch`` returns a state saying so and ``result()`` raises that.
    """

    __slots__ = ("_fetch", "_fetched")
    _fetch: Callable[[], State]
    _fetched: State | None

    @classmethod
    def wrap(cls, light: State, fetch: Callable[[], State]) -> DeferredState:
        """A deferred copy of ``light`` (a header: no data) whose full state ``fetch()`` gives."""
        state = cls(light.type, light.name, light.message, None, light.timestamp_seconds)
        state.task_run_name = light.task_run_name
        state.extra = light.extra
        state.started = light.started
        state.where = light.where
        state._fetch = fetch
        state._fetched = None
        return state

    def prefetched(self, full: State) -> None:
        """Take the full State fetched by someone else (a bulk fetch) instead of fetching."""
        if self._fetched is None:
            if full.type is self.type:
                _DATA.__set__(self, full.data)
            self._fetched = full

    def fetched(self) -> bool:
        """Whether the full State has been fetched already."""
        return self._fetched is not None

    def full(self) -> State:
        """The full State, fetched on first use."""
        fetched = self._fetched
        if fetched is None:
            fetched = self._fetch()
            if fetched.type is self.type:
                _DATA.__set__(self, fetched.data)
            self._fetched = fetched
        return fetched

    @property
    def data(self) -> Any:
        fetched = self.full()
        if fetched.type is not self.type:
            raise fetched.result(raise_on_failure=False)
        return _DATA.__get__(self, State)

    @data.setter
    def data(self, value: Any) -> None:
        _DATA.__set__(self, value)

    def result(self, raise_on_failure: bool = True) -> Any:
        fetched = self.full()
        if fetched.type is not self.type:
            return fetched.result(raise_on_failure)
        return State.result(self, raise_on_failure)

    def __reduce__(self) -> tuple[Any, ...]:
        fetched = self.full()
        return super().__reduce__() if fetched.type is self.type else fetched.__reduce__()


# -- constructors -----------------------------------------------------------------
# Each takes Prefect's keywords (``message=``, ``name=``, ``data=``); braid's own code
# passes the exception first, positionally.
def Pending(name: str = "Pending", message: str = "", *, data: Any = None) -> State:
    """A PENDING state (``name=`` for a custom name)."""
    return State(StateType.PENDING, name, message, data)


def Running(message: str = "", *, name: str = "Running", data: Any = None) -> State:
    """A RUNNING state."""
    return State(StateType.RUNNING, name, message, data)


def Completed(data: Any = None, message: str = "", *, name: str = "Completed") -> State:
    """A COMPLETED state whose result is ``data``."""
    return State(StateType.COMPLETED, name, message, data)


def Failed(
    exc: BaseException | str | None = None,
    message: str | None = None,
    name: str = "Failed",
    *,
    data: Any = None,
) -> State:
    """A FAILED state: its result raises ``exc`` (or ``data``, if an exception).

    Without an exception, ``result()`` raises :class:`braid.errors.RunFailed` carrying
    ``message`` (``Failed(message="bad input")``, as a task may return to fail itself).
    """
    return _not_completed(StateType.FAILED, exc, message, name, data)


def Crashed(
    exc: BaseException | str | None = None,
    message: str | None = None,
    name: str = "Crashed",
    *,
    data: Any = None,
) -> State:
    """A CRASHED state (the run was stopped by something outside its code)."""
    return _not_completed(StateType.CRASHED, exc, message, name, data)


def Cancelled(
    message: str = "cancelled before it started", *, name: str = "Cancelled", data: Any = None
) -> State:
    """A CANCELLED state; its result raises :class:`braid.errors.TaskCancelled`."""
    exc = data if isinstance(data, BaseException) else errors.TaskCancelled(message)
    return State(StateType.CANCELLED, name, message, exc)


def _not_completed(
    type_: StateType, exc: BaseException | str | None, message: str | None, name: str, data: Any
) -> State:
    if isinstance(exc, str):  # Failed("text"): the text is the message
        exc, message = None, exc if message is None else message
    if exc is None and isinstance(data, BaseException):
        exc = data
    if exc is None:
        text = message or f"the run ended {name}"
        what = errors.RunFailed if type_ is StateType.FAILED else errors.Crash
        return State(type_, name, text, what(text) if data is None else data)
    if message is None:
        message = _describe(exc)
    return State(type_, name, message, exc)


def TimedOut(message: str, exc: BaseException | None = None) -> State:
    return State(StateType.FAILED, "TimedOut", message, exc or errors.TaskTimeout(message))


def UpstreamFailedState(upstream: State, what: str) -> State:
    exc = errors.UpstreamFailed(f"{what} did not run: {upstream.message or upstream.name}")
    cause = upstream.data if isinstance(upstream.data, BaseException) else None
    exc.__cause__ = cause
    return State(StateType.FAILED, "UpstreamFailed", str(exc), exc)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
