"""Run loggers (Prefect's ``prefect.logging``): ``get_run_logger()`` and
``disable_run_logger()``."""

from __future__ import annotations

from braid.core.context import disable_run_logger, get_run_logger

__all__ = ["disable_run_logger", "get_run_logger"]
