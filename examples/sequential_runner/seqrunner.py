"""SequentialTaskRunner: a third-party braid runner that runs every call inline.

This module lives outside the ``braid`` package on purpose: it is the runner that
``docs/writing-a-runner.md`` walks through, written only against braid's public
runner contract, and it passes braid's conformance suite (see ``test_seqrunner.py``).

How a call travels::

    Task.submit(...) -> core: the run table accepts the call, makes the future and,
                        since this runner declares ``runs_inline``, waits for the
                        upstreams in the submitting thread
      dispatch(run)                       in the submitting thread
        run.begin()                       False: the flow was interrupted, drop it
        run.execute(self)                 the engine (or a helper thread when that
                                          thread runs an event loop, joined at once)
        run.finish(state)                 the future is final when submit returns

The core owns every policy: upstream failures, retries (slept in place, since this
runner does not declare ``reschedules_retries``), time-outs, naming, logging, the
drain and Ctrl-C.  A task that submits tasks hands them back to this runner, so
nested submission simply recurses in the same thread and cannot deadlock.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading

from braid import Capabilities, Run, State, TaskRunner
from braid.core.engine import close_thread_loop

__all__ = ["SequentialTaskRunner"]


class SequentialTaskRunner(TaskRunner):
    """Runs each task call to its end inside ``submit``, one after another.

    ``submit`` returns a future that is already final, so tasks never overlap with
    the code that submitted them.  Useful for debugging (a breakpoint in a task
    stops the flow right there) and as the smallest complete runner.
    """

    capabilities = Capabilities(runs_inline=True)

    def duplicate(self) -> SequentialTaskRunner:
        """A fresh, unstarted runner (there is no configuration to copy)."""
        return type(self)()

    def dispatch(self, run: Run) -> None:
        """Run ``run`` now, in the submitting thread."""
        if not run.begin():
            return
        if _loop_running():
            state = _run_in_helper_thread(run, self)
        else:
            state = run.execute(self)
        run.finish(state)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _run_in_helper_thread(run: Run, runner: TaskRunner) -> State:
    """Run the call in a short-lived thread: the engine cannot start a second event
    loop in a thread whose loop is running (an ``async`` flow's body)."""
    box: list[State] = []
    context = contextvars.copy_context()

    def body() -> None:
        try:
            box.append(context.run(run.execute, runner))
        finally:
            close_thread_loop()  # the engine keeps a loop per thread for async tasks

    helper = threading.Thread(target=body, name="seqrunner-off-loop", daemon=True)
    helper.start()
    helper.join()
    return box[0]
