"""Limits shared by a process pool: one coordinator in the parent, a client in each worker.

::

    parent process                                   worker process
    ┌──────────────────────────────────────┐         ┌──────────────────────────────┐
    │ LimitsCoordinator                    │         │ CoordinatorClient            │
    │   LocalLimits (the counts)           │◄────────┤   one connection per thread  │
    │   accept thread ─► one thread per    │ socket  │   acquire/rate: send, recv   │
    │   connection: recv, call, send       │ +authkey│   release: send only         │
    └──────────────────────────────────────┘         └──────────────────────────────┘

The parent itself uses the counts directly, without a socket.  Every slot a
connection takes is recorded against it; when the connection closes (the worker
exited, was killed, or a thread was interrupted mid-request) the coordinator gives
back everything it still held.  A worker reaches the coordinator through the
picklable ``LimitsHandle`` (address and a random key), on a Unix socket where there
is one and on 127.0.0.1 elsewhere.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from collections.abc import Hashable, Sequence
from multiprocessing import AuthenticationError
from multiprocessing.connection import (
    Client,
    Connection,
    Listener,
    answer_challenge,
    deliver_challenge,
)

from braid import errors
from braid.concurrency.backend import LimitsHandle, register_backend, unregister_backend
from braid.concurrency.limits import Limit, LimitTable
from braid.concurrency.local import FreeSlots, LocalLimits

__all__ = ["CoordinatorClient", "LimitsCoordinator", "connect"]

logger = logging.getLogger("braid.concurrency")
KIND = "processes"


class LimitsCoordinator:
    """Limits counted in this process and served to worker processes; ``close()`` stops
    it (a context manager too).  Methods called here act on the counts directly."""

    kind = KIND
    in_process = True

    def __init__(self) -> None:
        self._limits = LocalLimits()
        self._authkey = os.urandom(32)
        family = "AF_UNIX" if sys.platform != "win32" else "AF_INET"
        address = None if family == "AF_UNIX" else ("127.0.0.1", 0)
        # the key is checked by _accept (not by the Listener): a stranger's connection is
        # then closed at once, instead of left to the garbage collector
        self._listener = Listener(address, family=family)
        self._key = (self._listener.address, self._authkey)
        self._lock = threading.Lock()
        self._owner: dict[tuple[str, Hashable], int] = {}  # (name, token) -> connection id
        self._connections: dict[int, Connection] = {}
        self._threads: list[threading.Thread] = []
        self._closing = False
        self._accepting = threading.Thread(
            target=self._accept, daemon=True, name="braid-limits-coordinator"
        )
        self._accepting.start()
        register_backend(KIND, self._key, self)

    # -- the parent's own calls ---------------------------------------------------------------
    def handle(self, limits: LimitTable | None = None) -> LimitsHandle:
        """Return the handle worker processes connect with (it carries the key: keep it
        to the processes you start)."""
        return LimitsHandle(KIND, self._key, limits)

    def acquire(
        self, name: str, limit: Limit, occupy: int, timeout: float | None
    ) -> Hashable | None:
        """Hold slots of ``name`` for this process (see ``LimitBackend.acquire``)."""
        return self._limits.acquire(name, limit, occupy, timeout)

    def release(self, name: str, token: Hashable) -> None:
        """Give back slots held by this process or by any worker."""
        with self._lock:
            self._owner.pop((name, token), None)
        self._limits.release(name, token)

    def reserve_rate(
        self, name: str, limit: Limit, occupy: int, max_wait: float | None
    ) -> float | None:
        """Take decaying slots (see ``LimitBackend.reserve_rate``)."""
        return self._limits.reserve_rate(name, limit, occupy, max_wait)

    def slots(self, pairs: Sequence[tuple[str, Limit]]) -> FreeSlots:
        """Free slots of ``pairs`` taken for this process (see ``LocalLimits.slots``)."""
        return self._limits.slots(pairs)

    def close(self) -> None:
        """Stop serving: wake waiters, close every connection and join the threads."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            connections = list(self._connections.values())
        unregister_backend(KIND, self._key, self)
        self._limits.close()
        try:  # wake the accept() call with one last connection (it is closed unheard)
            Client(self._listener.address).close()
        except (OSError, EOFError):
            pass
        self._accepting.join()
        self._listener.close()
        for conn in connections:
            _shutdown(conn)
        for thread in self._threads:
            thread.join()

    def __enter__(self) -> LimitsCoordinator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- serving workers --------------------------------------------------------------------------
    def _accept(self) -> None:
        """Accept connections; each one's key check and service run in a thread of its own,
        so a client that connects and says nothing never blocks the next (or close())."""
        while True:
            try:
                conn = self._listener.accept()
            except Exception as exc:  # noqa: BLE001 - OSError once closed
                if self._closing:
                    return
                logger.debug("limits coordinator could not accept a connection: %s", exc)
                continue
            with self._lock:
                if self._closing:
                    conn.close()
                    return
                self._connections[id(conn)] = conn  # shut down by close() if still there
                thread = threading.Thread(
                    target=self._admit, args=(conn,), daemon=True, name="braid-limits-connection"
                )
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)
            thread.start()

    def _admit(self, conn: Connection) -> None:
        """Check the connection's key, then serve it; a stranger is closed at once."""
        try:
            deliver_challenge(conn, self._authkey)
            answer_challenge(conn, self._authkey)
        except Exception as exc:  # noqa: BLE001 - AuthenticationError, or closed meanwhile
            with self._lock:
                self._connections.pop(id(conn), None)
            conn.close()
            logger.debug("limits coordinator refused a connection: %s", exc)
            return
        self._serve(conn)

    def _serve(self, conn: Connection) -> None:
        me = id(conn)
        try:
            while True:
                try:
                    request = conn.recv()
                except (EOFError, OSError):
                    return
                op, name, *args = request
                if op == "release":
                    self.release(name, args[0])
                    continue
                try:
                    if op == "acquire":
                        reply = self._limits.acquire(name, *args)
                        if reply is not None:
                            with self._lock:
                                self._owner[(name, reply)] = me
                    else:
                        reply = self._limits.reserve_rate(name, *args)
                    message = ("ok", reply)
                except errors.BraidError as exc:
                    message = ("error", exc)
                try:
                    conn.send(message)
                except OSError:
                    return
        finally:
            self._forget(me)
            conn.close()

    def _forget(self, me: int) -> None:
        """Give back every slot the connection ``me`` still holds: its holder is gone."""
        with self._lock:
            self._connections.pop(me, None)
            held = [key for key, owner in self._owner.items() if owner == me]
            for key in held:
                del self._owner[key]
        for name, token in held:
            self._limits.release(name, token)
        if held:
            logger.debug(
                "limits coordinator: a worker left holding %d slot(s); given back", len(held)
            )


