"""Futures of task runs, and the helpers that wait on many of them.

A :class:`TaskFuture` is final exactly once: the run table (or a time-out, or an
interrupt) calls ``set_final(state)`` and the first call wins.  Waiting costs one
lock acquire: each future holds a lock, taken at creation and released when the
future finishes, so a waiter blocks in C and wakes without polling.

A thread that runs a task and blocks on a future gives its worker slot back for
as long as it waits (see ``runners/threads.py``), which is why nested submission
never deadlocks a bounded pool.
"""

from __future__ import annotations

import itertools
import math
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from braid import errors
from braid.core.context import default_run_name
from braid.core.states import State, StateType

__all__ = [
    "TaskFuture",
    "FutureList",
    "DoneAndNotDone",
    "WorkerSlot",
    "wait",
    "as_completed",
    "worker_slot",
]

R = TypeVar("R")

_finish_lock = threading.Lock()
_allocate_lock = threading.Lock
_getrandbits = random.getrandbits
_PENDING = State(StateType.PENDING, "Pending", "", None, 0.0)
_RUNNING = State(StateType.RUNNING, "Running", "", None, 0.0)
# a set: a PENDING or RUNNING type is not compared, as a str, with each final one
_FINAL = frozenset((StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED))


class WorkerSlot(Protocol):
    """What a runner sets as ``worker_slot.hook`` in a thread that runs tasks.

    braid calls ``release()`` before a task blocks on a future and ``reacquire()``
    after, so the worker's slot serves other runs meanwhile.  A hook may also have
    ``wait_any(futures, timeout)`` (see below).
    """

    def release(self) -> None:
        """Give the worker's slot away while the thread blocks."""

    def reacquire(self) -> None:
        """Take a slot back before the thread goes on (may wait for one)."""


#: per-thread hook set by the runner a task runs on; absent elsewhere.  A hook has
#: ``release()``/``reacquire()``, which give the worker's slot away while the thread
#: blocks on a future (threads, Dask's secede/rejoin).  It may also have
#: ``wait_any(futures, timeout)``, which blocks until one of ``futures`` is final in a
#: way that frees the backend's resources (Ray's ``ray.wait``); waits on several
#: futures then use it instead.
worker_slot = threading.local()


def _wait_any_hook() -> Any:
    return getattr(getattr(worker_slot, "hook", None), "wait_any", None)


def _blocking_acquire(lock: threading.Lock | None, timeout: float | None) -> bool:
    """Acquire ``lock`` (then release it at once), handing a pool slot back while blocked;
    True at once for None (the run was final when the waiter looked)."""
    if lock is None:
        return True
    if lock.acquire(False):
        lock.release()
        return True
    if timeout is not None and timeout <= 0:
        return False
    slot = getattr(worker_slot, "hook", None)
    if slot is not None:
        slot.release()
    try:
        got = lock.acquire(True, -1 if timeout is None else timeout)
    finally:
        if slot is not None:
            slot.reacquire()
    if got:
        lock.release()
    return got


