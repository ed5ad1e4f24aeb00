"""Where limits live: the backend contract, leases, and the handle that finds a backend.

::

    concurrency()/rate_limit()/tags        (any thread, any process)
        │ names → (name, Limit) pairs from the declared table (the handle's, or local)
        ▼
    LimitBackend: acquire / release / reserve_rate, one name at a time
        ├─ LocalLimits        condition variable per name, in this process (threads)
        ├─ LimitsCoordinator  the parent of a process pool; CoordinatorClient in workers
        ├─ DaskLimits         distributed.Semaphore per name on the scheduler
        └─ RayLimits          one named actor per name on the Ray cluster

A ``LimitsHandle`` is the small picklable record that travels with a task run: the
backend kind, how to reach it, and the declared table.  ``handle.backend()`` returns the
backend connected in this process (made once per process and cached).

A request for several names takes them one by one in sorted name order (so two requests
never wait on each other in a cycle) under one deadline, and gives back what it took if
the deadline passes.
"""

from __future__ import annotations

import contextvars
import importlib
import logging
import os
import threading
import time
from collections.abc import Hashable, Sequence
from typing import Protocol, runtime_checkable

from braid import errors
from braid.concurrency.limits import (
    ENV_VAR,
    Limit,
    LimitTable,
    declared_limits,
    reset_declared,
    run_limits,
    set_declared,
)

__all__ = [
    "Lease",
    "LimitBackend",
    "LimitsHandle",
    "current_backend",
    "current_handle",
    "hold_slots",
    "rate_delay",
    "reserve_rate",
    "resolve_limits",
    "use_limits",
]

logger = logging.getLogger("braid.concurrency")

# Where to find the connect(handle) function of each kind, imported only when used.
_CONNECTORS = {
    "processes": "braid.concurrency.coordinator",
    "dask": "braid.concurrency.dask_backend",
    "ray": "braid.concurrency.ray_backend",
}


@runtime_checkable
class LimitBackend(Protocol):
    """The place where slots of named limits are counted; every method may be called from
    any thread."""

    def handle(self, limits: LimitTable | None = None) -> LimitsHandle:
        """Return a picklable handle through which any process reaches this backend."""
        ...

    def acquire(
        self, name: str, limit: Limit, occupy: int, timeout: float | None
    ) -> Hashable | None:
        """Hold ``occupy`` slots of ``name`` and return a token for ``release``; return None
        if ``timeout`` seconds (None: no bound, 0: do not wait) passed first."""
        ...

    def release(self, name: str, token: Hashable) -> None:
        """Give back the slots ``token`` holds; a token already given back is ignored."""
        ...

    def reserve_rate(
        self, name: str, limit: Limit, occupy: int, max_wait: float | None
    ) -> float | None:
        """Take ``occupy`` decaying slots of ``name`` and return how many seconds the caller
        must wait before going on; return None, taking nothing, if that exceeds
        ``max_wait``."""
        ...

    def close(self) -> None:
        """Stop serving; waiters in this process raise ``LimitsUnavailable``."""
        ...


def rate_delay(tat: float, now: float, limit: Limit, occupy: int) -> tuple[float, float]:
    """Return (seconds to wait, new state) for taking ``occupy`` decaying slots.

    The state ``tat`` is the time at which every slot taken so far will have decayed.
    A bucket of ``limit.limit`` slots that drains at ``slot_decay_per_second``: a request
    goes ahead once the slots still occupied plus ``occupy`` fit in the limit.
    """
    interval = 1.0 / limit.slot_decay_per_second
    new_tat = max(tat, now) + occupy * interval
    return max(0.0, new_tat - limit.limit * interval - now), new_tat


# -- handles -------------------------------------------------------------------------------
_backends: dict[tuple[int, str, Hashable], LimitBackend] = {}
_backends_lock = threading.RLock()  # connecting may register the backend it makes


def register_backend(kind: str, key: Hashable, backend: LimitBackend) -> None:
    """Make ``backend`` what handles of ``kind``/``key`` resolve to in this process."""
    with _backends_lock:
        _backends[(os.getpid(), kind, key)] = backend


def unregister_backend(kind: str, key: Hashable, backend: LimitBackend) -> None:
    """Forget ``backend`` (closed) so a later handle connects afresh."""
    with _backends_lock:
        if _backends.get((os.getpid(), kind, key)) is backend:
            del _backends[(os.getpid(), kind, key)]


