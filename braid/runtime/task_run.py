"""The current task run (``braid.runtime.task_run.name``, ``.parameters``, ...), correct
inside a task on every runner; ``None``, ``{}``, ``[]`` and 0 outside a task run."""

from __future__ import annotations

from typing import Any

from braid.core.context import TaskRunInfo, current_run
from braid.runtime.mocking import lookup


def _info() -> TaskRunInfo | None:
    ctx = current_run.get()
    return ctx.task_run if ctx is not None else None


def _get(read: Any, empty: Any) -> Any:
    info = _info()
    return empty if info is None else read(info)


_FIELDS = {
    "id": lambda: _get(lambda i: str(i.id), None),
    "name": lambda: _get(lambda i: i.name, None),
    "task_name": lambda: _get(lambda i: i.task_name, None),
    "parameters": lambda: _get(lambda i: dict(i.parameters), {}),
    "run_count": lambda: _get(lambda i: i.run_count, 0),
    "tags": lambda: _get(lambda i: sorted(i.tags), []),
    "api_url": lambda: None,
    "ui_url": lambda: None,
}

#: every attribute, each computed when read
__all__ = list(_FIELDS)


def __getattr__(name: str) -> Any:
    return lookup("task_run", name, _FIELDS)


def __dir__() -> list[str]:
    return sorted(__all__)
