"""The seed's elevator: ten submitted stops on a three-thread runner, then wait on all.

At most three stops run at once (``max_workers=3``); ``wait`` returns once every
future is final.  The seed sleeps ``floor`` seconds; this sleeps a hundredth of that
so the example finishes quickly.  Each line is printed with one write (``end=""``):
``print`` writes the text and the newline separately, and lines from concurrent
threads would otherwise interleave.
"""

from __future__ import annotations

import threading
import time

from braid import ThreadPoolTaskRunner, flow, task, wait

# How many stops are under way right now, and the most ever at once: shows max_workers.
_moving = {"now": 0, "peak": 0}
_moving_lock = threading.Lock()


@task
def stop_at_floor(floor: int) -> None:
    with _moving_lock:
        _moving["now"] += 1
        _moving["peak"] = max(_moving["peak"], _moving["now"])
    print(f"elevator moving to floor {floor}\n", end="")
    time.sleep(floor / 100)
    print(f"elevator stops on floor {floor}\n", end="")
    with _moving_lock:
        _moving["now"] -= 1


@flow(task_runner=ThreadPoolTaskRunner(max_workers=3))
def elevator() -> None:
    floors = []

    for floor in range(10, 0, -1):
        floors.append(stop_at_floor.submit(floor))

    done, not_done = wait(floors)  # wait for the sequence of futures to complete
    print(f"all stops done: {len(done)} final, {len(not_done)} pending")
    print(f"most stops under way at once: {_moving['peak']}")


if __name__ == "__main__":
    elevator()
