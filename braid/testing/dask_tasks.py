"""Module-level tasks the Dask runner's tests run (workers import them by name)."""

from __future__ import annotations

import os
import threading
import time

from braid import task


@task
def slow_inc(x, seconds=0.3):
    time.sleep(seconds)
    return x + 1


@task
def worker_pid():
    return os.getpid()


@task
def kill_my_worker():
    """End the worker process at once, as a crash would."""
    os._exit(1)


@task(resources={"gpus": 1})
def on_gpu(x):
    return x


@task(resources={"TPU": 1})
def on_tpu(x):
    return x


@task
def resource_restrictions(_item=None):
    """The resources Dask required for this very task, read on the worker."""
    from distributed import get_worker
    from distributed.worker import thread_state

    return dict(get_worker().state.tasks[thread_state.key].resource_restrictions or {})


@task
def sum_with_dask_client(values):
    """Use Dask directly from inside a task, through braid's get_dask_client()."""
    from braid.adapters.dask import get_dask_client

    with get_dask_client() as client:
        futures = client.map(lambda v: v * 2, values, pure=False)
        return sum(client.gather(futures))


@task
def count_runs(path):
    """Append a line to ``path`` and return how many lines it has now (runs so far)."""
    with open(path, "a") as fh:
        fh.write("ran\n")
    with open(path) as fh:
        return len(fh.readlines())


#: gates that ``gated`` runs wait at, opened by the test (workers in the test's process)
GATES: dict[str, threading.Event] = {}


@task
def gated(name):
    """Wait (at most a minute) until the test opens the gate ``name``; return the name."""
    GATES.setdefault(name, threading.Event()).wait(60)
    return name
