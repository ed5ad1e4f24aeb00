"""Tasks (Prefect's ``prefect.tasks``): ``task``, ``Task``, ``exponential_backoff`` and
``task_input_hash`` (whose home is :mod:`braid.cache_policies`)."""

from __future__ import annotations

from braid.cache_policies import task_input_hash
from braid.core.tasks import Task, exponential_backoff, task

__all__ = ["Task", "exponential_backoff", "task", "task_input_hash"]
