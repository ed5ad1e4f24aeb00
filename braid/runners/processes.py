"""ProcessPoolTaskRunner: task runs in worker processes, for CPU-bound work.

How a call travels::

    parent                                                 worker process (spawn)
    ------                                                 ----------------------
    core: submit pickles the call ── SerializationError here, naming the culprit
      upstreams not final? wait in callbacks (no thread per run)
    dispatch: an idle worker? ── send (call bytes, upstream states) ──>  run_pickled
               else queue it (FIFO)                                       (engine: retries,
                                                                          time-outs)
    result thread: multiprocessing.connection.wait(<─ log records ────  as they are made
      on every worker's pipe and process sentinel)  <─ pickled State ───  send_bytes
      records  -> replayed to this process's loggers at once (the run goes on)
      result   -> run.finish(state), give the worker the next queued run
                  (an AwaitingRetry state: the core re-dispatches after the delay, so
                  a run waiting to retry holds no worker)
      sentinel -> the worker died: its run ends CRASHED (WorkerLost); a new
                  worker is started if runs are waiting

Log records made in a run (see :mod:`braid.core.logs`) travel on the same pipe as the
results, so the parent handles every record of a run before it finishes the run.

Each worker runs one call at a time, so the parent always knows which run a dead
worker took with it, and ``max_workers`` is a hard cap.  Futures never cross the
boundary: dependencies are resolved here and only final states are sent.

Tasks submitted from inside a task running in a worker go to that worker process's
own default thread runner, so nested submission cannot deadlock the pool.

A run that times out while its thread is stuck makes the worker process exit after
it has reported the TimedOut state, which ends the stuck code; the parent starts a
fresh worker.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from braid import errors
from braid.core.contract import Capabilities
from braid.core.logs import driver_level, dumps_records, replay
from braid.core.runner import Run, TaskRunner
from braid.core.states import Crashed, Failed, State

if TYPE_CHECKING:
    from braid.core.futures import TaskFuture

__all__ = ["ProcessPoolTaskRunner"]

_START_METHODS = ("spawn", "forkserver", "fork")


class ProcessPoolTaskRunner(TaskRunner):
    """Runs tasks in up to ``max_workers`` processes (default: the number of CPUs).

    ``start_method`` is ``"spawn"`` (default, safe everywhere), ``"forkserver"`` or
    ``"fork"``.  Calls and results travel with cloudpickle, so tasks defined in
    ``__main__``, closures and lambdas work.
    """

    capabilities = Capabilities(
        requires_pickling=True, can_interrupt_running=True, reschedules_retries=True, remote=True
    )

    def __init__(
        self,
        max_workers: int | None = None,
        start_method: str = "spawn",
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        if max_workers is not None and (
            not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1
        ):
            raise errors.ConfigurationError(
                f"ProcessPoolTaskRunner: max_workers must be an int >= 1 or None, "
                f"got {max_workers!r}"
            )
        if start_method not in _START_METHODS:
            raise errors.ConfigurationError(
                f"ProcessPoolTaskRunner: start_method must be one of {_START_METHODS}, "
                f"got {start_method!r}"
            )
        self._max_workers_arg = max_workers
        self.max_workers = max_workers or os.cpu_count() or 1
        self.start_method = start_method
        if initializer is not None and not callable(initializer):
            raise errors.ConfigurationError(
                f"ProcessPoolTaskRunner: initializer must be callable, got {initializer!r}"
            )
        if not isinstance(initargs, tuple):
            raise errors.ConfigurationError(
                f"ProcessPoolTaskRunner: initargs must be a tuple, got {initargs!r}"
            )
        self.initializer = initializer
        self.initargs = initargs

    def duplicate(self) -> ProcessPoolTaskRunner:
        return type(self)(
            max_workers=self._max_workers_arg,
            start_method=self.start_method,
            initializer=self.initializer,
            initargs=self.initargs,
        )

    def limits_backend(self) -> Any:
        """Concurrency limits for a flow run on this pool: one coordinator in this process
        that the worker processes reach (a worker that dies gives its slots back)."""
        from braid.concurrency import LimitsCoordinator

        return LimitsCoordinator()

    def share_limits(self, flow_run_id: Any, handle: Any) -> None:
        """Give every worker process the limits handle of a flow run's task runs once,
        ahead of the next call it runs (a call then carries no handle)."""
        message = _SHARE + _serialization().dumps((flow_run_id, handle))
        with self._lock:
            self._shared.append(message)

    def __repr__(self) -> str:
        return (
            f"ProcessPoolTaskRunner(max_workers={self.max_workers}, "
            f"start_method={self.start_method!r})"
        )

    # -- pool -------------------------------------------------------------------------
    def start(self) -> None:
        """Prepare the pool (worker processes start as runs arrive) and its result thread."""
        import multiprocessing  # here, not at import: `import braid` stays light

        if (
            os.environ.get(_WORKER_ENV) == "1"
            and not _worker_state["running"]
            and multiprocessing.current_process().name == _WORKER_NAME
        ):
            # a spawned worker is re-importing the user's script, whose module-level code
            # starts a flow on a process pool: end at once, by a code the parent explains
            sys.stderr.write(f"braid: {_GUARD_MISSING}\n")
            sys.stderr.flush()
            os._exit(_MAIN_GUARD_MISSING)
        self._broken: str | None = None
        self._lock = threading.Lock()
        # Any: typeshed's BaseContext (what get_context(str) gives) declares no Process
        self._ctx: Any = multiprocessing.get_context(self.start_method)
        self._init_blob: bytes | None = None
        if self.initializer is not None:  # pickled once, by value if need be
            self._init_blob = _serialization().dumps((self.initializer, self.initargs))
        # small pickled results by future, to send to downstream runs as they came
        self._result_bytes: weakref.WeakKeyDictionary[TaskFuture[Any], bytes] = (
            weakref.WeakKeyDictionary()
        )
        self._waiting: collections.deque[tuple[Run, bytes]] = collections.deque()
        self._shared: list[bytes] = []  # limits handles, sent to each worker once (_SHARE)
        self._idle: list[_Worker] = []
        self._workers: dict[Any, _Worker] = {}  # by sentinel
        self._log_level = driver_level()
        self._wake_r, self._wake_w = multiprocessing.Pipe(duplex=False)
        self._closing = False
        self._results = threading.Thread(
            target=self._collect, daemon=True, name=f"braid-processes-{id(self):x}"
        )
        self._results.start()

    def _spawn(self) -> _Worker:
        # called with self._lock held
        parent_end, child_end = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=_worker_main,
            args=(child_end, self._log_level, self._init_blob),
            daemon=True,
            name=_WORKER_NAME,
        )
        os.environ[_WORKER_ENV] = "1"  # what a spawned worker sees while it bootstraps
        try:
            proc.start()
        finally:
            os.environ.pop(_WORKER_ENV, None)
        child_end.close()
        worker = _Worker(proc, parent_end)
        self._workers[proc.sentinel] = worker
        self._wake_w.send_bytes(b"")  # the result thread must watch the new worker
        return worker

    def dispatch(self, run: Run) -> None:
        """Send ``run`` to an idle worker process, start one, or queue it (FIFO)."""
        call_bytes = run.payload
        assert call_bytes is not None
        try:
            if not run.upstreams:  # the common case: the pickled call is the whole message
                message = _BARE + call_bytes
            else:
                # upstream results that came from a worker travel as the bytes it sent
                # (no unpickle-repickle); the others as States
                known = self._result_bytes
                parts = [known.get(u) or u.state for u in run.upstreams]
                if all(type(p) is bytes for p in parts):
                    import pickle  # plain pickle: the envelope holds only bytes

                    message = pickle.dumps((call_bytes, parts), protocol=5)
                else:
                    message = _serialization().dumps((call_bytes, parts))
        except Exception as exc:  # noqa: BLE001 - an upstream value that will not pickle
            name = run.future.task_run_name if run.future is not None else "?"
            err = errors.SerializationError(
                f"task run {name!r}: an upstream result could not be "
                f"pickled to send it to a worker process: {exc}"
            )
            run.finish(Failed(err))
            return
        with self._lock:
            broken = self._broken
            if broken is None:
                if self._idle:
                    worker = self._idle.pop()
                elif len(self._workers) < self.max_workers:
                    worker = self._spawn()
                else:
                    self._waiting.append((run, message))
                    return
                self._send(worker, run, message)
                return
        run.finish(Crashed(errors.WorkerLost(broken), broken))

    def _break(self, why: str) -> None:
        """No worker can ever start: end the runs waiting for one, refuse new ones."""
        with self._lock:
            self._broken = why
            waiting, self._waiting = list(self._waiting), collections.deque()
        for run, _message in waiting:
            run.finish(Crashed(errors.WorkerLost(why), why))

    def _send(self, worker: _Worker, run: Run, message: bytes) -> None:
        # called with self._lock held: give the worker this run, or the next one that
        # may still run, or make it idle
        while not run.begin():
            if not self._waiting:
                self._idle.append(worker)
                return
            run, message = self._waiting.popleft()
        worker.run = run
        try:
            shared = self._shared
            if worker.shared < len(shared):  # limits handles first: the call may need one
                for one in shared[worker.shared :]:
                    worker.conn.send_bytes(one)
                worker.shared = len(shared)
            worker.conn.send_bytes(message)
        except OSError:
            pass  # the worker is dead; its sentinel reports the run as lost

    def _collect(self) -> None:
        """The result thread: results, and deaths of worker processes."""
        while True:
            with self._lock:
                if self._closing and not self._workers:
                    return
                watch = [self._wake_r, *self._workers, *(w.conn for w in self._workers.values())]
            ready = _wait(watch)
            for obj in ready:
                if obj is self._wake_r:
                    try:
                        self._wake_r.recv_bytes()
                    except EOFError:
                        return
                    continue
                worker = self._workers.get(obj)
                if worker is not None:
                    self._on_death(worker)
                    continue
                for w in list(self._workers.values()):
                    if w.conn is obj:
                        try:
                            self._on_message(w)
                        except Exception:  # noqa: BLE001 - this thread must never die
                            logging.getLogger("braid").exception(
                                "braid: handling a worker process's result failed"
                            )
                        break

    def _on_message(self, worker: _Worker, alive: bool = True) -> bool:
        """Handle the worker's next message (log records or a result); False at its end."""
        try:
            payload = worker.conn.recv_bytes()
        except (EOFError, OSError):
            return False  # the sentinel will report the death
        if payload[:_LOGS_LEN] == _LOGS:
            try:
                replay(_serialization().loads(payload[_LOGS_LEN:]), f"process {worker.proc.pid}")
            except Exception:  # noqa: BLE001 - a record that will not load here is dropped
                pass
            return True
        if payload == _RETIRING:  # it exits after this result: give it no more work
            worker.retiring = True
            return True
        self._on_result(worker, payload, alive)
        return True

    def _on_result(self, worker: _Worker, payload: bytes, alive: bool) -> None:
        run = worker.run
        try:
            state: State = _serialization().loads(payload)
        except Exception as exc:  # noqa: BLE001 - a result that will not load here
            name = run.future.task_run_name if run and run.future else "?"
            err = errors.SerializationError(
                f"task run {name!r}: its result could not "
                f"be loaded in the parent process: {type(exc).__name__}: {exc}"
            )
            err.__cause__ = exc
            state = Failed(err)
        if (
            run is not None
            and run.future is not None
            and len(payload) <= _KEEP_RESULT_BYTES
            and state.is_final()
        ):
            self._result_bytes[run.future] = payload
        with self._lock:
            worker.run = None
            if alive and not worker.retiring and not self._closing:
                if self._waiting:
                    self._send(worker, *self._waiting.popleft())
                else:
                    self._idle.append(worker)
        if run is not None:
            run.finish(state)

    def _on_death(self, worker: _Worker) -> None:
        worker.proc.join(timeout=5)
        with self._lock:
            if worker in self._idle:
                self._idle.remove(worker)
        # what it sent before it exited: records, and the result of a stuck time-out
        while worker.conn.poll() and self._on_message(worker, alive=False):
            pass
        with self._lock:
            self._workers.pop(worker.proc.sentinel, None)
            if worker in self._idle:
                self._idle.remove(worker)
            run, worker.run = worker.run, None
            replacement = None
            if self._waiting and not self._closing and worker.proc.exitcode != _MAIN_GUARD_MISSING:
                replacement = self._spawn()
                self._send(replacement, *self._waiting.popleft())
        worker.conn.close()
        code = worker.proc.exitcode
        if code == _MAIN_GUARD_MISSING:
            self._break(_GUARD_MISSING)
        if run is not None:
            how = _describe_exit(code)
            name = run.future.task_run_name if run.future is not None else "?"
            err = errors.WorkerLost(
                f"the worker process (pid {worker.proc.pid}) running task run {name!r} died: {how}"
            )
            run.finish(Crashed(err, str(err)))

    def stop(self, abandon: bool) -> None:
        """Stop the worker processes: ask idle ones to exit, terminate busy ones."""
        with self._lock:
            self._closing = True
            self._waiting = collections.deque()  # final already: the core ended them
            workers = list(self._workers.values())
        for w in workers:
            if abandon or w.run is not None:
                w.proc.terminate()
            else:
                try:
                    w.conn.send_bytes(b"")
                except OSError:
                    pass
        for w in workers:
            w.proc.join(timeout=10)
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join()
        self._wake_w.send_bytes(b"")
        self._results.join(timeout=10)
        for w in workers:
            w.conn.close()
        self._wake_w.close()
        self._wake_r.close()