class LimitsHandle:
    """A picklable pointer to a limits backend plus the declared table: what a task run
    carries so that its worker takes slots where the driver's limits live.

    ``kind`` is ``"local"``, ``"processes"``, ``"dask"`` or ``"ray"``; ``key`` says how
    to reach the backend (a local id, a coordinator address and key, a scheduler
    address, a Ray namespace and lease time).
    """

    __slots__ = ("_plain", "kind", "key", "limits")

    def __init__(self, kind: str, key: Hashable, limits: LimitTable | None = None) -> None:
        self.kind = kind
        self.key = key
        self.limits = limits if limits is not None else LimitTable()
        self._plain: tuple | None = None

    def __reduce__(self) -> tuple:
        # Plain data (the table as (name, slots, decay) triples) to a function that makes
        # one handle per distinct value in a process: a handle travels with every task
        # call of a remote runner, and this pickles and unpickles in a fraction of the time
        # the objects would.
        plain = self._plain
        if plain is None:
            table = tuple((n, v.limit, v.slot_decay_per_second) for n, v in self.limits.items())
            plain = self._plain = (self.kind, self.key, table)
        return (_handle_from, plain)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LimitsHandle) and (self.kind, self.key, self.limits) == (
            other.kind,
            other.key,
            other.limits,
        )

    def __hash__(self) -> int:
        return hash((self.kind, self.key, self.limits))

    def __repr__(self) -> str:
        return f"LimitsHandle({self.kind!r}, limits={dict(self.limits)!r})"

    def with_limits(self, limits: LimitTable) -> LimitsHandle:
        """Return a handle to the same backend with another declared table."""
        return LimitsHandle(self.kind, self.key, limits)

    def backend(self) -> LimitBackend:
        """Return this process's connection to the backend, connecting on first use."""
        slot = (os.getpid(), self.kind, self.key)
        backend = _backends.get(slot)
        if backend is not None:
            return backend
        module = _CONNECTORS.get(self.kind)
        if module is None:
            raise errors.LimitsUnavailable(
                f"a {self.kind!r} limits handle works only in the process that made it; "
                f"this is pid {os.getpid()}: use a process, Dask or Ray handle to reach "
                "limits from another process"
            )
        connect = importlib.import_module(module).connect
        with _backends_lock:
            backend = _backends.get(slot)
            if backend is None:
                backend = _backends[slot] = connect(self)
        return backend


_unpickled: dict[tuple, LimitsHandle] = {}


def _handle_from(kind: str, key: Hashable, table: tuple) -> LimitsHandle:
    """The handle a pickled ``LimitsHandle`` stands for: one object per value here."""
    plain = (kind, key, table)
    handle = _unpickled.get(plain)
    if handle is None:
        if len(_unpickled) >= 64:  # many distinct tables: start afresh
            _unpickled.clear()
        limits = LimitTable({name: Limit(slots, decay) for name, slots, decay in table})
        handle = _unpickled[plain] = LimitsHandle(kind, key, limits)
    return handle


_handle: contextvars.ContextVar[LimitsHandle | None] = contextvars.ContextVar(
    "braid_limits_handle", default=None
)
_default_local: LimitBackend | None = None
_default_lock = threading.Lock()


class use_limits:  # noqa: N801 - used as a function: with use_limits(handle): ...
    """Within the block, take slots through ``handle``'s backend and see its declared
    table (``None``: leave things as they are); the block's value is ``handle``.

    A class, not a generator: the engine enters one around every task run of a flow that
    declares limits, so entering and leaving cost two context-variable sets and resets.
    """

    __slots__ = ("_declared", "_handle", "_token")

    def __init__(self, handle: LimitsHandle | None) -> None:
        self._handle = handle
        self._token: contextvars.Token | None = None
        self._declared: contextvars.Token | None = None

    def __enter__(self) -> LimitsHandle | None:
        handle = self._handle
        if handle is not None:
            self._token = _handle.set(handle)
            self._declared = set_declared(handle.limits)
        return handle

    def __exit__(self, *exc: object) -> None:
        token, self._token = self._token, None
        if token is not None:
            reset_declared(self._declared)  # type: ignore[arg-type]
            _handle.reset(token)


def current_handle() -> LimitsHandle | None:
    """Return the handle set by the innermost ``use_limits``, else the one registered for
    the flow run in progress here (``register_run_limits``), or None."""
    handle = _handle.get()
    return handle if handle is not None else run_limits()


def current_backend() -> LimitBackend:
    """Return the backend in effect: the handle's, or this process's own in-process
    limits when no handle is set."""
    handle = current_handle()
    if handle is not None:
        return handle.backend()
    global _default_local
    if _default_local is None:
        with _default_lock:
            if _default_local is None:
                # by name, like the connectors above: local.py builds on this module
                local = importlib.import_module("braid.concurrency.local")
                _default_local = local.LocalLimits()
    return _default_local


