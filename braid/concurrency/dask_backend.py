"""Limits on a Dask cluster, kept by the scheduler with Dask's own primitives.

::

    driver / any worker thread            scheduler (one per cluster)
    DaskLimits ── Semaphore.acquire ────► semaphore "braid-limit-<name>"  (holds)
               ── Lock + metadata ──────► lock "braid-rate-<name>" + decay time (rate)

- Slots held with ``concurrency()`` (and tag slots, ``braid-limit-tag:<name>``) are
  leases of a ``distributed.Semaphore`` whose ``max_leases`` is the limit.  Every
  client of the scheduler (drivers and workers alike) shares it, so two flows on one
  cluster share a limit of the same name.  The client refreshes its leases; a worker
  that dies holding one stops refreshing, and the scheduler frees the slot after
  ``distributed.scheduler.locks.lease-timeout`` (default 30 s), checked every
  ``lease-validation-interval`` (default 10 s).  An uncontended acquire is one round
  trip to the scheduler; a release is sent without waiting.  ``occupy > 1`` takes its
  leases one by one under a per-name ``distributed.Lock``, so two multi-slot requests
  never each hold part of what the other needs.
- Decaying slots (``rate_limit``): the time at which everything taken so far will have
  decayed is kept in the scheduler's metadata (``["braid-rate", name]``, wall-clock
  seconds), read and moved under a ``distributed.Lock`` ``braid-rate-<name>``: four
  round trips per call; the caller then sleeps its turn.

A name first registered with one limit keeps it on that scheduler; a different value
raises ``LimitRedeclared`` while any slot of it is held (an idle name is re-registered
with the new value).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable

from braid import errors
from braid.concurrency.backend import (
    LimitsHandle,
    rate_delay,
    register_backend,
    unregister_backend,
)
from braid.concurrency.limits import Limit, LimitTable

__all__ = ["DaskLimits", "connect"]

KIND = "dask"


def _distributed():
    try:
        import distributed
    except ImportError as exc:
        raise errors.MissingExtraError(
            "Dask limits need dask.distributed: pip install 'braid-flow[dask]'"
        ) from exc
    return distributed


class DaskLimits:
    """Limits kept by the scheduler ``client`` is connected to; usable from any thread of
    the driver or of a worker (``connect`` picks the worker's own client there)."""

    kind = KIND
    in_process = False

    def __init__(self, client, *, owns_client: bool = False) -> None:
        self._client = client
        self._owns_client = owns_client
        self._address = client.scheduler.address
        self._lock = threading.Lock()
        self._semaphores: dict[str, tuple[Limit, object]] = {}
        self._locks: dict[str, object] = {}  # made once: each new one costs a registration
        register_backend(KIND, self._address, self)

    def handle(self, limits: LimitTable | None = None) -> LimitsHandle:
        """Return a handle every process with access to the scheduler can use."""
        return LimitsHandle(KIND, self._address, limits)

    def _semaphore(self, name: str, limit: Limit):
        with self._lock:
            known = self._semaphores.get(name)
            if known is not None and known[0].limit == limit.limit:
                return known[1]
        distributed = _distributed()
        semaphore = distributed.Semaphore(
            max_leases=limit.limit,
            name=f"braid-limit-{name}",
            scheduler_rpc=self._client.scheduler,
            loop=self._client.loop,
        )
        try:
            semaphore.register()
        except ValueError as exc:  # registered on the scheduler with another max_leases
            if semaphore.get_value():
                semaphore.refresh_callback.stop()
                raise errors.LimitRedeclared(
                    f"concurrency limit {name!r} is in use on the Dask scheduler "
                    f"{self._address} with another limit; it cannot be {limit!r} at the same "
                    "time"
                ) from exc
            semaphore.close()  # idle: take the new value
            semaphore = distributed.Semaphore(
                max_leases=limit.limit,
                name=f"braid-limit-{name}",
                scheduler_rpc=self._client.scheduler,
                loop=self._client.loop,
            )
            semaphore.register()
        with self._lock:
            previous = self._semaphores.get(name)
            self._semaphores[name] = (limit, semaphore)
        if previous is not None:
            previous[1].refresh_callback.stop()
        return semaphore

    def acquire(
        self, name: str, limit: Limit, occupy: int, timeout: float | None
    ) -> Hashable | None:
        """Take ``occupy`` leases of the semaphore ``braid-limit-<name>``."""
        semaphore = self._semaphore(name, limit)
        if occupy == 1:
            return (semaphore, 1) if semaphore.acquire(timeout=timeout) else None
        deadline = None if timeout is None else time.monotonic() + timeout
        gate = self._named_lock(f"braid-limit-{name}-gate")
        if not gate.acquire(timeout=timeout):
            return None
        taken = 0
        try:
            while taken < occupy:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not semaphore.acquire(timeout=left):
                    break
                taken += 1
        finally:
            gate.release()
            if taken < occupy:
                for _ in range(taken):
                    semaphore.release()
        return (semaphore, occupy) if taken == occupy else None

    def release(self, name: str, token: Hashable) -> None:
        """Give the leases back without waiting for the scheduler's answer: the release is
        handed to the client's event loop (where ``Semaphore.release`` returns a coroutine
        that the loop runs)."""
        semaphore, occupy = token
        for _ in range(occupy):
            self._client.loop.add_callback(semaphore.release)

    def reserve_rate(
        self, name: str, limit: Limit, occupy: int, max_wait: float | None
    ) -> float | None:
        """Move the decay time of ``name`` under its lock; return the wait."""
        lock = self._named_lock(f"braid-rate-{name}")
        if not lock.acquire(timeout=max_wait):
            return None
        try:
            tat = float(self._client.get_metadata(["braid-rate", name], default=0.0))
            now = time.time()
            delay, tat = rate_delay(tat, now, limit, occupy)
            if max_wait is not None and delay > max_wait:
                return None
            self._client.set_metadata(["braid-rate", name], tat)
            return delay
        finally:
            lock.release()

    def _named_lock(self, name: str):
        with self._lock:
            lock = self._locks.get(name)
            if lock is None:
                lock = self._locks[name] = _distributed().Lock(
                    name, scheduler_rpc=self._client.scheduler, loop=self._client.loop
                )
            return lock

    def close(self) -> None:
        """Stop refreshing leases here (held ones then expire on the scheduler) and close
        the client if this object opened it."""
        unregister_backend(KIND, self._address, self)
        with self._lock:
            primitives = [s for _, s in self._semaphores.values()] + list(self._locks.values())
            self._semaphores, self._locks = {}, {}
        for primitive in primitives:
            primitive.refresh_callback.stop()
        if self._owns_client:
            self._client.close()


def connect(handle: LimitsHandle) -> DaskLimits:
    """Return limits on the scheduler at ``handle.key``: the worker's client inside a Dask
    worker, the current client with that address in a driver, else a new client owned by
    the returned object."""
    distributed = _distributed()
    address = handle.key
    try:
        distributed.get_worker()
        in_worker = True
    except ValueError:
        in_worker = False
    try:
        current = distributed.Client.current()
    except ValueError:
        current = None
    if in_worker or (current is not None and current.scheduler.address == address):
        return DaskLimits(distributed.get_client(address))
    try:
        client = distributed.Client(address, set_as_default=False)
    except OSError as exc:
        raise errors.LimitsUnavailable(
            f"cannot reach the Dask scheduler {address!r} for concurrency limits"
        ) from exc
    return DaskLimits(client, owns_client=True)
