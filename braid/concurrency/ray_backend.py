"""Limits on a Ray cluster: one named actor per limit, shared by every driver.

::

    driver / any worker                        Ray cluster
    RayLimits ── acquire (1 round trip) ─────► actor "braid-limit-<name>"
              │    carrying the releases         (namespace "braid", detached, 0 CPU)
              │    not sent yet                  leases {id: (slots, expiry)}, decay time
              ── reserve_rate (1 round trip) ─►
    renewal thread ── renew every lease/3 ──►
    flush thread ── releases no request took
                    along (FLUSH_SECONDS) ───►

The actor is created by the first process that needs it (``get_if_exists``) and lives
detached, so two flows, or two drivers, on one cluster share a limit of the same name.
Each slot held is a lease that expires ``lease_seconds`` (default 30 s) after its last
renewal; a thread in the holding process renews its leases every third of that while it
holds any.  A worker or driver that dies stops renewing, and its slots come back within
``lease_seconds``.  The actor keeps its counts in memory: if its node dies, the limit
starts afresh empty.

A slot costs one round trip at most: a release is not sent on its own at once but
travels with this process's next request to the same actor (``braid.concurrency.deferred``).
Until it is sent the actor still counts the slot, so while the actor's last answer (that
the limit had room) is under ``FLUSH_SECONDS`` old, the next one-slot request here takes
that lease back without asking at all.  A release that no request takes within
``FLUSH_SECONDS`` is sent on its own; and when the actor's last answer said the limit was
full or someone was waiting, a release is sent at once, so a contended limit hands its
slots on without that delay.
"""

from __future__ import annotations

import asyncio
import itertools
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

__all__ = ["FLUSH_SECONDS", "RayLimits", "connect"]

KIND = "ray"
NAMESPACE = "braid"
#: the longest a release waits for a request to travel with
FLUSH_SECONDS = 0.005
# what the actor's acquire answers
_REFUSED, _GRANTED, _GRANTED_FULL = 0, 1, 2


class LimitActor:
    """The state of one limit on the cluster (run as an async Ray actor)."""

    def __init__(self, limit: int, decay: float) -> None:
        self.limit, self.decay = limit, decay
        self.leases: dict[str, tuple[int, float]] = {}
        self.held = 0  # slots of the leases, summed
        self.waiting = 0
        self.tat = 0.0
        self.changed: asyncio.Condition | None = None

    def _drop(self, leases: Sequence[str]) -> int:
        """Forget ``leases``; return how many slots came back."""
        gone = 0
        for lease in leases:
            entry = self.leases.pop(lease, None)
            if entry is not None:
                gone += entry[0]
        self.held -= gone
        return gone

    async def _wake_waiters(self) -> None:
        if self.waiting and self.changed is not None:
            async with self.changed:
                self.changed.notify_all()

    def _expire(self, now: float) -> float | None:
        """Drop expired leases; return when the next one expires (a waiter wakes by then
        on its own)."""
        self._drop([lease for lease, (_, until) in self.leases.items() if until <= now])
        return min((until for _, until in self.leases.values()), default=None)

    async def configure(
        self, limit: int, decay: float, released: Sequence[str] = ()
    ) -> tuple[int, float]:
        """Forget the ``released`` leases, then adopt (limit, decay) if nothing is held or
        decaying; return the values in force."""
        if released and self._drop(released):
            await self._wake_waiters()
        now = time.monotonic()
        self._expire(now)
        if not self.leases and self.tat <= now:
            self.limit, self.decay = limit, decay
        return self.limit, self.decay

    def _grant(self, lease: str, occupy: int, until: float) -> int:
        self.leases[lease] = (occupy, until)
        self.held += occupy
        return _GRANTED_FULL if self.waiting or self.held >= self.limit else _GRANTED

    async def acquire(self, request: tuple[str, int, float | None, float, Sequence[str]]) -> int:
        """Given (lease, occupy, timeout, lease_seconds, released) — one argument: Ray
        serializes each argument on its own — forget the ``released`` leases, then record
        ``lease`` for ``occupy`` slots once they fit, for ``lease_seconds``: answers 0 after
        ``timeout``, 2 if granted with the limit now full or others waiting, else 1."""
        lease, occupy, timeout, lease_seconds, released = request
        if released and self._drop(released):
            await self._wake_waiters()
        now = time.monotonic()
        if self.held + occupy <= self.limit:  # the common case: no waiting, no scan
            return self._grant(lease, occupy, now + lease_seconds)
        if self.changed is None:
            self.changed = asyncio.Condition()
        deadline = None if timeout is None else now + timeout
        self.waiting += 1
        try:
            async with self.changed:
                while True:
                    now = time.monotonic()
                    next_expiry = self._expire(now)
                    if self.held + occupy <= self.limit:
                        break
                    if deadline is not None and deadline <= now:
                        return _REFUSED
                    waits = [t - now for t in (deadline, next_expiry) if t is not None]
                    try:
                        await asyncio.wait_for(self.changed.wait(), min(waits) if waits else None)
                    except asyncio.TimeoutError:
                        pass
        finally:
            self.waiting -= 1
        # no await since the check: the slots are still free
        return self._grant(lease, occupy, now + lease_seconds)

    async def release(self, leases: Sequence[str]) -> None:
        """Forget ``leases`` and wake waiters."""
        if self._drop(leases):
            await self._wake_waiters()

    def renew(self, leases: list[str], lease_seconds: float) -> None:
        """Push back the expiry of every lease still held."""
        until = time.monotonic() + lease_seconds
        for lease in leases:
            if lease in self.leases:
                self.leases[lease] = (self.leases[lease][0], until)

    def reserve_rate(self, occupy: int, max_wait: float | None) -> float | None:
        """Take decaying slots; return the caller's wait, or None (nothing taken)."""
        now = time.monotonic()
        delay, tat = rate_delay(self.tat, now, Limit(self.limit, self.decay), occupy)
        if max_wait is not None and delay > max_wait:
            return None
        self.tat = tat
        return delay


