"""Flows (Prefect's ``prefect.flows``): ``flow`` and ``Flow``."""

from __future__ import annotations

from braid.core.flows import Flow, flow

__all__ = ["Flow", "flow"]