class TaskFuture(Generic[R]):
    """A handle to one task run: its id, name and state, and a way to wait for its result.

    ``state`` never blocks; ``wait()`` and ``result()`` do.  Futures of every runner
    share this interface, so ``wait()`` and ``as_completed()`` accept them mixed.
    """

    __slots__ = ("_id", "_name", "_state", "_done", "_callbacks", "task", "__weakref__")

    def __init__(
        self, task: Any = None, name: str | None = None, run_id: int | None = None
    ) -> None:
        self._id = _getrandbits(128) if run_id is None else run_id
        self._name = name
        self._state: State = _PENDING
        # the lock waiters block on, made (held) by the first waiter that needs it:
        # most runs end before anyone waits, and need none (56 bytes each)
        self._done: Any = None
        # None, the one callback (a chain's link: no list), or a list of them
        self._callbacks: Any = None
        self.task = task

    # -- identity -----------------------------------------------------------------
    @property
    def task_run_id(self) -> Any:
        """The task run's unique id."""
        import uuid

        return uuid.UUID(int=self._id, version=4)

    @property
    def task_run_name(self) -> str | None:
        """The task run's name: known at submit unless its template needs upstream results."""
        name = self._name
        if name is None and self.task is not None and self.task.task_run_name is None:
            name = self._name = default_run_name(self.task.name, self._id)
        return name

    def set_name(self, name: str) -> None:
        """Set the run's name once the engine rendered it (for runners and the engine)."""
        self._name = name

    # -- state --------------------------------------------------------------------
    @property
    def state(self) -> State:
        """The run's current state; never blocks."""
        return self._state

    def done(self) -> bool:
        """Whether the run is final."""
        return self._state.type in _FINAL

    def _waiters_lock(self) -> Any:
        """The held lock ``set_final`` releases, made now if need be; None once final."""
        with _finish_lock:
            if self._state.type in _FINAL:
                return None
            lock = self._done
            if lock is None:
                lock = self._done = _allocate_lock()
                lock.acquire()
            return lock

    def wait(self, timeout: float | None = None) -> None:
        """Block until the run is final, or until ``timeout`` seconds have passed."""
        if self._state.type not in _FINAL:
            lock = self._waiters_lock()
            if lock is not None:
                _blocking_acquire(lock, timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        """Wait for the run and return its value, or raise its exception.

        ``raise_on_failure=False`` returns the exception instead.  If the run is not
        final after ``timeout`` seconds, raise :class:`braid.errors.WaitTimeout`.
        """
        if self._state.type not in _FINAL and not _blocking_acquire(self._waiters_lock(), timeout):
            raise errors.WaitTimeout(
                f"task run {self._name or self.task_run_id!s} is not final after {timeout} s"
                f" (state {self._state.name})"
            )
        value: R = self._state.result(raise_on_failure)
        return value

    def needs_fetch(self) -> bool:
        """Whether the run is final and its result must still be brought here (never for
        runs whose results are in this process)."""
        return False

    @classmethod
    def prefetch(cls, futures: list[TaskFuture[Any]]) -> None:
        """Bring the results of ``futures`` here in as few round trips as the backend
        allows (they are final and need it); the default has nothing to fetch."""

    def add_done_callback(self, fn: Callable[[TaskFuture[R]], Any]) -> None:
        """Call ``fn(future)`` once the run is final (at once if it already is)."""
        with _finish_lock:
            if self._state.type not in _FINAL:
                callbacks = self._callbacks
                if callbacks is None:
                    self._callbacks = fn
                elif type(callbacks) is list:
                    callbacks.append(fn)
                else:
                    self._callbacks = [callbacks, fn]
                return
        fn(self)

    def remove_done_callback(self, fn: Callable[[TaskFuture[R]], Any]) -> None:
        """Forget ``fn`` if it has not run yet (a waiter that gave up)."""
        with _finish_lock:
            callbacks = self._callbacks
            if type(callbacks) is list:
                try:
                    callbacks.remove(fn)
                except ValueError:
                    pass
            elif callbacks is not None and callbacks == fn:
                self._callbacks = None

    # -- runner side (the run table calls these; see braid.core.runs) ------------------
    def set_running(self) -> None:
        """Mark the run RUNNING (from PENDING, also after an ``AwaitingRetry``)."""
        if self._state.type is StateType.PENDING:
            self._state = _RUNNING

    def set_pending(self, state: State) -> None:
        """Put the run back in a PENDING ``state`` (waiting out a retry delay)."""
        if self._state.type not in _FINAL:
            self._state = state

    def set_final(self, state: State, if_set: Callable[[], Any] | None = None) -> bool:
        """Make ``state`` final unless the future already is; run the callbacks, then wake
        the waiters.  True if this call set the state.

        ``if_set()``, when given, runs under the same lock only if this call sets the
        state (for a runner's bookkeeping that must change together with it).
        """
        with _finish_lock:
            if self._state.type in _FINAL:
                return False
            self._state = state
            if if_set is not None:
                if_set()
            callbacks, self._callbacks = self._callbacks, None
            waiters = self._done
        if self._name is None:
            self._name = state.task_run_name
        # callbacks first: whoever waited on the future sees them done (a callback that
        # waits on this future returns at once, since the state is already final)
        if callbacks is not None:
            for fn in callbacks if type(callbacks) is list else (callbacks,):
                try:
                    fn(self)
                except BaseException:  # a callback's failure must not stop the others
                    import logging

                    logging.getLogger("braid").exception("done callback %r raised", fn)
        if waiters is not None:
            waiters.release()
        return True

    def __repr__(self) -> str:
        return f"<TaskFuture {self._name or ''} {self._state.name}>"


_NO_PREFETCH = TaskFuture.__dict__["prefetch"]


def _class_attr(cls: type, name: str) -> Any:
    """What the first class in ``cls``'s MRO that defines ``name`` holds for it."""
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name]
    return None


