"""Ray options from braid's resource hints, and ``remote_options`` to set them around submits.

``remote_options`` is :func:`braid.core.resources.resources` under Ray's names, so
the hints it sets are the same ones the Dask runner reads and the same ones
``@task(resources={...})`` declares; the Ray runner turns whatever hints a call
carries into ``.options(num_cpus=..., num_gpus=..., memory=..., resources=...)``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from braid import errors
from braid.core import resources as core_resources
from braid.core.calls import TaskCall
from braid.core.resources import ResourceHints

__all__ = [
    "check_resources",
    "remote_options",
    "ray_options",
    "current_max_retries",
    "current_ray_options",
]

# Ray's own names for the resources remote_options takes as keywords; as custom
# resource names they would be refused by Ray at submit, far from the mistake.
_RESERVED = frozenset({"CPU", "GPU", "memory", "object_store_memory", "cpus", "gpus"})


#: ``remote_options(max_retries=...)`` of the submitting code; the Ray runner reads it at
#: submit (``check_call``) and keeps it with the call
_max_retries: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "braid_ray_max_retries", default=None
)


def current_max_retries() -> int | None:
    """The ``max_retries`` of the innermost ``remote_options`` block, or None."""
    return _max_retries.get()


#: any other Ray task option given to ``remote_options`` (``max_calls=``,
#: ``scheduling_strategy=``, ``runtime_env=``, ...); inner blocks win
_other: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "braid_ray_options", default=None
)

#: Ray task options braid sets itself: passing them would break how runs travel
_OWN = frozenset({"num_returns", "name", "retry_exceptions"})


def current_ray_options() -> dict[str, Any] | None:
    """The other Ray task options of the enclosing ``remote_options`` blocks, or None."""
    return _other.get()


@contextmanager
def remote_options(
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    memory: int | None = None,
    resources: Mapping[str, float] | None = None,
    max_retries: int | None = None,
    **ray_task_options: Any,
) -> Iterator[ResourceHints]:
    """Give every task submitted inside the block these Ray resources (inner values win).

    ``memory`` is in bytes; ``resources`` are custom resources such as
    ``{"accelerator": 1}``.  Values set here override the task's own
    ``@task(resources=...)`` hints; on other runners they are the same hints
    (the Dask runner reads them, local runners ignore them).  ``max_retries`` is how
    often Ray re-runs a task lost with its worker or node (a system failure, never an
    exception of the task), overriding ``RayTaskRunner(max_retries=...)``; other
    runners ignore it.
    """
    if max_retries is not None and (not isinstance(max_retries, int) or max_retries < -1):
        raise errors.ConfigurationError(
            f"remote_options: max_retries must be an int >= 0 (or -1: retry for ever), "
            f"got {max_retries!r}"
        )
    if not isinstance(resources, (Mapping, type(None))):
        raise errors.ConfigurationError(
            f"remote_options: resources must be a dict of custom resources, got {resources!r}"
        )
    custom = dict(resources or {})
    clash = sorted(set(custom) & _RESERVED)
    if clash:
        raise errors.ConfigurationError(
            f"remote_options: {clash} are not custom resources; use num_cpus=, num_gpus= "
            f"or memory= instead"
        )
    own = sorted(set(ray_task_options) & _OWN)
    if own:
        raise errors.ConfigurationError(
            f"remote_options: {own} are set by braid for every run and cannot be changed"
        )
    token = _max_retries.set(max_retries) if max_retries is not None else None
    other = None
    if ray_task_options:
        other = _other.set({**(_other.get() or {}), **ray_task_options})
    try:
        with core_resources.resources(
            cpus=num_cpus, gpus=num_gpus, memory=memory, **custom
        ) as hints:
            yield hints
    finally:
        if token is not None:
            _max_retries.reset(token)
        if other is not None:
            _other.reset(other)


def ray_options(hints: ResourceHints | None) -> dict[str, Any]:
    """The ``.options(...)`` keywords for a call's resource hints (empty for none)."""
    if hints is None:
        return {}
    out: dict[str, Any] = {}
    if hints.cpus is not None:
        out["num_cpus"] = hints.cpus
    if hints.gpus is not None:
        out["num_gpus"] = hints.gpus
    if hints.memory is not None:
        out["memory"] = hints.memory
    if hints.custom:
        out["resources"] = dict(hints.custom)
    return out


def check_resources(call: TaskCall) -> None:
    """Refuse, at submit, resources no node of the Ray cluster has (Ray would keep the
    task pending forever)."""
    hints = (call.extra or {}).get("resources")
    if hints is None:
        return
    wanted = {
        k: v for k, v in (("CPU", hints.cpus), ("GPU", hints.gpus), ("memory", hints.memory)) if v
    }
    wanted.update({k: v for k, v in hints.custom.items() if v})
    if not wanted:
        return
    import ray

    try:
        offered = ray.cluster_resources()
    except Exception:  # noqa: BLE001 - unknown: let Ray judge
        return
    missing = {k: v for k, v in wanted.items() if offered.get(k, 0) < v}
    if missing:
        raise errors.ConfigurationError(
            f"task {call.task.name!r} asks for Ray resources {wanted}, but the cluster "
            f"has { ({k: offered.get(k, 0) for k in wanted}) } in all (missing {missing}); "
            f"start nodes with them (`ray start --num-gpus=1`, `--resources='{{...}}'`) "
            f"or ask for less"
        )
