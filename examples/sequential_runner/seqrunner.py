"""SequentialTaskRunner: a third-party braid runner that runs every call inline.

This module lives outside the ``braid`` package on purpose: it is the runner that
``docs/writing-a-runner.md`` walks through, written only against braid's runner
contract, and it passes braid's conformance suite (see ``test_seqrunner.py``).

How a call travels::

    Task.submit(...) -> runner.submit(call, upstreams)
      wait until every upstream future is final (only futures of another runner
        can still be running: this runner's own futures are final when returned)
      future = TaskFuture(...)            future -> RUNNING
      run_task(call, upstream states)     in the submitting thread (or, when that
        |                                 thread is running an event loop, in a
        v                                 helper thread joined at once)
      future._finish(state)               returned already final

The engine (``run_task``) owns every policy: upstream failures, retries (slept in
place, since this runner does not reschedule), time-outs, naming, logging.  A task
that submits tasks hands them back to this runner, so nested submission simply
recurses in the same thread and cannot deadlock.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Sequence

from braid import errors
from braid.core.engine import TaskCall, close_thread_loop, run_task
from braid.core.futures import TaskFuture
from braid.core.states import Cancelled, Crashed, State
from braid.runners.base import Capabilities, TaskRunner

__all__ = ["SequentialTaskRunner"]


class SequentialTaskRunner(TaskRunner):
    """Runs each task call to its end inside ``submit``, one after another.

    ``submit`` returns a future that is already final, so tasks never overlap with
    the code that submitted them.  Useful for debugging (a breakpoint in a task
    stops the flow right there) and as the smallest complete runner.
    """

    # Calls never leave the process, and submit() runs them to the end.
    capabilities = Capabilities(runs_inline=True)

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._running: dict[TaskFuture, None] = {}
        self._stopped_because: str | None = None

    def duplicate(self) -> SequentialTaskRunner:
        """A fresh, unstarted runner (there is no configuration to copy)."""
        return type(self)()

    def _start(self) -> None:
        self._stopped_because = None

    def submit(self, call: TaskCall, upstreams: Sequence[TaskFuture]) -> TaskFuture:
        """Run ``call`` now, once its upstreams are final; return its final future."""
        future = TaskFuture(call.task, call.run_name, call.run_id)
        reason = self._stopped_because
        if reason is not None:  # a thread still submitting after an interrupt or time-out
            future._finish(Cancelled(f"cancelled before it started: {reason}"))
            return future
        if not self._started:
            raise self._not_started()
        for upstream in upstreams:
            upstream.wait()
        with self._lock:
            self._running[future] = None
        future._set_running()
        states = [u.state for u in upstreams]
        on_start = future._set_name if call.run_name is None else None
        state: State | None = None
        try:
            if _loop_running():
                state = _run_in_helper_thread(call, states, self, on_start)
            else:
                state = run_task(call, states, self, False, on_start)
        finally:
            with self._lock:
                del self._running[future]
                if not self._running:
                    self._idle.notify_all()
            if state is None:  # the submitting thread was interrupted mid-run
                state = Crashed(errors.Crash("the submitting thread was interrupted"))
            future._finish(state)
        return future

    def _stop(self, abandon: bool, reason: str) -> None:
        """Drain runs still going in other threads; on an interrupt, crash them instead."""
        with self._lock:
            if abandon:
                self._stopped_because = reason
                running = list(self._running)
            else:
                while self._running:
                    self._idle.wait()
                return
        message = f"stopped while running: {reason}"
        for future in running:
            future._finish(Crashed(errors.Crash(message), message))


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _run_in_helper_thread(call: TaskCall, states: list[State], runner: TaskRunner,
                          on_start: Callable[[str], None] | None) -> State:
    """Run the call in a short-lived thread: the engine cannot start a second event
    loop in a thread whose loop is running (an ``async`` flow's body)."""
    box: list[State] = []
    context = contextvars.copy_context()

    def body() -> None:
        try:
            box.append(context.run(run_task, call, states, runner, False, on_start))
        finally:
            close_thread_loop()

    helper = threading.Thread(target=body, name="seqrunner-off-loop", daemon=True)
    helper.start()
    helper.join()
    if not box:  # the engine itself raised; the thread's traceback was printed
        return Crashed(errors.Crash("braid's engine raised while running the call"))
    return box[0]