class FutureList(list[TaskFuture[R]], Generic[R]):
    """The futures returned by ``Task.map``, in the order of the mapped elements."""

    def wait(self, timeout: float | None = None) -> None:
        """Wait until every future is final (or ``timeout`` seconds have passed)."""
        wait(self, timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[R]:
        """Return every result in order; raise the first failure met in that order.

        Waits for each future in turn, so it raises as soon as the first failed one (in
        list order) is known, without waiting for the rest.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        out: list[R] = []
        # (a classmethod is a new bound method at every look-up: compare what classes hold)
        bulk = bool(self) and _class_attr(type(self[0]), "prefetch") is not _NO_PREFETCH
        for i, f in enumerate(self):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if bulk and f.needs_fetch():
                # a backend that keeps results remote: bring the ready ones in one go
                type(f).prefetch([g for g in self[i:] if g.needs_fetch()])
            out.append(f.result(left, raise_on_failure))
        return out


class DoneAndNotDone(NamedTuple):
    """What :func:`wait` returns: the final futures and the others."""

    done: set[TaskFuture[Any]]
    not_done: set[TaskFuture[Any]]


def wait(futures: Iterable[TaskFuture[Any]], timeout: float | None = None) -> DoneAndNotDone:
    """Wait until every future is final or ``timeout`` seconds passed; return both sets."""
    futures = list(futures)
    pending = [f for f in futures if not f.done()]
    wait_any = _wait_any_hook() if pending else None
    if wait_any is not None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while pending:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            wait_any(pending, left)
            pending = [f for f in pending if not f.done()]
    elif pending:
        counter = itertools.count()
        all_done = threading.Lock()
        all_done.acquire()
        n = len(pending)

        def _one_done(_f: TaskFuture[Any]) -> None:
            if next(counter) == n - 1:
                all_done.release()

        for f in pending:
            f.add_done_callback(_one_done)
        if not _blocking_acquire(all_done, timeout):
            for f in pending:  # timed out: leave no callback behind on long runs
                f.remove_done_callback(_one_done)
    done: set[TaskFuture[Any]]
    not_done: set[TaskFuture[Any]]
    done, not_done = set(), set()
    for f in futures:
        (done if f.done() else not_done).add(f)
    return DoneAndNotDone(done, not_done)


def as_completed(
    futures: Iterable[TaskFuture[Any]], timeout: float | None = None
) -> Iterator[TaskFuture[Any]]:
    """Yield futures as they become final; ``WaitTimeout`` if some are not after ``timeout``."""
    # futures final already are yielded first, in the order they finished
    futures = sorted(dict.fromkeys(futures), key=_finished_at)
    finished: queue.SimpleQueue[TaskFuture[Any]] = queue.SimpleQueue()
    put = finished.put
    for f in futures:
        f.add_done_callback(put)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        for _ in range(len(futures)):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = _queue_get(finished, left, futures)
            except queue.Empty:
                raise errors.WaitTimeout(
                    f"{sum(not f.done() for f in futures)} of {len(futures)} futures not "
                    f"final after {timeout} s"
                ) from None
            yield item
    finally:  # timed out or abandoned by the caller: leave no callback behind
        for f in futures:
            if not f.done():
                f.remove_done_callback(put)


def _finished_at(future: TaskFuture[Any]) -> float:
    # read once: it may turn final meanwhile (``state`` never fetches from a cluster)
    state = future.state
    if state.type not in _FINAL:
        return math.inf
    return state.timestamp_seconds


def _queue_get(
    q: queue.SimpleQueue[TaskFuture[Any]], timeout: float | None, futures: list[TaskFuture[Any]]
) -> TaskFuture[Any]:
    """``q.get(timeout=...)`` that hands a pool slot back (or waits the backend's way)."""
    try:
        return q.get_nowait()
    except queue.Empty:
        if timeout is not None and timeout <= 0:
            raise
    wait_any = _wait_any_hook()
    if wait_any is not None:
        deadline = None if timeout is None else time.monotonic() + timeout
        wait_any([f for f in futures if not f.done()], timeout)
        if deadline is None:
            return q.get()
        # the backend said one is ready; its future's own callback follows shortly
        return q.get(timeout=max(deadline - time.monotonic(), 0.1))
    slot = getattr(worker_slot, "hook", None)
    if slot is not None:
        slot.release()
    try:
        return q.get(timeout=timeout)
    finally:
        if slot is not None:
            slot.reacquire()
