"""The current flow run (``braid.runtime.flow_run.name``, ``.parameters``, ...).

Inside a task it is the flow run that submitted the task, on every runner; its
``parameters`` reach tasks on other processes when they pickle small (see
:data:`braid.core.context.SHIPPED_PARAMETERS_LIMIT`).  Outside a flow run: ``None``,
``{}``, ``[]`` and 0.
"""

from __future__ import annotations

import datetime
from typing import Any

from braid.core.context import FlowRunInfo, current_run
from braid.runtime.mocking import lookup


def _info() -> FlowRunInfo | None:
    ctx = current_run.get()
    return ctx.flow_run if ctx is not None else None


def _get(attr: str, empty: Any) -> Any:
    info = _info()
    return empty if info is None else getattr(info, attr)


def _parameters() -> dict[str, Any]:
    ctx = current_run.get()
    if ctx is None or ctx.flow_run is None:
        return {}
    if ctx.task_run is None:
        return dict(ctx.parameters)
    return ctx.flow_run.parameters


_FIELDS = {
    "id": lambda: _get("id", None),
    "name": lambda: _get("name", None),
    "flow_name": lambda: _get("flow_name", None),
    "flow_version": lambda: _get("version", None),
    "parameters": _parameters,
    "tags": lambda: list(_get("tags", ())),
    "run_count": lambda: _get("run_count", 0),
    "parent_flow_run_id": lambda: _get("parent_flow_run_id", None),
    "root_flow_run_id": lambda: _get("root_flow_run_id", None),
    "parent_deployment_id": lambda: None,
    "scheduled_start_time": lambda: datetime.datetime.now(datetime.timezone.utc),
    "api_url": lambda: None,
    "ui_url": lambda: None,
    "job_variables": lambda: None,
}

#: every attribute, each computed when read
__all__ = list(_FIELDS)


def __getattr__(name: str) -> Any:
    return lookup("flow_run", name, _FIELDS)


def __dir__() -> list[str]:
    return sorted(__all__)
