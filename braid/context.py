"""The run context (Prefect's ``prefect.context``): ``get_run_context()``,
``FlowRunContext.get()`` and ``TaskRunContext.get()`` (None outside a run), ``tags()``."""

from __future__ import annotations

from braid.core.context import (
    FlowRunContext,
    TaskRunContext,
    get_run_context,
    tags,
)

__all__ = ["FlowRunContext", "TaskRunContext", "get_run_context", "tags"]
