"""braid: flows of tasks on a swappable task runner (threads, processes, Dask, Ray).

``import braid`` needs only the standard library and cloudpickle; the Dask and Ray
runners are imported when first used (``braid.DaskTaskRunner``).
"""

from __future__ import annotations

from typing import Any

from braid import errors
from braid.core.annotations import allow_failure, quote, unmapped
from braid.core.context import get_run_context, get_run_logger, tags
from braid.core.contract import Capabilities
from braid.core.flows import Flow, flow
from braid.core.futures import FutureList, TaskFuture, as_completed, wait
from braid.core.runner import Run, TaskRunner
from braid.core.states import State, StateType
from braid.core.tasks import Task, task
from braid.runners.processes import ProcessPoolTaskRunner
from braid.runners.registry import lazy_names
from braid.runners.threads import ThreadPoolTaskRunner

__version__ = "0.1.0"

__all__ = [
    "Capabilities",
    "Flow",
    "FutureList",
    "ProcessPoolTaskRunner",
    "State",
    "StateType",
    "Run",
    "Task",
    "TaskFuture",
    "TaskRunner",
    "ThreadPoolTaskRunner",
    "allow_failure",
    "as_completed",
    "errors",
    "flow",
    "get_run_context",
    "get_run_logger",
    "quote",
    "tags",
    "task",
    "unmapped",
    "wait",
]

#: names whose module is imported on first use: the runners that need an extra, and what
#: Prefect users import from the top level although its home is elsewhere
_LAZY = {
    **lazy_names(),
    "get_dask_client": "braid.adapters.dask",
    "get_async_dask_client": "braid.adapters.dask",
    "remote_options": "braid.adapters.ray",
    "Transaction": "braid.transactions",
    "transaction": "braid.transactions",
}


#: submodules ``braid.<name>`` imports on first access (``import braid; braid.runtime``)
_SUBMODULES = frozenset(
    {
        "runtime",
        "states",
        "futures",
        "context",
        "tasks",
        "flows",
        "task_runners",
        "cache_policies",
        "results",
        "transactions",
        "concurrency",
        "filesystems",
        "utilities",
    }
)


def __getattr__(name: str) -> Any:
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f"braid.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'braid' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*__all__, *_LAZY])