def _ray():
    try:
        import ray
    except ImportError as exc:
        raise errors.MissingExtraError(
            "Ray limits need Ray: pip install 'braid-flow[ray]'"
        ) from exc
    if not ray.is_initialized():
        raise errors.LimitsUnavailable(
            "Ray limits need a connected Ray (ray.init, or a RayTaskRunner in this flow)"
        )
    return ray


class RayLimits:
    """Limits kept by one actor per name on the Ray cluster this process is connected to;
    slots held here are leases renewed by a thread of this process."""

    kind = KIND
    in_process = False

    def __init__(self, lease_seconds: float = 30.0, namespace: str = NAMESPACE) -> None:
        if not lease_seconds > 0:
            raise errors.InvalidLimit(f"lease_seconds={lease_seconds!r}: expected > 0")
        self._ray = _ray()
        self._remote = self._ray.remote(LimitActor)
        self._key = (namespace, float(lease_seconds))
        self._lease_seconds = float(lease_seconds)
        self._namespace = namespace
        self._lock = threading.Condition()
        self._actors: dict[str, tuple[Limit, object]] = {}
        self._held: dict[str, tuple[object, str, int]] = {}  # lease -> (actor, name, slots)
        # name -> when the actor last answered that the limit had room (absent: it was full
        # or contended): until then + FLUSH_SECONDS a slot held back may be taken again here
        self._room: dict[str, float] = {}
        self._lease_ids = map(f"{uuid.uuid4().hex}-{{}}".format, itertools.count())
        self.releases = DeferredReleases(self._send, FLUSH_SECONDS, "braid-limits-flush")
        self._renewer: threading.Thread | None = None
        self._closed = False
        register_backend(KIND, self._key, self)

    def handle(self, limits: LimitTable | None = None) -> LimitsHandle:
        """Return a handle every process connected to this Ray cluster can use."""
        return LimitsHandle(KIND, self._key, limits)

    def _actor(self, name: str, limit: Limit):
        known = self._actors.get(name)
        if known is not None and (known[0] is limit or known[0] == limit):
            return known[1]
        actor = self._remote.options(
            name=f"braid-limit-{name}",
            namespace=self._namespace,
            get_if_exists=True,
            lifetime="detached",
            num_cpus=0,
        ).remote(limit.limit, limit.slot_decay_per_second)
        released = self.releases.take(name, actor)  # they count: the name may be idle
        actual = self._ray.get(
            actor.configure.remote(limit.limit, limit.slot_decay_per_second, released)
        )
        if tuple(actual) != (limit.limit, limit.slot_decay_per_second):
            raise errors.LimitRedeclared(
                f"concurrency limit {name!r} is in use on this Ray cluster as "
                f"{Limit(*actual)!r}; it cannot be {limit!r} at the same time"
            )
        with self._lock:
            self._actors[name] = (limit, actor)
        return actor

    def acquire(
        self, name: str, limit: Limit, occupy: int, timeout: float | None
    ) -> Hashable | None:
        """Take a lease of ``occupy`` slots from the actor (one round trip, carrying this
        process's releases of ``name`` not sent yet); or, for one slot, take back a lease
        given back here and not yet sent, while the actor's last answer (that the limit had
        room) is under ``FLUSH_SECONDS`` old: no round trip."""
        actor = self._actor(name, limit)
        if occupy == 1 and time.monotonic() - self._room.get(name, -FLUSH_SECONDS) < FLUSH_SECONDS:
            lease = self.releases.take_one(name, actor)
            if lease is not None:
                self._hold(lease, actor, name, 1)
                return lease
        lease = next(self._lease_ids)
        self._hold(lease, actor, name, occupy)  # renewed from now on: the grant may be late
        released = self.releases.take(name, actor)
        try:
            answer = self._ray.get(
                actor.acquire.remote((lease, occupy, timeout, self._lease_seconds, released))
            )
        except BaseException:
            if released:  # they may not have arrived: send them again (a repeat is harmless)
                self._send(actor, released)
            self.release(name, lease)
            raise
        with self._lock:
            if answer == _GRANTED:
                self._room[name] = time.monotonic()
            else:
                self._room.pop(name, None)
            if answer == _REFUSED:
                self._held.pop(lease, None)
                return None
        return lease

    def _hold(self, lease: str, actor: object, name: str, occupy: int) -> None:
        with self._lock:
            if self._closed:
                self.releases.defer(name, actor, lease)  # closed: sent at once
                raise errors.LimitsUnavailable("these Ray limits were closed")
            self._held[lease] = (actor, name, occupy)
            if self._renewer is None:
                self._renewer = threading.Thread(
                    target=self._renew, daemon=True, name="braid-limits-renew"
                )
                self._renewer.start()

    def release(self, name: str, token: Hashable) -> None:
        """Give the lease back: with this process's next request to the same actor, or
        within ``FLUSH_SECONDS``; at once if the limit was full or contended."""
        with self._lock:
            held = self._held.pop(token, None)
            if held is None:
                return
            wait = held[2] == 1 and name in self._room
        if wait:
            self.releases.defer(name, held[0], token)
        else:
            self._send(held[0], [token])

    def _send(self, actor: object, leases: list[Hashable]) -> None:
        actor.release.remote(list(leases))

    def reserve_rate(
        self, name: str, limit: Limit, occupy: int, max_wait: float | None
    ) -> float | None:
        """Take decaying slots from the actor (one round trip); return the wait."""
        return self._ray.get(self._actor(name, limit).reserve_rate.remote(occupy, max_wait))

    def _renew(self) -> None:
        """Renew the leases held here every third of their time; end once nothing has been
        held for that long, or closed."""
        every = self._lease_seconds / 3
        idle_since: float | None = None
        while True:
            with self._lock:
                self._lock.wait(every)
                now = time.monotonic()
                if self._closed:
                    return
                if not self._held:
                    idle_since = now if idle_since is None else idle_since
                    if now - idle_since >= every:
                        self._renewer = None
                        return
                    continue
                idle_since = None
                by_actor: dict[int, tuple[object, list[str]]] = {}
                for lease, (actor, _, _) in self._held.items():
                    by_actor.setdefault(id(actor), (actor, []))[1].append(lease)
            for actor, leases in by_actor.values():
                actor.renew.remote(leases, self._lease_seconds)

    def remove(self, name: str) -> None:
        """End the actor of ``name`` on the cluster (its slots and decay go with it)."""
        with self._lock:
            known = self._actors.pop(name, None)
        if known is not None:
            self.releases.take(name, known[1])  # nothing to send to an actor that ends
        try:
            actor = self._ray.get_actor(f"braid-limit-{name}", namespace=self._namespace)
        except ValueError:
            return
        self._ray.kill(actor)

    def close(self) -> None:
        """Give back every lease held here, send every release not sent yet, and stop the
        threads (actors stay on the cluster)."""
        unregister_backend(KIND, self._key, self)
        pending = self.releases.close()
        with self._lock:
            self._closed = True
            held, self._held = self._held, {}
            self._lock.notify_all()
            renewer, self._renewer = self._renewer, None
        by_actor: dict[int, tuple[object, list[Hashable]]] = {}
        for actor, leases in pending:
            by_actor.setdefault(id(actor), (actor, []))[1].extend(leases)
        for lease, (actor, _, _) in held.items():
            by_actor.setdefault(id(actor), (actor, []))[1].append(lease)
        for actor, leases in by_actor.values():
            self._send(actor, leases)
        if renewer is not None:
            renewer.join()


def connect(handle: LimitsHandle) -> RayLimits:
    """Return limits on the Ray cluster this process is connected to, with the handle's
    namespace and lease time."""
    namespace, lease_seconds = handle.key
    return RayLimits(lease_seconds, namespace)
