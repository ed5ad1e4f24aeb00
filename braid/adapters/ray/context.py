"""Ray options around submits, under ``prefect_ray.context``' module name:
``remote_options``."""

from __future__ import annotations

from braid.adapters.ray.options import remote_options

__all__ = ["remote_options"]
