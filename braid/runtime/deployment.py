"""Deployments are a Prefect server feature braid does not have: every attribute is empty
(``None``, or ``{}`` for ``parameters``), as Prefect's are for a run without one."""

from __future__ import annotations

from typing import Any

from braid.runtime.mocking import lookup

_FIELDS = {
    "id": lambda: None,
    "flow_run_id": lambda: None,
    "name": lambda: None,
    "parameters": lambda: {},
    "version": lambda: None,
}

#: every attribute, each computed when read
__all__ = list(_FIELDS)


def __getattr__(name: str) -> Any:
    return lookup("deployment", name, _FIELDS)


def __dir__() -> list[str]:
    return sorted(__all__)
