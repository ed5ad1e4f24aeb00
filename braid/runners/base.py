"""Where runner authors used to import the contract from; it lives in :mod:`braid.core.runner`.

Kept so that ``from braid.runners.base import TaskRunner, Capabilities`` goes on
working; new code imports from ``braid`` or ``braid.core.runner``.
"""

from __future__ import annotations

from braid.core.contract import Capabilities
from braid.core.runner import Run, TaskRunner

__all__ = ["Capabilities", "Run", "TaskRunner"]
