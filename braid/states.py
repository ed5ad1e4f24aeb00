"""States of runs and their constructors (Prefect's ``prefect.states``): ``Completed``,
``Failed``, ``Crashed``, ``Cancelled``, ``Pending`` and ``Running`` take ``message=``,
``name=`` (a custom state name) and ``data=``."""

from __future__ import annotations

from braid.core.states import (
    Cancelled,
    Completed,
    Crashed,
    Failed,
    Pending,
    Running,
    State,
    StateType,
    TimedOut,
)

__all__ = [
    "Cancelled",
    "Completed",
    "Crashed",
    "Failed",
    "Pending",
    "Running",
    "State",
    "StateType",
    "TimedOut",
]
