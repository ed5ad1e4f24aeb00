"""Blocking ``concurrency`` and ``rate_limit`` (Prefect's ``prefect.concurrency.sync``).

Both find the limits in effect where they run: the handle a task run carries
(``use_limits``), or this process's own limits declared by flows or
``BRAID_CONCURRENCY_LIMITS``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from braid.concurrency.backend import (
    current_backend,
    hold_slots,
    reserve_rate,
    resolve_limits,
    timeout_error,
)

__all__ = ["concurrency", "rate_limit"]


@contextmanager
def concurrency(
    names: str | Sequence[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    strict: bool = False,
) -> Iterator[None]:
    """Hold ``occupy`` slots of each named limit for the body of the block, and give them
    back however it exits.

    Waits for the slots, at most ``timeout_seconds`` (None: no bound), then raises
    ``ConcurrencyTimeout`` holding nothing.  A name declared nowhere does not limit, or
    raises ``UndeclaredLimit`` with ``strict=True``.
    """
    pairs = resolve_limits(names, occupy, strict=strict, rate=False)
    if not pairs:
        yield
        return
    lease = hold_slots(current_backend(), pairs, occupy, timeout_seconds)
    if lease is None:
        raise timeout_error([n for n, _ in pairs], timeout_seconds, "concurrency")
    try:
        yield
    finally:
        lease.release()


def rate_limit(
    names: str | Sequence[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    strict: bool = False,
) -> None:
    """Return once ``occupy`` slots of each named limit are taken; they come back only by
    the limit's slot decay, so calls are spaced at the declared rate.

    Every named limit needs ``slot_decay_per_second > 0`` (else
    ``RateLimitWithoutDecay``).  If the wait would pass ``timeout_seconds``, raises
    ``ConcurrencyTimeout`` at once.  Undeclared names behave as in ``concurrency``.
    """
    pairs = resolve_limits(names, occupy, strict=strict, rate=True)
    if not pairs:
        return
    delay = reserve_rate(current_backend(), pairs, occupy, timeout_seconds)
    if delay is None:
        raise timeout_error([n for n, _ in pairs], timeout_seconds, "rate_limit")
    if delay > 0:
        time.sleep(delay)