class _Worker:
    __slots__ = ("proc", "conn", "run", "retiring", "shared")

    def __init__(self, proc: Any, conn: Any) -> None:
        self.proc = proc
        self.conn = conn
        self.run: Run | None = None
        self.retiring = False  # announced it exits after its current result
        self.shared = 0  # how many of the pool's shared messages it was sent


#: results pickled to at most this many bytes are kept to be forwarded as they are
_KEEP_RESULT_BYTES = 64 * 1024
#: first byte of a message that is a bare pickled call (a pickle never starts with it)
_BARE = b"\x00"
#: first byte of a message that gives the worker a flow run's limits handle (not a call)
_SHARE = b"\x01"
#: what a worker sends just before the result after which it exits
_RETIRING = b"\x00braid-retiring"
#: the start of a message of pickled log records (sent while a run goes on)
_LOGS = b"\x00braid-logs:"
_LOGS_LEN = len(_LOGS)


def _serialization() -> Any:
    # imported on first use, so that `import braid` does not load cloudpickle
    from braid.core import serialization

    return serialization


def _wait(objects: list[Any]) -> list[Any]:
    from multiprocessing.connection import wait

    return wait(objects)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "it stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"killed by {name}{hint}"
    if code == _MAIN_GUARD_MISSING:
        return f"exited with code {code}: {_GUARD_MISSING}"
    if code == _INITIALIZER_FAILED:
        return (
            f"exited with code {code}: the runner's initializer raised (its traceback "
            f"is on the worker's stderr)"
        )
    return f"exited with code {code}"


