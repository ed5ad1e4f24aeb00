"""Strictness shared by every test: no thread left behind by a test."""

from __future__ import annotations

import os
import threading
import time

import pytest

# Ray on these machines (see ci/env.sh): keep 127.0.0.1, no token auth, no usage stats.
for _name, _value in (
    ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0"),
    ("RAY_AUTH_MODE", "disabled"),
    ("RAY_USAGE_STATS_ENABLED", "0"),
):
    os.environ.setdefault(_name, _value)


@pytest.fixture(autouse=True)
def no_leaked_threads(request):
    """Fail a test that leaves a braid worker thread running after its runners exited."""
    before = set(threading.enumerate())
    yield
    if request.node.get_closest_marker("allow_leaked_threads"):
        return
    deadline = time.monotonic() + 5
    while True:
        leaked = [
            t
            for t in threading.enumerate()
            if t not in before
            and t.is_alive()
            and t.name.startswith("braid-worker")
            and not _belongs_to_default_runner(t)
        ]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not leaked, f"threads left behind: {[t.name for t in leaked]}"


def _belongs_to_default_runner(t: threading.Thread) -> bool:
    from braid.core import runner as core_runner

    runner = core_runner._default
    return runner is not None and t in getattr(runner, "_threads", ())
