"""Async ``concurrency`` and ``rate_limit`` (Prefect's ``prefect.concurrency.asyncio``).

Same contract as ``braid.concurrency.sync``.  A wait for slots runs in a thread of the
event loop's default executor so the loop keeps running; if the awaiting task is
cancelled, slots granted afterwards are given back at once.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from braid.concurrency.backend import (
    Lease,
    current_backend,
    hold_slots,
    reserve_rate,
    resolve_limits,
    timeout_error,
)

__all__ = ["concurrency", "rate_limit"]


def _in_process(backend: object) -> bool:
    return bool(getattr(backend, "in_process", False))


def _release_when_granted(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is None:
        lease: Lease | None = future.result()
        if lease is not None:
            lease.release()


@asynccontextmanager
async def concurrency(
    names: str | Sequence[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    strict: bool = False,
) -> AsyncIterator[None]:
    """Hold ``occupy`` slots of each named limit for the body of the ``async with`` block,
    and give them back however it exits (see ``braid.concurrency.sync.concurrency``)."""
    pairs = resolve_limits(names, occupy, strict=strict, rate=False)
    if not pairs:
        yield
        return
    backend = current_backend()
    # In-process slots are checked without blocking first, so an uncontended block needs
    # no thread; other backends are a network round trip, so they always wait in one.
    lease = hold_slots(backend, pairs, occupy, 0) if _in_process(backend) else None
    if lease is None and (timeout_seconds != 0 or not _in_process(backend)):
        waiting = asyncio.get_running_loop().run_in_executor(
            None, functools.partial(hold_slots, backend, pairs, occupy, timeout_seconds)
        )
        try:
            lease = await asyncio.shield(waiting)
        except asyncio.CancelledError:
            waiting.add_done_callback(_release_when_granted)
            raise
    if lease is None:
        raise timeout_error([n for n, _ in pairs], timeout_seconds, "concurrency")
    try:
        yield
    finally:
        lease.release()


async def rate_limit(
    names: str | Sequence[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    strict: bool = False,
) -> None:
    """Return once ``occupy`` decaying slots of each named limit are taken, sleeping on the
    event loop for the declared spacing (see ``braid.concurrency.sync.rate_limit``)."""
    pairs = resolve_limits(names, occupy, strict=strict, rate=True)
    if not pairs:
        return
    backend = current_backend()
    reserve = functools.partial(reserve_rate, backend, pairs, occupy, timeout_seconds)
    if _in_process(backend):
        delay = reserve()
    else:
        delay = await asyncio.get_running_loop().run_in_executor(None, reserve)
    if delay is None:
        raise timeout_error([n for n, _ in pairs], timeout_seconds, "rate_limit")
    if delay > 0:
        await asyncio.sleep(delay)
