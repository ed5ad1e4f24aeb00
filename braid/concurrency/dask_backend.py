"""Limits on a Dask cluster, kept by the scheduler's semaphores (Dask's own primitive).

::

    driver / any worker thread                scheduler (one per cluster)
    DaskLimits ── acquire (1 round trip) ───► semaphore "braid-limit-<name>"
               │    carrying the releases      (SemaphoreExtension: leases, time-out)
               │    not sent yet
               ── refresh leases (periodic) ─►
               ── Lock + metadata ──────────► lock "braid-rate-<name>" + decay time (rate)
    flush thread ── releases no acquire took
                    along (FLUSH_SECONDS) ──►

- Slots held with ``concurrency()`` (and tag slots, ``braid-limit-tag:<name>``) are
  leases of the scheduler's semaphore of that name, whose ``max_leases`` is the limit.
  Every client of the scheduler (drivers and workers alike) shares it, so two flows on
  one cluster share a limit of the same name.  The holding process refreshes its leases;
  a worker that dies holding one stops refreshing, and the scheduler frees the slot
  after ``distributed.scheduler.locks.lease-timeout`` (default 30 s), checked every
  ``lease-validation-interval`` (default 10 s).  ``occupy > 1`` takes its leases one by
  one under a per-name ``distributed.Lock``, so two multi-slot requests never each hold
  part of what the other needs.
- A slot costs one round trip at most.  On first use this process adds two routes to the
  scheduler (``run_on_scheduler`` with a function sent by value: the scheduler needs no
  braid): ``braid_semaphore_acquire`` gives back the leases it is handed, then acquires
  through the semaphore extension's own ``acquire``, and says whether the limit is now
  full; ``braid_semaphore_release`` gives back several leases in one message.  A release
  then waits to travel with this process's next acquire of the same limit, or is sent
  within ``FLUSH_SECONDS`` without waiting for an answer; at once when the limit was
  full at the last acquire (someone may be waiting).  Until it is sent the scheduler
  still counts the lease, so while its last answer (room left) is under
  ``FLUSH_SECONDS`` old, the next acquire here takes that lease back without asking.
  Where the routes cannot be added, Dask's own ``semaphore_acquire``/``semaphore_release``
  are used, a release sent at once without waiting for the answer.
- Decaying slots (``rate_limit``): the time at which everything taken so far will have
  decayed is kept in the scheduler's metadata (``["braid-rate", name]``, wall-clock
  seconds), read and moved under a ``distributed.Lock`` ``braid-rate-<name>``: four
  round trips per call; the caller then sleeps its turn.

A name first registered with one limit keeps it on that scheduler; a different value
raises ``LimitRedeclared`` while any slot of it is held (an idle name is re-registered
with the new value).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections.abc import Hashable, Sequence

from braid import errors
from braid.concurrency.backend import (
    LimitsHandle,
    rate_delay,
    register_backend,
    unregister_backend,
)
from braid.concurrency.deferred import DeferredReleases
from braid.concurrency.limits import Limit, LimitTable

__all__ = ["FLUSH_SECONDS", "DaskLimits", "connect"]

KIND = "dask"
#: the longest a release waits for an acquire to travel with
FLUSH_SECONDS = 0.005
_ACQUIRE = "braid_semaphore_acquire_v1"  # versioned: a scheduler may serve several braids
_RELEASE = "braid_semaphore_release_v1"
logger = logging.getLogger("braid.concurrency")


def _distributed():
    try:
        import distributed
    except ImportError as exc:
        raise errors.MissingExtraError(
            "Dask limits need dask.distributed: pip install 'braid-flow[dask]'"
        ) from exc
    return distributed


def _routes_installer():
    """The function ``run_on_scheduler`` runs to add braid's two routes; made here so that
    cloudpickle sends it by value (a nested function), not by a reference to braid."""

    def install(dask_scheduler):
        import inspect

        handlers = dask_scheduler.handlers
        if _ACQUIRE in handlers:
            return True
        semaphores = dask_scheduler.extensions["semaphores"]

        async def give_back(name, lease_ids):
            for lease_id in lease_ids:
                done = semaphores.release(name=name, lease_id=lease_id)
                if inspect.isawaitable(done):
                    await done

        async def acquire(name=None, timeout=None, lease_id=None, released=(), max_leases=0):
            if released:
                await give_back(name, released)
            granted = await semaphores.acquire(name=name, timeout=timeout, lease_id=lease_id)
            return granted, semaphores.get_value(name=name) >= max_leases

        async def release(name=None, lease_ids=()):
            await give_back(name, lease_ids)

        handlers[_ACQUIRE] = acquire
        handlers[_RELEASE] = release
        return True

    return install


def _lease_timeout() -> float | None:
    import dask
    from dask.utils import parse_timedelta

    value = dask.config.get("distributed.scheduler.locks.lease-timeout")
    return None if value == "inf" else parse_timedelta(value, "s")


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
        self._registered: dict[str, tuple[Limit, str]] = {}
        self._held: dict[str, dict[str, None]] = {}  # semaphore -> lease ids held here
        # semaphore -> when the scheduler last answered that it had room (absent: it was
        # full): until then + FLUSH_SECONDS a lease held back may be taken again here
        self._room: dict[str, float] = {}
        self._locks: dict[str, object] = {}  # made once: each new one costs a registration
        self._lease_ids = map(f"{uuid.uuid4().hex}-{{}}".format, itertools.count())
        self._routes: bool | None = None  # braid's routes on the scheduler (None: not tried)
        self.releases = DeferredReleases(self._send, FLUSH_SECONDS, "braid-limits-flush")
        self._lease_timeout = _lease_timeout()
        self._refresh = None
        if self._lease_timeout is not None:
            from tornado.ioloop import PeriodicCallback

            self._refresh = PeriodicCallback(self._refresh_leases, self._lease_timeout / 5 * 1e3)
            client.loop.add_callback(self._refresh.start)
        register_backend(KIND, self._address, self)

    def handle(self, limits: LimitTable | None = None) -> LimitsHandle:
        """Return a handle every process with access to the scheduler can use."""
        return LimitsHandle(KIND, self._address, limits)

    # -- the scheduler's semaphores ------------------------------------------------------------
    def _semaphore(self, name: str, limit: Limit) -> str:
        """Register the semaphore of ``name`` with ``limit`` (once) and return its name."""
        known = self._registered.get(name)  # (limit, semaphore)
        if known is not None and (known[0] is limit or known[0].limit == limit.limit):
            return known[1]
        semaphore = f"braid-limit-{name}"
        sync, scheduler = self._client.sync, self._client.scheduler
        for lease_id in self.releases.take(semaphore, semaphore):  # the name may be idle
            sync(scheduler.semaphore_release, name=semaphore, lease_id=lease_id)

        def register() -> None:
            sync(
                scheduler.semaphore_register,
                name=semaphore,
                max_leases=limit.limit,
                lease_timeout=self._lease_timeout,
            )

        try:
            register()
        except ValueError as exc:  # registered on the scheduler with another max_leases
            if sync(scheduler.semaphore_value, name=semaphore):
                raise errors.LimitRedeclared(
                    f"concurrency limit {name!r} is in use on the Dask scheduler "
                    f"{self._address} with another limit; it cannot be {limit!r} at the same "
                    "time"
                ) from exc
            sync(scheduler.semaphore_close, name=semaphore)  # idle: take the new value
            register()
        self._registered[name] = (limit, semaphore)
        return semaphore

    def _has_routes(self) -> bool:
        if self._routes is None:
            try:
                self._routes = bool(self._client.run_on_scheduler(_routes_installer()))
            except Exception:  # noqa: BLE001 - e.g. run_function blocked: Dask's own routes
                logger.info(
                    "cannot add braid's semaphore routes to the Dask scheduler %s; releases "
                    "are sent one by one",
                    self._address,
                    exc_info=True,
                )
                self._routes = False
        return self._routes

    def _lease(self, semaphore: str, limit: Limit, timeout: float | None) -> str | None:
        """One lease of ``semaphore``, or None after ``timeout``: one round trip; or none,
        taking back a lease given back here and not yet sent, while the scheduler's last
        answer (that the semaphore had room) is under ``FLUSH_SECONDS`` old."""
        if time.monotonic() - self._room.get(semaphore, -FLUSH_SECONDS) < FLUSH_SECONDS:
            lease_id = self.releases.take_one(semaphore, semaphore)
            if lease_id is not None:
                with self._lock:
                    self._held.setdefault(semaphore, {})[lease_id] = None
                return lease_id
        lease_id = next(self._lease_ids)
        scheduler = self._client.scheduler
        routes = self._routes if self._routes is not None else self._has_routes()
        released = self.releases.take(semaphore, semaphore) if routes else []
        try:
            if routes:
                granted, full = self._client.sync(
                    getattr(scheduler, _ACQUIRE),
                    name=semaphore,
                    timeout=timeout,
                    lease_id=lease_id,
                    released=released,
                    max_leases=limit.limit,
                )
            else:
                granted = self._client.sync(
                    scheduler.semaphore_acquire, name=semaphore, timeout=timeout, lease_id=lease_id
                )
                full = True
        except BaseException:
            # interrupted or failed: the lease may have been granted, the releases not sent
            self._send(semaphore, [*released, lease_id])
            raise
        with self._lock:
            if granted and not full:
                self._room[semaphore] = time.monotonic()
            else:
                self._room.pop(semaphore, None)
            if granted:
                self._held.setdefault(semaphore, {})[lease_id] = None
        return lease_id if granted else None

    def acquire(
        self, name: str, limit: Limit, occupy: int, timeout: float | None
    ) -> Hashable | None:
        """Take ``occupy`` leases of the semaphore ``braid-limit-<name>``."""
        semaphore = self._semaphore(name, limit)
        if occupy == 1:
            lease = self._lease(semaphore, limit, timeout)
            return None if lease is None else (semaphore, (lease,))
        deadline = None if timeout is None else time.monotonic() + timeout
        gate = self._named_lock(f"braid-limit-{name}-gate")
        if not gate.acquire(timeout=timeout):
            return None
        taken: list[str] = []
        try:
            while len(taken) < occupy:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                lease = self._lease(semaphore, limit, left)
                if lease is None:
                    break
                taken.append(lease)
        finally:
            gate.release()
            if len(taken) < occupy:
                self.release(name, (semaphore, tuple(taken)))
        return (semaphore, tuple(taken)) if len(taken) == occupy else None

    def release(self, name: str, token: Hashable) -> None:
        """Give the leases back without waiting for the scheduler: with this process's next
        acquire of the same limit, or within ``FLUSH_SECONDS``; at once if the limit was
        full."""
        semaphore, leases = token
        with self._lock:
            held = self._held.get(semaphore, {})
            mine = [lease for lease in leases if held.pop(lease, 0) is None]
            now = not self._routes or semaphore not in self._room
        if not mine:
            return
        if now:
            self._send(semaphore, mine)
            return
        for lease in mine:
            self.releases.defer(semaphore, semaphore, lease)

    def _send(self, semaphore: object, leases: Sequence[Hashable]) -> None:
        """Send releases of ``leases`` without waiting (from any thread)."""
        self._client.loop.add_callback(self._release_now, semaphore, list(leases))

    async def _release_now(self, semaphore: str, leases: list[str]) -> None:
        scheduler = self._client.scheduler
        try:
            if self._routes:
                await getattr(scheduler, _RELEASE)(name=semaphore, lease_ids=leases, reply=False)
            else:
                for lease in leases:
                    await scheduler.semaphore_release(name=semaphore, lease_id=lease, reply=False)
        except Exception:  # noqa: BLE001 - unsent, the leases expire on the scheduler
            logger.warning("could not give back %d slot(s) of %s", len(leases), semaphore)

    async def _refresh_leases(self) -> None:
        with self._lock:
            held = [(s, list(leases)) for s, leases in self._held.items() if leases]
        for semaphore, leases in held:
            try:
                await self._client.scheduler.semaphore_refresh_leases(
                    name=semaphore, lease_ids=leases
                )
            except Exception:  # noqa: BLE001 - tried again next period
                logger.debug("refreshing leases of %s failed", semaphore, exc_info=True)

    # -- rate limits ---------------------------------------------------------------------------
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
        """Give back every slot held here and everything not sent yet (waiting for the
        sends, at most 10 s), stop refreshing, and close the client if this object opened
        it."""
        unregister_backend(KIND, self._address, self)
        pending = self.releases.close()
        with self._lock:
            held, self._held = self._held, {}
            locks, self._locks = list(self._locks.values()), {}
        leases: dict[object, list] = {}
        for semaphore, tokens in pending:
            leases.setdefault(semaphore, []).extend(tokens)
        for semaphore, ids in held.items():
            leases.setdefault(semaphore, []).extend(ids)

        async def send_all() -> None:
            for semaphore, ids in leases.items():
                if ids:
                    await self._release_now(semaphore, ids)

        if leases:
            try:
                self._client.sync(send_all, callback_timeout=10)
            except Exception:  # noqa: BLE001 - the scheduler frees them at the lease time-out
                logger.debug("giving back slots on close failed", exc_info=True)
        if self._refresh is not None:
            self._refresh.stop()
        for lock in locks:
            lock.refresh_callback.stop()
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
