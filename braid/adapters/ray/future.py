"""RayTaskFuture: a braid future backed by a Ray ObjectRef holding a pickled final State.

Life of one future::

    created at submit                     PENDING (ref None while foreign upstreams run)
      runner hands the call to Ray        ref = remote(...)   ref.future().add_done_callback
      Ray says the ref is ready  ─────>   _from_ray(ref, bytes | RayError)   (Ray's thread)
        bytes                             settled: done() is True, callbacks run, the
                                          bytes are kept; the State is unpickled on the
                                          first ``.state`` read and cached (logs replayed)
        a Ray error                       the runner turns it into a State (WorkerLost, ...)
                                          or runs the call again (an upstream's worker died)

``.state`` never blocks: it is PENDING until the ref is ready.  ``wait()`` and
``result()`` block in ``ray.get``, which on a Ray worker hands the task's CPU back
to Ray while it waits, so a task waiting on its children never starves them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError

from braid import errors
from braid.core import logs
from braid.core.futures import TaskFuture
from braid.core.serialization import loads
from braid.core.states import Failed, State

__all__ = ["RayTaskFuture"]

_settle_lock = threading.Lock()
_log = logging.getLogger("braid")


class RayTaskFuture(TaskFuture):
    """A :class:`~braid.core.futures.TaskFuture` whose run is a Ray task.

    Settled exactly once, either with the pickled State the Ray task returned
    (unpickled lazily) or with a State the runner made (crash, cancellation).
    """

    __slots__ = ("_ref", "_payload", "_settled", "_decode_lock", "_on_ray_error", "_on_final")

    def __init__(self, task: Any, name: str | None, run_id: int,
                 on_ray_error: Callable[[RayTaskFuture, RayError], None],
                 on_final: Callable[[RayTaskFuture], None]) -> None:
        super().__init__(task, name, run_id)
        self._ref: Any = None          # the ObjectRef of the current attempt at running it
        self._payload: bytes | None = None
        self._settled = False
        self._decode_lock: threading.Lock | None = None
        self._on_ray_error = on_ray_error
        self._on_final = on_final

    # -- runner side ------------------------------------------------------------------
    def _attach(self, ref: Any) -> None:
        """Follow ``ref``: settle when Ray has its value (callback on Ray's own thread)."""
        self._ref = ref
        ref.future().add_done_callback(lambda cf: self._from_ray(ref, _outcome(cf)))

    def _from_ray(self, ref: Any, outcome: Any) -> None:
        """Take the outcome of ``ref`` (bytes or a Ray error) unless it is stale or late."""
        if ref is not self._ref or self._settled:
            return
        if isinstance(outcome, bytes):
            self._settle(None, outcome)
        else:
            self._on_ray_error(self, outcome)

    def _finish(self, state: State) -> bool:
        return self._settle(state, None)

    def _settle(self, state: State | None, payload: bytes | None) -> bool:
        with _settle_lock:
            if self._settled:
                return False
            self._settled = True
            if state is not None:
                self._state = state
                if self._name is None:
                    self._name = state.task_run_name
            else:
                self._payload = payload
                self._decode_lock = threading.Lock()
            callbacks, self._callbacks = self._callbacks, None
        self._done.release()
        for fn in callbacks or ():
            try:
                fn(self)
            except Exception:  # one failing callback must not stop the others
                _log.exception("done callback %r raised", fn)
        self._on_final(self)
        return True

    # -- TaskFuture ----------------------------------------------------------------------
    @property
    def state(self) -> State:
        """The run's current state; never blocks (unpickles the final State on first read)."""
        if self._payload is None:
            return self._state
        with self._decode_lock:  # type: ignore[union-attr]
            payload = self._payload
            if payload is not None:
                state = _decode(payload, self)
                self._state = state
                self._payload = None
                if self._name is None:
                    self._name = state.task_run_name
                logs.replay((state.extra or {}).get("logs"), "ray")
        return self._state

    @property
    def task_run_name(self) -> str | None:
        if self._name is None and self._payload is not None:
            self.state  # noqa: B018 - the name travels in the State
        return super().task_run_name

    def done(self) -> bool:
        return self._settled

    def wait(self, timeout: float | None = None) -> None:
        """Block until the run is final or ``timeout`` seconds passed, in ``ray.get``.

        On a Ray worker ``ray.get`` hands the task's CPU back to Ray while it blocks;
        on the driver it is the quickest way to the value, and Ctrl-C interrupts it.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._settled:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ref = self._ref
            if ref is None:  # not handed to Ray yet, or being run again: wait for it
                super().wait(0.05 if left is None else min(left, 0.05))
            else:
                try:
                    outcome = ray.get(ref, timeout=left)
                except GetTimeoutError:
                    return
                except RayError as exc:
                    outcome = exc
                self._from_ray(ref, outcome)
            if deadline is not None and time.monotonic() >= deadline:
                return

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any:
        self.wait(timeout)
        if not self._settled:
            raise errors.WaitTimeout(
                f"task run {self._name or self.task_run_id!s} is not final after {timeout} s"
                f" (state {self._state.name})"
            )
        return self.state.result(raise_on_failure)

    def add_done_callback(self, fn: Callable[[TaskFuture], Any]) -> None:
        with _settle_lock:
            if not self._settled:
                if self._callbacks is None:
                    self._callbacks = [fn]
                else:
                    self._callbacks.append(fn)
                return
        fn(self)

    def __repr__(self) -> str:
        return f"<RayTaskFuture {self._name or ''} {self._state.name}>"


def _outcome(cf: Any) -> Any:
    """The value of a finished ``concurrent.futures.Future`` from ``ref.future()``, or its error."""
    exc = cf.exception()
    return cf.result() if exc is None else exc


def _decode(payload: bytes, future: RayTaskFuture) -> State:
    try:
        return loads(payload)
    except Exception as exc:  # noqa: BLE001 - e.g. the result's class is not importable here
        err = errors.SerializationError(
            f"task run {future._name or future.task_run_id!s}: its final state could not be "
            f"unpickled in this process: {type(exc).__name__}: {exc}"
        )
        err.__cause__ = exc
        return Failed(err)
