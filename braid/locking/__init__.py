"""Locks on cache keys for ``SERIALIZABLE`` isolation, behind one interface.

=====================  ============================================================
``MemoryLockManager``   threads of one process (the thread runner)
``FileSystemLockManager`` processes on one machine, or hosts sharing a mount
``DaskLockManager``     workers of one Dask cluster (``distributed.Lock``)
``RayLockManager``      workers of one Ray cluster (a named actor)
=====================  ============================================================

Each module is imported on first use, so ``import braid.locking`` imports neither Dask
nor Ray.
"""

from __future__ import annotations

from typing import Any

from braid.locking.protocol import LockManager

__all__ = [
    "LockManager",
    "MemoryLockManager",
    "FileSystemLockManager",
    "DaskLockManager",
    "RayLockManager",
]

_HOMES = {
    "MemoryLockManager": "braid.locking.memory",
    "FileSystemLockManager": "braid.locking.filesystem",
    "DaskLockManager": "braid.locking.dask",
    "RayLockManager": "braid.locking.ray",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'braid.locking' has no attribute {name!r}")
