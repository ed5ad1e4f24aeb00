"""Deadlines: run a call in a helper thread and stop waiting for it when time is up.

Task time-outs (the engine) and flow time-outs (flows) share these.  A synchronous
call runs in a daemon thread; at the deadline the caller stops waiting, and the
helper is sent an asynchronous exception (it stops at its next Python instruction;
a thread blocked in C stays blocked until that call returns).  An awaitable is
cancelled at its deadline.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["LentSlot", "await_with_deadline", "call_before_deadline", "raise_in_thread"]


def call_before_deadline(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    timeout: float,
    name: str,
    prepare: Callable[[], None] | None = None,
) -> tuple[tuple[bool, Any] | None, threading.Thread]:
    """Call ``fn`` in a daemon thread (in a copy of this context) and wait ``timeout`` s.

    Returns ``((True, value) or (False, exception), thread)``, or ``(None, thread)``
    when the deadline passed first; the thread then goes on, and the caller decides
    what to do with it.  ``prepare()`` runs first in the new thread.
    """
    import contextvars

    box: list[tuple[bool, Any]] = []
    done = threading.Lock()
    done.acquire()
    run_ctx = contextvars.copy_context()

    def body() -> None:
        if prepare is not None:
            prepare()
        try:
            box.append((True, run_ctx.run(fn, *args, **kwargs)))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box.append((False, exc))
        finally:
            done.release()

    t = threading.Thread(target=body, name=name, daemon=True)
    t.start()
    if not done.acquire(True, timeout):
        return None, t
    return box[0], t


class LentSlot:
    """The worker's slot hook, lent to a deadline helper thread for one attempt.

    While the attempt runs, the helper's waits give the worker's slot away and take it
    back as usual.  At the deadline the worker takes the loan back (and its slot, if
    the helper had given it away); later calls from the abandoned helper do nothing,
    so it can neither take a second slot nor leave the pool's counts wrong.
    """

    def __init__(self, hook: Any) -> None:
        self._hook = hook
        self._lock = threading.Lock()
        self._released = False
        self._returned = False
        self.busy = False  # inside the pool's own accounting: not a place to interrupt
        if hasattr(hook, "wait_any"):
            self.wait_any = hook.wait_any

    def release(self) -> None:
        with self._lock:
            if self._returned or self._released:
                return
            self._released = self.busy = True
        try:
            self._hook.release()
        finally:
            self.busy = False

    def reacquire(self) -> None:
        with self._lock:
            if self._returned or not self._released:
                return
            self._released = False
            self.busy = True
        try:
            self._hook.reacquire()
        finally:
            self.busy = False

    def take_back(self) -> bool:
        """End the loan; True if the worker must take its slot back."""
        with self._lock:
            self._returned = True
            released, self._released = self._released, False
            return released


async def await_with_deadline(
    coro: Any, timeout: float, on_timeout: Callable[[], BaseException]
) -> Any:
    """Await ``coro``; at ``timeout`` seconds cancel it and raise ``on_timeout()``."""
    import asyncio

    task = asyncio.ensure_future(coro)
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
        try:
            await task
        except BaseException:  # noqa: BLE001 - the task's own end does not matter now
            pass
        raise on_timeout()
    return task.result()


def raise_in_thread(t: threading.Thread, exc_type: type[BaseException]) -> None:
    """Raise ``exc_type`` in thread ``t`` at its next Python instruction (if it runs)."""
    if t.ident is not None and t.is_alive():
        import ctypes

        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(t.ident), ctypes.py_object(exc_type)
        )
