"""Argument annotations (Prefect's ``prefect.utilities.annotations``): ``unmapped``,
``allow_failure``, ``quote`` and ``opaque``."""

from __future__ import annotations

from braid.core.annotations import BaseAnnotation, allow_failure, opaque, quote, unmapped

__all__ = ["BaseAnnotation", "allow_failure", "opaque", "quote", "unmapped"]
