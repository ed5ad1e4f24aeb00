"""Task runners (Prefect's ``prefect.task_runners``).  The Dask and Ray runners live in
:mod:`braid.adapters.dask` and :mod:`braid.adapters.ray`."""

from __future__ import annotations

from braid.core.runner import TaskRunner
from braid.runners.processes import ProcessPoolTaskRunner
from braid.runners.threads import ThreadPoolTaskRunner

__all__ = ["ProcessPoolTaskRunner", "TaskRunner", "ThreadPoolTaskRunner"]
