"""The pace of Python's cyclic garbage collector while flow runs are in progress.

A flow that submits many task runs keeps each run's future, call and state alive until
the run ends.  None of them is garbage, yet with Python's default first threshold (700
net new container objects) the collector walks them again and again: a quarter of the
time of a 1 000 000-task map went to it.  So while at least one flow run is in progress
in this process, the first threshold is raised to :data:`DEFAULT_THRESHOLD` (never
lowered), and put back when the last such run ends, unless someone else changed it
meanwhile.  The other two thresholds, ``gc.enable``/``gc.disable`` and explicit
``gc.collect()`` calls are left alone.

``BRAID_GC_THRESHOLD`` sets the raised value; ``0`` leaves the collector as it is.
"""

from __future__ import annotations

import gc
import os
import threading

from braid import errors

__all__ = ["DEFAULT_THRESHOLD", "ENV", "flow_run_began", "flow_run_ended", "threshold"]

#: the first threshold while a flow run is in progress (Python's default is 700)
DEFAULT_THRESHOLD = 10_000
#: the environment variable that overrides it (0: leave the collector as it is)
ENV = "BRAID_GC_THRESHOLD"

_lock = threading.Lock()
_running = 0  # flow runs in progress in this process
_saved: tuple[int, int, int] | None = None  # the thresholds before the first of them
_raised_to = 0  # the first threshold set then (0: none was set)


def threshold() -> int:
    """The first threshold flow runs raise the collector's to (0: they leave it alone).

    Raises :class:`braid.errors.ConfigurationError` when ``BRAID_GC_THRESHOLD`` is not
    a whole number >= 0.
    """
    text = os.environ.get(ENV)
    if text is None or not text.strip():
        return DEFAULT_THRESHOLD
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise errors.ConfigurationError(
            f"{ENV} must be a whole number >= 0 (the garbage collector's first threshold "
            f"while flows run; 0 leaves it as it is), got {text!r}"
        )
    return value


def flow_run_began() -> None:
    """Count a flow run in progress; the first one raises the collector's first threshold.

    Raises :class:`braid.errors.ConfigurationError` for a bad ``BRAID_GC_THRESHOLD``
    (nothing is counted then).
    """
    global _running, _saved, _raised_to
    wanted = threshold()
    with _lock:
        _running += 1
        if _running > 1 or wanted == 0:
            return
        current = gc.get_threshold()
        if current[0] == 0 or current[0] >= wanted:  # 0: the collector is switched off
            return
        _saved, _raised_to = current, wanted
        gc.set_threshold(wanted, current[1], current[2])


def flow_run_ended() -> None:
    """Count a flow run ended; after the last one, put the first threshold back (only if
    it is still the one :func:`flow_run_began` set)."""
    global _running, _saved, _raised_to
    with _lock:
        _running = max(0, _running - 1)
        if _running or _saved is None:
            return
        saved, raised = _saved, _raised_to
        _saved, _raised_to = None, 0
        current = gc.get_threshold()
        if current[0] == raised:
            gc.set_threshold(saved[0], current[1], current[2])