# -- requests over several names -------------------------------------------------------------
def resolve_limits(
    names: str | Sequence[str],
    occupy: int,
    *,
    strict: bool,
    rate: bool,
    table: LimitTable | None = None,
) -> list[tuple[str, Limit]]:
    """Return the (name, Limit) pairs a request applies to, sorted by name.

    Undeclared names are left out (``strict=False``) or raise ``UndeclaredLimit``;
    ``occupy`` larger than a limit raises ``SlotsExceedLimit``; ``rate`` with a limit
    without decay raises ``RateLimitWithoutDecay``.
    """
    if isinstance(names, str):
        names = [names]
    if isinstance(occupy, bool) or not isinstance(occupy, int) or occupy < 1:
        raise errors.InvalidLimit(f"occupy={occupy!r}: expected an integer >= 1")
    table = declared_limits() if table is None else table
    pairs = []
    for name in sorted(set(names)):
        limit = table.get(name)
        if limit is None:
            if strict:
                raise errors.UndeclaredLimit(
                    f"concurrency limit {name!r} is not declared (strict=True). Declare it on "
                    f"the flow, @flow(concurrency_limits={{{name!r}: 2}}), in the environment, "
                    f"{ENV_VAR}='{name}=2', or on the command line, braid run ... --limit "
                    f"{name}=2"
                )
            logger.debug("concurrency limit %r is not declared: not limited", name)
            continue
        if occupy > limit.limit:
            raise errors.SlotsExceedLimit(
                f"occupy={occupy} slots of {name!r}, whose limit is {limit.limit}: "
                "this could never be granted"
            )
        if rate and not limit.slot_decay_per_second:
            raise errors.RateLimitWithoutDecay(
                f"rate_limit({name!r}): {limit!r} has no slot decay, so its slots would never "
                f"come back; declare it as Limit({limit.limit}, slot_decay_per_second=...) "
                f"or '{name}={limit.limit}/DECAY'"
            )
        pairs.append((name, limit))
    return pairs


class Lease:
    """Slots held on one or more limits until ``release()`` (idempotent, any thread)."""

    __slots__ = ("_backend", "_held", "_lock", "occupy")

    def __init__(
        self, backend: LimitBackend | None, held: list[tuple[str, Hashable]], occupy: int
    ) -> None:
        self._backend = backend
        self._held = held
        self._lock = threading.Lock()
        self.occupy = occupy

    @property
    def names(self) -> tuple[str, ...]:
        """The limit names this lease holds slots of (empty once released)."""
        return tuple(name for name, _ in self._held)

    def release(self) -> None:
        """Give the slots back; later calls do nothing."""
        with self._lock:
            held, self._held = self._held, []
        for name, token in reversed(held):
            try:
                self._backend.release(name, token)
            except errors.LimitsUnavailable:
                # The backend is gone, and with it every slot it counted.
                logger.debug("limits backend gone while releasing %r", name)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Lease(names={self.names!r}, occupy={self.occupy})"


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def hold_slots(
    backend: LimitBackend, pairs: Sequence[tuple[str, Limit]], occupy: int, timeout: float | None
) -> Lease | None:
    """Hold ``occupy`` slots of every pair and return the lease; return None, holding
    nothing, if ``timeout`` seconds passed first (0: do not wait)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    held: list[tuple[str, Hashable]] = []
    try:
        for name, limit in pairs:
            token = backend.acquire(name, limit, occupy, _remaining(deadline))
            if token is None:
                Lease(backend, held, occupy).release()
                return None
            held.append((name, token))
    except BaseException:
        Lease(backend, held, occupy).release()
        raise
    return Lease(backend, held, occupy)


def reserve_rate(
    backend: LimitBackend, pairs: Sequence[tuple[str, Limit]], occupy: int, timeout: float | None
) -> float | None:
    """Take ``occupy`` decaying slots of every pair; return the seconds to wait before going
    on, or None if that exceeds ``timeout`` (slots of names before it stay taken)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    start = time.monotonic()
    wait_until = start
    for name, limit in pairs:
        delay = backend.reserve_rate(name, limit, occupy, _remaining(deadline))
        if delay is None:
            return None
        wait_until = max(wait_until, time.monotonic() + delay)
    return max(0.0, wait_until - time.monotonic())


def timeout_error(names: Sequence[str], timeout: float | None, what: str) -> Exception:
    """The ``ConcurrencyTimeout`` for a request of ``what`` on ``names``."""
    return errors.ConcurrencyTimeout(
        f"{what} on {list(names)!r}: no slots within {timeout} second(s)"
    )
