"""Module attributes computed on access, with environment-variable mocks (shared by the
runtime submodules)."""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from typing import Any

__all__ = ["lookup"]


def lookup(submodule: str, name: str, fields: dict[str, Callable[[], Any]]) -> Any:
    """The value of ``braid.runtime.<submodule>.<name>``: its mock from the environment
    when set, else the live value; ``AttributeError`` for an unknown name."""
    env = os.environ.get(f"BRAID__RUNTIME__{submodule.upper()}__{name.upper()}")
    getter = fields.get(name)
    if env is not None:
        if getter is None:
            return env
        return _cast(env, getter())
    if getter is None:
        raise AttributeError(
            f"module 'braid.runtime.{submodule}' has no attribute {name!r}; "
            f"it has {', '.join(sorted(fields))}"
        )
    return getter()


def _cast(text: str, like: Any) -> Any:
    if isinstance(like, bool):
        return text.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(like, (int, float)):
        return type(like)(text)
    if isinstance(like, datetime.datetime):
        return datetime.datetime.fromisoformat(text)
    return text
