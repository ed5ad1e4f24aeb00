"""The Ray runner under ``prefect_ray.task_runners``' module name: ``RayTaskRunner`` and
``RayTaskFuture``."""

from __future__ import annotations

from braid.adapters.ray.future import RayTaskFuture
from braid.adapters.ray.runner import RayTaskRunner

__all__ = ["RayTaskFuture", "RayTaskRunner"]
