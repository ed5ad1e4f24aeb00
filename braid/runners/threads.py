"""ThreadPoolTaskRunner: task runs on a bounded pool of threads, dependency-aware.

How a call travels::

    core: submit ──(upstreams not final: wait in callbacks, no thread)──┐
      │                                                                 │ last upstream done
      v                                                                 v
    dispatch: SimpleQueue.put(run) ── spawn a thread if none is idle and fewer than
      │                                max_workers threads are running tasks
      v
    worker thread: q.get() -> take a slot -> run.begin() -> run.execute() -> run.finish
                   (a task that blocks on a future gives its slot back while it
                    waits, so nested submission never deadlocks, even with one
                    worker; the slot is taken back before it goes on)

``max_workers`` is a hard cap on task runs executing at once.  Threads blocked in
``.result()``/``wait()`` do not count, so the pool may hold more threads than
``max_workers`` while tasks wait on other tasks.  Threads are daemons: an
interrupted interpreter never hangs on them.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Any

from braid import errors
from braid.core.contract import Capabilities
from braid.core.engine import close_thread_loop, run_task
from braid.core.futures import worker_slot
from braid.core.runner import Run, TaskRunner, set_default_runner_class
from braid.core.states import State

__all__ = ["ThreadPoolTaskRunner"]


class ThreadPoolTaskRunner(TaskRunner):
    """Runs tasks on up to ``max_workers`` threads of this process (default as
    ``concurrent.futures.ThreadPoolExecutor``: ``min(32, cpu_count + 4)``).

    ``check_pickling=True`` round-trips every call, upstream result and return value
    through cloudpickle, as a process, Dask or Ray runner would: a flow tested this way
    on threads is known to serialize (unpicklable input raises ``SerializationError``
    at submit).  It costs a pickle per call, so it is off by default.
    """

    capabilities = Capabilities(reschedules_retries=True)

    def __init__(self, max_workers: int | None = None, check_pickling: bool = False) -> None:
        if max_workers is not None and (
            not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1
        ):
            raise errors.ConfigurationError(
                f"ThreadPoolTaskRunner: max_workers must be an int >= 1 or None, "
                f"got {max_workers!r}"
            )
        self._max_workers_arg = max_workers
        self.max_workers = max_workers or min(32, (os.cpu_count() or 1) + 4)
        self.check_pickling = bool(check_pickling)
        if self.check_pickling:
            self.capabilities = Capabilities(reschedules_retries=True, requires_pickling=True)

    def duplicate(self) -> ThreadPoolTaskRunner:
        return type(self)(max_workers=self._max_workers_arg, check_pickling=self.check_pickling)

    def __repr__(self) -> str:
        extra = ", check_pickling=True" if self.check_pickling else ""
        return f"ThreadPoolTaskRunner(max_workers={self.max_workers}{extra})"

    # -- pool -------------------------------------------------------------------------
    def start(self) -> None:
        """Make the (empty) pool: threads start as runs arrive."""
        self._lock = threading.Lock()
        self._q: queue.SimpleQueue[Run | None] = queue.SimpleQueue()
        self._slot_free = threading.Condition(self._lock)
        self._threads: list[threading.Thread] = []
        self._busy = 0  # threads between taking a run and finishing it
        self._blocked = 0  # busy threads waiting on a future (slot given back)
        self._active = 0  # slots in use: runs executing now (<= max_workers)
        self._slot_waiters = 0
        self._hook = _SlotHook(self._release_slot, self._reacquire_slot)

    def _spawn_if_needed(self) -> None:
        # called with self._lock held
        n = len(self._threads)
        if self._q.qsize() > n - self._busy and n - self._blocked < self.max_workers:
            t = threading.Thread(target=self._work, daemon=True, name=f"braid-worker-{n}")
            self._threads.append(t)
            t.start()

    def dispatch(self, run: Run) -> None:
        """Queue ``run`` for a pool thread (or hand it to the thread settling its upstream)."""
        h = _handoff
        if h.__dict__.get("runner") is self and h.next is None:
            # a worker settling a run made this one runnable: it runs it next itself,
            # sparing a queue round trip and a thread switch (chains stay on one thread)
            h.next = run
            return
        self._enqueue(run)

    def _enqueue(self, run: Run) -> None:
        self._q.put(run)
        # every thread there is and none blocked: none to start, and no lock to take
        # (pool threads take it twice per run: a lock per put made them convoy on it)
        if len(self._threads) - self._blocked < self.max_workers:
            with self._lock:
                self._spawn_if_needed()

    def _take_slot(self) -> None:
        # called with self._lock held
        while self._active >= self.max_workers:
            self._slot_waiters += 1
            self._slot_free.wait()
            self._slot_waiters -= 1
        self._active += 1

    def _work(self) -> None:
        worker_slot.hook = self._hook
        q, lock, h = self._q, self._lock, _handoff
        h.next = None
        run: Run | None = None
        try:
            while True:
                if run is None:
                    run = q.get()
                    if run is None:
                        return
                    with lock:
                        self._busy += 1
                        if self._active >= self.max_workers:
                            self._take_slot()
                        else:
                            self._active += 1
                # here this thread is busy and holds a slot, for `run`
                follow: Run | None = None
                try:
                    if run.begin():
                        state = (
                            run.execute(self) if run.payload is None else self._execute_pickled(run)
                        )
                        h.runner = self
                        try:
                            run.finish(state)
                        finally:
                            h.runner = None
                            follow, h.next = h.next, None
                finally:
                    stop = False
                    if follow is None and not self._slot_waiters:
                        # a run waiting in the queue: take it now, keeping the slot, with
                        # no lock (threads that count each run under it convoy on it)
                        try:
                            follow = q.get_nowait()
                        except queue.Empty:
                            pass
                        else:
                            stop = follow is None  # stop()'s word for this thread
                    # go on with `follow`, keeping the slot (no lock needed), unless a
                    # resumed task is waiting for a slot: then it gets this one
                    keep = follow is not None and not self._slot_waiters
                    if not keep:
                        with lock:
                            self._busy -= 1
                            self._active -= 1
                            if self._slot_waiters:
                                self._slot_free.notify()
                    if follow is not None and not keep:
                        self._enqueue(follow)
                if stop:
                    return
                run = follow if keep else None
        finally:
            worker_slot.hook = None
            close_thread_loop()

    def _execute_pickled(self, run: Run) -> State:
        """check_pickling: the call and its upstream states travel as to another process."""
        from braid.core.serialization import dumps, dumps_state, loads

        assert run.payload is not None
        try:
            call = loads(run.payload)
            states = run.upstream_states()
            states = [loads(dumps(s)) for s in states] if states else None
            state = run_task(call, states, self, run.reschedule_retries, None)
            return loads(dumps_state(state, call.task.name))  # type: ignore[no-any-return]
        except Exception as exc:  # noqa: BLE001 - an upstream value that will not pickle
            return _unpicklable(run, exc)

    def _release_slot(self) -> None:
        parked = _handoff.__dict__.get("next")
        if parked is not None:
            # this thread is about to block (a done-callback waiting, say): the run it
            # was to take next must not wait for it
            _handoff.next = None
            self._enqueue(parked)
        with self._lock:
            self._active -= 1
            self._blocked += 1
            if self._slot_waiters:
                self._slot_free.notify()
            self._spawn_if_needed()

    def _reacquire_slot(self) -> None:
        with self._lock:
            self._blocked -= 1
            self._take_slot()

    def stop(self, abandon: bool) -> None:
        """Let the pool threads exit; join them unless abandoning (they may be stuck)."""
        threads = self._threads
        for _ in threads:
            self._q.put(None)
        if not abandon:
            current = threading.current_thread()
            for t in threads:
                if t is not current:
                    t.join()


#: per worker thread: the runner whose run it is settling, and the run that settling
#: made runnable (see ``_dispatch``)
_handoff = threading.local()


class _SlotHook:
    """Lets a worker thread give its slot back while it blocks on a future."""

    __slots__ = ("release", "reacquire")

    def __init__(self, release: Any, reacquire: Any) -> None:
        self.release = release
        self.reacquire = reacquire


def _unpicklable(run: Run, exc: Exception) -> State:
    from braid.core.states import Failed

    name = run.future.task_run_name if run.future is not None else "?"
    err = errors.SerializationError(
        f"task run {name!r}: an upstream result could not be pickled: {exc}"
    )
    err.__cause__ = exc
    return Failed(err)


set_default_runner_class(ThreadPoolTaskRunner)
