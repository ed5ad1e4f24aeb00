"""Futures of task runs (Prefect's ``prefect.futures``; ``PrefectFuture`` is ``TaskFuture``,
``PrefectFutureList`` is ``FutureList``).  The names live in :mod:`braid.core.futures`."""

from __future__ import annotations

from braid.core.futures import DoneAndNotDone, FutureList, TaskFuture, as_completed, wait

__all__ = ["DoneAndNotDone", "FutureList", "TaskFuture", "as_completed", "wait"]
