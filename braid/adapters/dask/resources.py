"""braid's resource hints as Dask worker resources, checked against the cluster at submit.

Dask would leave a task asking for resources no worker offers waiting forever
("no-worker"), so a DaskTaskRunner refuses such a call when it is submitted, against
the workers connected then (asked again only when a hint is not met by what was seen
before).  Clusters that adapt are not checked: their workers come and go.
"""

from __future__ import annotations

from typing import Any

from braid import errors
from braid.core.calls import TaskCall
from braid.core.runner import Run

__all__ = ["RESOURCE_NAMES", "ResourceCheck", "freeze", "resources_of"]

#: how braid's standard hints are named as Dask worker resources (custom names pass as
#: they are); workers must declare them, e.g. ``dask worker --resources "GPU=1"``.
RESOURCE_NAMES = {"cpus": "CPU", "gpus": "GPU", "memory": "MEMORY"}


class ResourceCheck:
    """What the cluster's workers offer (the largest amount of each resource), as last seen."""

    def __init__(self) -> None:
        self.offered: dict[str, float] = {}

    def for_call(self, call: TaskCall, client: Any, adaptive: bool) -> dict[str, float] | None:
        """Dask ``resources=`` for the call's hints (None: none); raises
        :class:`braid.errors.ConfigurationError` when no worker offers them."""
        hints = call.extra.get("resources") if call.extra else None
        if hints is None or hints.is_empty():
            return None
        wanted: dict[str, float] = {}
        for field, dask_name in RESOURCE_NAMES.items():
            value = getattr(hints, field)
            if value:
                wanted[dask_name] = value
        for name, value in hints.custom.items():
            if value:
                wanted[name] = value
        if not wanted or adaptive:
            return wanted or None
        if not self._satisfied(wanted):
            self.offered = _worker_resources(client)
            if not self._satisfied(wanted):
                raise errors.ConfigurationError(
                    f"task {call.task.name!r} asks for Dask resources {wanted}, but no worker "
                    f"of the cluster offers them (the largest offers: {self.offered or 'none'}"
                    f"); start workers with them, e.g. `dask worker --resources "
                    f"\"GPU=1\"` or LocalCluster(resources={{'GPU': 1}}).  braid names cpus, "
                    f"gpus and memory {RESOURCE_NAMES}"
                )
        return wanted

    def _satisfied(self, wanted: dict[str, float]) -> bool:
        offered = self.offered
        return all(offered.get(k, 0) >= v for k, v in wanted.items())


def _worker_resources(client: Any) -> dict[str, float]:
    offered: dict[str, float] = {}
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    for info in workers.values():
        for name, amount in (info.get("resources") or {}).items():
            offered[name] = max(offered.get(name, 0), amount)
    return offered


def resources_of(run: Run) -> dict[str, float] | None:
    """The Dask resources a run was given at submit (None: none)."""
    extra = run.call.extra if run.call is not None else None
    return extra.get("dask_resources") if extra else None


def freeze(resources: dict | None) -> Any:
    """A hashable form of ``resources`` (runs with equal ones go in one ``client.map``)."""
    return None if resources is None else tuple(sorted(resources.items()))
