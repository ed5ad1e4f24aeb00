"""A flow that blocks until interrupted; the interrupt tests run it as a subprocess.

It prints READY once its tasks are running, then waits; on Ctrl-C braid cancels the
queued task runs and the interpreter must exit promptly.
"""

from __future__ import annotations

import sys
import time

from braid import ThreadPoolTaskRunner, flow, task

_states: dict = {}


@task
def sleeper(seconds):
    time.sleep(seconds)
    return seconds


@flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
def blocked(in_drain: bool = False):
    running = sleeper.map([60, 60])
    queued = sleeper.map([1, 1, 1])
    _states["running"], _states["queued"] = running, queued
    print("READY", flush=True)
    if in_drain:
        return None  # interrupted while the flow's runner drains
    return running.result()


if __name__ == "__main__":
    try:
        blocked(in_drain="drain" in sys.argv[1:])
    except KeyboardInterrupt:
        queued = [f.state.name for f in _states["queued"]]
        running = [f.state.name for f in _states["running"]]
        print(
            "INTERRUPTED queued=" + ",".join(queued) + " running=" + ",".join(running), flush=True
        )
        sys.exit(130)
