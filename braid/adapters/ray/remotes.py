"""The Ray remote functions runs go to: one Ray task per run, or runs of one ``.map()``
sharing Ray tasks, so that what Ray costs per task is paid per batch.

``remote_for`` gives the remote function of one run (``execute``, two return objects:
a small header and the result), made once per task name and options.

Submitting a Ray task costs the driver more than everything braid does for a run
(~0.3-0.5 ms on two cores), and its completion takes a callback.  A ``.map()`` over
many items hands its ready runs to ``RayTaskRunner.dispatch_many``, which puts up to
``MAX_BATCH`` runs of the same task and options in one Ray task::

    execute_many.options(num_returns=k + 1).remote([call bytes] * k, log_level)
        -> [header 1 .. header k]     one object: one callback settles the k runs
        -> payload 1 .. payload k     one object per run: downstream tasks get theirs,
                                      a lost one is rebuilt by lineage (the batch runs
                                      again, as Ray re-runs any task)

Submits that queue up and a chain's links share Ray tasks the same way
(:mod:`braid.adapters.ray.batching`): ``execute_many`` then also takes the batch's
upstream objects and a plan saying which run takes which, a run whose upstream ran
before it in the batch getting that upstream's payload on the worker.  Runs with a
time limit the driver watches never share (a watched run is cancelled on its own).
A lost worker makes Ray re-run the whole batch (its finished runs too: their side
effects repeat, as with any Ray re-run); a batch Ray gives up on ends each of its
runs CRASHED with ``WorkerLost``, named, except runs whose upstream in the batch was
lost, which end ``UpstreamFailed`` as downstream runs of a lost run do.
"""

from __future__ import annotations

from typing import Any

import ray

from braid.adapters.ray.options import ray_options
from braid.adapters.ray.worker import execute, execute_many

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "MAX_BATCH",
    "PER_CPU",
    "batch_size",
    "remote_batch",
    "remote_for",
]

#: how often Ray re-runs a task lost with its worker or node, unless configured (Ray's own
#: default for system failures)
DEFAULT_MAX_RETRIES = 3

#: most runs in one Ray task
MAX_BATCH = 16
#: fewest batches per CPU of the cluster: fewer, and runs go one per task (0: runs
#: share Ray tasks whenever they can; the tests use it to run every semantic batched)
PER_CPU = 4

# retry_exceptions=False: a task's exceptions are braid's (the engine's retries); Ray
# re-runs a task only when its worker or node is lost (max_retries, set per runner).
# num_returns=2: a small header for the driver, the result for downstream tasks.
_remote_execute = ray.remote(
    max_retries=DEFAULT_MAX_RETRIES, retry_exceptions=False, num_returns=2
)(execute)
_execute_many = ray.remote(retry_exceptions=False)(execute_many)
_cache: dict[tuple, Any] = {}
_single_cache: dict[tuple, Any] = {}


def batch_size(runs: int, cpus: int) -> int:
    """How many runs of a map of ``runs`` share one Ray task on ``cpus`` CPUs (1: none)."""
    if cpus <= 0:
        return 1
    per_batch = PER_CPU * cpus
    return max(1, min(MAX_BATCH, runs // per_batch if per_batch else runs))


def remote_batch(task_name: str, hints: Any, max_retries: int, size: int) -> Any:
    """The remote function running ``size`` runs of the task, with its options (made
    once per task, options and size)."""
    key = (task_name, max_retries, size, repr(hints))
    remote = _cache.get(key)
    if remote is None:
        if len(_cache) > 1024:
            _cache.clear()
        remote = _cache[key] = _execute_many.options(
            name=task_name, max_retries=max_retries, num_returns=size + 1, **ray_options(hints)
        )
    return remote


def remote_for(
    task_name: str, hints: Any, max_retries: int, others: dict[str, Any] | None = None
) -> Any:
    """The remote function named after the task, with its resource and retry options,
    made once.

    Ray builds a new wrapper (a class, and a validation of the options) on every
    ``.options()`` call: ~100 µs, as much as the rest of a submit.  Runs of one task
    with the same hints share one wrapper, so Ray's tools show the task's name; braid's
    run names are in braid's own records and logs.
    """
    key = (
        (task_name, max_retries)
        if hints is None
        else (
            task_name,
            max_retries,
            hints.cpus,
            hints.gpus,
            hints.memory,
            tuple(sorted(hints.custom.items())),
        )
    )
    if others:  # rare: options given to remote_options beyond resources and retries
        key = (*key, repr(sorted(others.items())))
    remote = _single_cache.get(key)
    if remote is None:
        if len(_single_cache) > 4096:
            _single_cache.clear()
        base = _remote_execute
        if others:  # some options (max_calls=) Ray takes only at ray.remote, not .options
            base = ray.remote(retry_exceptions=False, num_returns=2, **others)(execute)
        remote = _single_cache[key] = base.options(
            name=task_name, max_retries=max_retries, **ray_options(hints)
        )
    return remote