#: the exit code of a worker process whose initializer raised
_INITIALIZER_FAILED = 3
#: the exit code of a worker whose re-import of the user's script started a flow
_MAIN_GUARD_MISSING = 4
#: set in a worker's environment at spawn, with its process name: lets start() recognise
#: a worker still bootstrapping (re-importing the user's script)
_WORKER_ENV = "BRAID_PROCESS_WORKER"
_WORKER_NAME = "braid-process-worker"
_worker_state = {"running": False}
_GUARD_MISSING = (
    "a ProcessPoolTaskRunner worker re-imported your script (the 'spawn' start method "
    "does) and its module-level code started the flow again; put the code that runs the "
    'flow under `if __name__ == "__main__":` (or use start_method="fork")'
)


class _PipeSink:
    """A worker's log records, sent to the parent on the result pipe as they are made."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.lock = threading.Lock()  # runs' threads and the main loop share the pipe

    def put(self, record: logging.LogRecord) -> None:
        message = _LOGS + dumps_records([record])
        with self.lock:
            self.conn.send_bytes(message)

    def flush(self) -> None:
        pass  # sent already, ahead of the result

    def send(self, *messages: bytes) -> None:
        """Send ``messages`` back to back, with no record between them."""
        with self.lock:
            for message in messages:
                self.conn.send_bytes(message)


def _worker_main(conn: Any, log_level: int, init_blob: bytes | None = None) -> None:
    """A worker process: run one call at a time until told to stop (an empty message)."""
    from braid.core.engine import run_pickled
    from braid.core.logs import set_process_sink
    from braid.core.runner import drain_default_runner

    _worker_state["running"] = True  # from here on, flows may start (nested in tasks)
    sink = _PipeSink(conn)
    # runs submitted from inside a task run on this process's threads: theirs go there too
    set_process_sink(sink)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if init_blob is not None:
        try:
            initializer, initargs = _serialization().loads(init_blob)
            initializer(*initargs)
        except BaseException:  # noqa: BLE001 - reported by the exit code and the traceback
            import traceback

            traceback.print_exc()
            os._exit(_INITIALIZER_FAILED)
    try:
        while True:
            try:
                msg = conn.recv_bytes()
            except (EOFError, OSError):
                return
            if not msg:
                return
            if msg[:1] == _BARE:
                call_bytes, states = msg[1:], ()
            elif msg[:1] == _SHARE:
                from braid.concurrency.limits import register_run_limits

                register_run_limits(*_serialization().loads(msg[1:]))
                continue
            else:
                call_bytes, states = _serialization().loads(msg)
            result = run_pickled(call_bytes, states, None, log_level, reschedule_retries=True)
            if any(
                t.name.startswith("braid-timeout-") and t.is_alive() for t in threading.enumerate()
            ):
                # a timed-out run is still stuck in this process: report, then end it
                sink.send(_RETIRING, result)
                drain_default_runner()
                conn.close()
                os._exit(0)
            sink.send(result)
    finally:
        # tasks submitted from inside tasks ran on this process's default runner: let
        # them finish (fork-started workers skip atexit)
        drain_default_runner()
