"""The one registry of runner names: ``braid``'s lazy names, ``braid run --runner`` and
``braid.testing``'s runner specs all read it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from braid.core.runner import TaskRunner

__all__ = ["RUNNERS", "RunnerEntry", "load_runner_class", "lazy_names"]


class RunnerEntry(NamedTuple):
    """A runner braid ships: its short name, where its class lives, the extra it needs."""

    name: str
    module: str
    class_name: str
    extra: str | None

    @property
    def spec(self) -> str:
        """The ``module:Class`` spec of the runner."""
        return f"{self.module}:{self.class_name}"


RUNNERS: dict[str, RunnerEntry] = {
    e.name: e
    for e in (
        RunnerEntry("threads", "braid.runners.threads", "ThreadPoolTaskRunner", None),
        RunnerEntry("processes", "braid.runners.processes", "ProcessPoolTaskRunner", None),
        RunnerEntry("dask", "braid.adapters.dask", "DaskTaskRunner", "dask"),
        RunnerEntry("ray", "braid.adapters.ray", "RayTaskRunner", "ray"),
    )
}


def load_runner_class(name: str) -> type[TaskRunner]:
    """The runner class registered as ``name``; ``KeyError`` for an unknown name.

    A runner whose extra is missing raises :class:`braid.errors.MissingExtraError`
    (its module does) naming the install command.
    """
    entry = RUNNERS[name]
    cls: type[TaskRunner] = getattr(importlib.import_module(entry.module), entry.class_name)
    return cls


def lazy_names() -> dict[str, str]:
    """Class name -> module, for the runners ``import braid`` does not import (extras)."""
    return {e.class_name: e.module for e in RUNNERS.values() if e.extra is not None}
