"""Limits on a Ray cluster: one named actor per limit, shared by every driver.

::

    driver / any worker                       Ray cluster
    RayLimits ── acquire (1 round trip) ───► actor "braid-limit-<name>"
              ── release (no wait) ────────►   (namespace "braid", detached, 0 CPU)
              ── reserve_rate (1 round trip)►   leases {id: (slots, expiry)}, decay time
    renewal thread ── renew every lease/3 ─►

The actor is created by the first process that needs it (``get_if_exists``) and lives
detached, so two flows, or two drivers, on one cluster share a limit of the same name.
Each slot held is a lease that expires ``lease_seconds`` (default 30 s) after its last
renewal; a thread in the holding process renews its leases every third of that while it
holds any.  A worker or driver that dies stops renewing, and its slots come back within
``lease_seconds``.  The actor keeps its counts in memory: if its node dies, the limit
starts afresh empty.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Hashable

from braid import errors
from braid.concurrency.backend import (
    LimitsHandle,
    rate_delay,
    register_backend,
    unregister_backend,
)
from braid.concurrency.limits import Limit, LimitTable

__all__ = ["RayLimits", "connect"]

KIND = "ray"
NAMESPACE = "braid"


class LimitActor:
    """The state of one limit on the cluster (run as an async Ray actor)."""

    def __init__(self, limit: int, decay: float) -> None:
        self.limit, self.decay = limit, decay
        self.leases: dict[str, tuple[int, float]] = {}
        self.tat = 0.0
        self.changed: asyncio.Condition | None = None

    def _expire(self, now: float) -> float | None:
        """Drop expired leases; return when the next one expires."""
        gone = [lease for lease, (_, until) in self.leases.items() if until <= now]
        for lease in gone:
            del self.leases[lease]
        if gone and self.changed is not None:
            self.changed.notify_all()
        return min((until for _, until in self.leases.values()), default=None)

    def configure(self, limit: int, decay: float) -> tuple[int, float]:
        """Adopt (limit, decay) if nothing is held or decaying; return the values in force."""
        now = time.monotonic()
        self._expire(now)
        if not self.leases and self.tat <= now:
            self.limit, self.decay = limit, decay
        return self.limit, self.decay

    async def acquire(
        self, lease: str, occupy: int, timeout: float | None, lease_seconds: float
    ) -> bool:
        """Record ``lease`` for ``occupy`` slots once they fit; False after ``timeout``."""
        if self.changed is None:
            self.changed = asyncio.Condition()
        deadline = None if timeout is None else time.monotonic() + timeout
        async with self.changed:
            while True:
                now = time.monotonic()
                next_expiry = self._expire(now)
                if sum(n for n, _ in self.leases.values()) + occupy <= self.limit:
                    self.leases[lease] = (occupy, now + lease_seconds)
                    return True
                waits = [t - now for t in (deadline, next_expiry) if t is not None]
                if deadline is not None and deadline <= now:
                    return False
                try:
                    await asyncio.wait_for(self.changed.wait(), min(waits) if waits else None)
                except asyncio.TimeoutError:
                    pass

    async def release(self, lease: str) -> None:
        """Forget ``lease`` and wake waiters."""
        if self.leases.pop(lease, None) is not None and self.changed is not None:
            async with self.changed:
                self.changed.notify_all()

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
        self._held: dict[str, tuple[object, str]] = {}  # lease -> (actor, name)
        self._renewer: threading.Thread | None = None
        register_backend(KIND, self._key, self)

    def handle(self, limits: LimitTable | None = None) -> LimitsHandle:
        """Return a handle every process connected to this Ray cluster can use."""
        return LimitsHandle(KIND, self._key, limits)

    def _actor(self, name: str, limit: Limit):
        with self._lock:
            known = self._actors.get(name)
        if known is not None and known[0] == limit:
            return known[1]
        actor = self._remote.options(
            name=f"braid-limit-{name}",
            namespace=self._namespace,
            get_if_exists=True,
            lifetime="detached",
            num_cpus=0,
        ).remote(limit.limit, limit.slot_decay_per_second)
        actual = self._ray.get(actor.configure.remote(limit.limit, limit.slot_decay_per_second))
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
        """Take a lease of ``occupy`` slots from the actor (one round trip)."""
        actor = self._actor(name, limit)
        lease = uuid.uuid4().hex
        with self._lock:  # renewed from now on, in case the grant comes just at the end
            self._held[lease] = (actor, name)
            self._start_renewer()
        try:
            granted = self._ray.get(
                actor.acquire.remote(lease, occupy, timeout, self._lease_seconds)
            )
        except BaseException:
            self.release(name, lease)
            raise
        if not granted:
            with self._lock:
                self._held.pop(lease, None)
            return None
        return lease

    def release(self, name: str, token: Hashable) -> None:
        """Give the lease back (sent without waiting for the actor)."""
        with self._lock:
            held = self._held.pop(token, None)
            self._lock.notify_all()
        if held is not None:
            held[0].release.remote(token)

    def reserve_rate(
        self, name: str, limit: Limit, occupy: int, max_wait: float | None
    ) -> float | None:
        """Take decaying slots from the actor (one round trip); return the wait."""
        return self._ray.get(self._actor(name, limit).reserve_rate.remote(occupy, max_wait))

    def _start_renewer(self) -> None:
        if self._renewer is None or not self._renewer.is_alive():
            self._renewer = threading.Thread(
                target=self._renew, daemon=True, name="braid-limits-renew"
            )
            self._renewer.start()

    def _renew(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: not self._held, timeout=self._lease_seconds / 3)
                if not self._held:
                    self._renewer = None
                    return
                by_actor: dict[int, tuple[object, list[str]]] = {}
                for lease, (actor, _) in self._held.items():
                    by_actor.setdefault(id(actor), (actor, []))[1].append(lease)
            for actor, leases in by_actor.values():
                actor.renew.remote(leases, self._lease_seconds)

    def remove(self, name: str) -> None:
        """End the actor of ``name`` on the cluster (its slots and decay go with it)."""
        with self._lock:
            self._actors.pop(name, None)
        try:
            actor = self._ray.get_actor(f"braid-limit-{name}", namespace=self._namespace)
        except ValueError:
            return
        self._ray.kill(actor)

    def close(self) -> None:
        """Give back every lease held here and stop renewing (actors stay on the cluster)."""
        unregister_backend(KIND, self._key, self)
        with self._lock:
            held, self._held = self._held, {}
            self._lock.notify_all()
            renewer = self._renewer
        for lease, (actor, _) in held.items():
            actor.release.remote(lease)
        if renewer is not None:
            renewer.join()


def connect(handle: LimitsHandle) -> RayLimits:
    """Return limits on the Ray cluster this process is connected to, with the handle's
    namespace and lease time."""
    namespace, lease_seconds = handle.key
    return RayLimits(lease_seconds, namespace)
