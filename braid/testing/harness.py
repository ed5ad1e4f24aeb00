"""What every conformance test class uses: capability skips and running a body as a flow."""

from __future__ import annotations

import pytest

from braid import flow

__all__ = ["require", "run_in_flow"]


def require(runner, capability: str, value: bool = True) -> None:
    """Skip the calling test unless ``runner`` declares ``capability`` (as ``value``)."""
    have = getattr(runner.capabilities, capability)
    if have != value:
        pytest.skip(
            f"needs capability {capability}={value}; "
            f"{type(runner).__name__} has {capability}={have}"
        )


def run_in_flow(runner, body, *args, **kwargs):
    """Run ``body`` as the body of a flow on ``runner`` and return the flow's value."""
    return flow(body, name=getattr(body, "__name__", "body"), task_runner=runner)(*args, **kwargs)
