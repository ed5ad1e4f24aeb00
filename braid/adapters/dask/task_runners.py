"""The Dask runner under ``prefect_dask.task_runners``' module name: ``DaskTaskRunner`` and
``DaskFuture`` (Prefect's ``PrefectDaskFuture``)."""

from __future__ import annotations

from braid.adapters.dask.future import DaskFuture
from braid.adapters.dask.runner import DaskTaskRunner

__all__ = ["DaskFuture", "DaskTaskRunner"]