def _shutdown(conn: Connection) -> None:
    """Wake a thread blocked in ``conn.recv()`` (closing the descriptor would not)."""
    try:
        sock = socket.socket(fileno=os.dup(conn.fileno()))
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


class CoordinatorClient:
    """A worker process's connection to its parent's ``LimitsCoordinator``: one socket per
    thread, so a thread waiting for slots never blocks another thread's release."""

    kind = KIND
    in_process = False

    def __init__(self, key: tuple) -> None:
        self._key = key
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[Connection] = []
        self._closed = False

    def handle(self, limits: LimitTable | None = None) -> LimitsHandle:
        """Return a handle to the same coordinator."""
        return LimitsHandle(KIND, self._key, limits)

    def _conn(self) -> Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise errors.LimitsUnavailable("this limits client was closed")
            address, authkey = self._key
            try:
                conn = Client(address, authkey=authkey)
            except (OSError, EOFError, AuthenticationError) as exc:
                raise errors.LimitsUnavailable(
                    f"cannot reach the limits coordinator of the parent process at {address!r} "
                    f"({exc}); has the flow that started this worker ended?"
                ) from exc
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _drop(self, conn: Connection) -> None:
        self._local.conn = None
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)
        conn.close()

    def _call(self, request: tuple) -> object:
        conn = self._conn()
        try:
            conn.send(request)
            status, reply = conn.recv()
        except (EOFError, OSError) as exc:
            self._drop(conn)
            raise errors.LimitsUnavailable(
                "lost the connection to the limits coordinator of the parent process"
            ) from exc
        except BaseException:
            # Interrupted mid-request: the reply would come out of step.  Closing the
            # connection makes the coordinator give back what this thread held.
            self._drop(conn)
            raise
        if status == "error":
            raise reply
        return reply

    def acquire(
        self, name: str, limit: Limit, occupy: int, timeout: float | None
    ) -> Hashable | None:
        """Hold slots of ``name`` at the coordinator (one round trip)."""
        return self._call(("acquire", name, limit, occupy, timeout))

    def release(self, name: str, token: Hashable) -> None:
        """Give back slots (sent without waiting for a reply)."""
        conn = self._conn()
        try:
            conn.send(("release", name, token))
        except OSError:
            self._drop(conn)  # the coordinator is gone, and with it the slot

    def reserve_rate(
        self, name: str, limit: Limit, occupy: int, max_wait: float | None
    ) -> float | None:
        """Take decaying slots at the coordinator (one round trip)."""
        return self._call(("rate", name, limit, occupy, max_wait))

    def close(self) -> None:
        """Close every connection of this process (the coordinator frees their slots)."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()


def connect(handle: LimitsHandle) -> CoordinatorClient:
    """Return a client for the coordinator ``handle`` points to (used by ``handle.backend()``
    in worker processes)."""
    return CoordinatorClient(handle.key)
