"""Runs whose worker stopped answering: the driver's bound on a task's ``timeout_seconds``.

The engine enforces a task's time-out on the worker.  A worker that no longer runs
anything (frozen, cut off, its machine gone) cannot, and the cluster may keep the task
assigned to it until it declares the worker dead (Dask's worker TTL, Ray's health
checks), or for ever.  So a run with a time-out announces where it starts (Dask: an
event; Ray: a call to a small actor next to the driver), and the driver keeps a
deadline for it: the longest its attempts may take (time-outs and retry delays) plus
:data:`GRACE`.  A run still not final then ends FAILED ``TimedOut`` at the driver,
naming the worker, and the runner cancels its task on the cluster (its dependents
end ``UpstreamFailed``).  Shared by the Dask and Ray runners; imports no backend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from braid.core.timers import Timer

__all__ = ["GRACE", "time_limit", "overdue_timer"]

#: what the driver adds to a run's own limit before it stops waiting for the worker:
#: the header's trip back, a worker under load
GRACE = 3.0


def time_limit(task: Any) -> float | None:
    """The longest a run of ``task`` may take on its worker (every attempt and retry
    delay, jitter included), or None when it has no time-out or no known bound."""
    timeout = getattr(task, "timeout_seconds", None)
    if timeout is None:
        return None
    retries = task.retries or 0
    delays = task.retry_delay_seconds
    if callable(delays):
        try:
            delays = delays(retries)
        except Exception:  # noqa: BLE001 - no bound known: the engine's limit only
            return None
    if isinstance(delays, (list, tuple)):
        waits = (
            sum(float(delays[min(i, len(delays) - 1)]) for i in range(retries)) if delays else 0.0
        )
    else:
        waits = retries * float(delays or 0)
    waits *= 1 + float(task.retry_jitter_factor or 0)
    return (retries + 1) * float(timeout) + waits


def overdue_timer(on_overdue: Callable[[Any], object]) -> Timer[Any]:
    """The timer calling ``on_overdue(item)`` for runs still out at their deadline; stop
    it with the runner (``stop(5)``)."""
    return Timer(on_overdue, "braid-overdue-runs")
