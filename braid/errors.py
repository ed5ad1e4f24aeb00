"""The exceptions braid raises; every one derives from :class:`BraidError`.

User exceptions raised inside tasks are never wrapped: ``.result()`` re-raises
them as themselves.  Backend exceptions (a broken process pool, Dask's
``KilledWorker``, Ray's ``WorkerCrashedError``) are translated at the runner's
edge into the classes below, with the backend's exception as ``__cause__``.
"""

from __future__ import annotations

__all__ = [
    "BraidError",
    "ConfigurationError",
    "ClusterUnreachable",
    "Crash",
    "RunFailed",
    "FlowTimeout",
    "MappingLengthMismatch",
    "MappingMissingIterable",
    "MissingExtraError",
    "MissingContextError",
    "ParameterBindError",
    "RemoteError",
    "ReservedParameterName",
    "RunnerNotStarted",
    "SerializationError",
    "TaskCancelled",
    "TaskTimeout",
    "UpstreamFailed",
    "WaitTimeout",
    "WorkerLost",
]


class BraidError(Exception):
    """Base class of every exception braid itself raises."""


class ConfigurationError(BraidError, ValueError):
    """Raised at construction or decoration when options are invalid or conflict.

    Raised by ``@task``, ``@flow``, ``with_options`` and runner constructors, before
    anything runs, with a message naming the option and what to change.
    """


class ReservedParameterName(ConfigurationError):
    """Raised by ``@task``/``@flow`` when the function has a parameter braid reserves.

    ``wait_for`` and ``return_state`` are keyword arguments of ``.submit()``,
    ``.map()`` and ``__call__``; a function that declares one could never receive it.
    """


class ParameterBindError(BraidError, TypeError):
    """Raised by a task or flow call, ``.submit()`` or ``.map()`` whose arguments do not fit
    the function's signature (a missing, unexpected or repeated parameter), before
    anything is handed to a runner.
    """


class MappingMissingIterable(BraidError, TypeError):
    """Raised by ``Task.map`` when no argument is iterable, so there is nothing to map over."""


class MappingLengthMismatch(BraidError, ValueError):
    """Raised by ``Task.map`` when the mapped iterables have different lengths.

    The message names every mapped parameter with its length.
    """


class UpstreamFailed(BraidError):
    """Raised by ``.result()`` of a task run that did not run because an upstream failed.

    Its ``__cause__`` is the upstream's exception.  The task run's final state is
    FAILED with the name ``UpstreamFailed``.
    """


class TaskTimeout(BraidError, TimeoutError):
    """Raised by ``.result()`` of a task run that exceeded its ``timeout_seconds``.

    The task run's final state is FAILED with the name ``TimedOut``.
    """


class FlowTimeout(TaskTimeout):
    """Raised by a flow call that exceeded the flow's ``timeout_seconds``.

    The flow run's final state is FAILED with the name ``TimedOut``; its queued task
    runs end CANCELLED.
    """


class WaitTimeout(BraidError, TimeoutError):
    """Raised by ``.result(timeout=...)``, ``FutureList.result`` and ``as_completed`` when the
    runs waited on are not final within the given time.  The runs themselves go on.
    """


class TaskCancelled(BraidError):
    """Raised by ``.result()`` of a task run that was cancelled before it started.

    Task runs are cancelled when their flow is interrupted (Ctrl-C) or times out while
    they are still queued, or when their runner shuts down before running them.
    """


class SerializationError(BraidError, TypeError):
    """Raised when a task call or a task's return value cannot be pickled.

    Raised by ``.submit()``/``.map()`` on a runner that pickles its calls, before the
    call leaves the process; carried in a FAILED state when a return value cannot be
    pickled.  The message names the task, the parameter and the path to the culprit,
    e.g. ``task 'load': parameter 'cfg' → cfg['conn'] → sqlite3.Connection``.
    """


class RemoteError(BraidError):
    """Stands in for an exception raised in a task on another process that cannot be
    rebuilt here (its ``__init__`` does not accept its own ``args``).

    Carried by the run's FAILED state; its message names the original type and text,
    ``original_type`` holds the type's dotted name, and the remote traceback is attached.
    """

    original_type: str = ""


class WorkerLost(BraidError):
    """Raised by ``.result()`` of a task run whose worker died while running it.

    A process that exited or was killed, a Dask worker lost (``KilledWorker``), a Ray
    worker or node that crashed.  The task run's final state is CRASHED; the backend's
    exception is the ``__cause__``.
    """


class MissingExtraError(BraidError, ImportError):
    """Raised when a runner needs an optional dependency that is not installed.

    The message names the command to run, e.g. ``pip install 'braid-flow[dask]'``.
    """


class MissingContextError(BraidError, RuntimeError):
    """Raised by ``get_run_logger()``/``get_run_context()`` called outside any flow or task run."""


class RunnerNotStarted(BraidError, RuntimeError):
    """Raised by ``TaskRunner.submit`` on a runner that was not entered (``with runner:``)
    or that has already exited."""


class ClusterUnreachable(BraidError, ConnectionError):
    """Raised by ``DaskTaskRunner`` and ``RayTaskRunner`` when a flow starts and nothing
    answers at the cluster address they were given (checked with a short connect, so a
    dead address fails in seconds instead of after the backend's own long retries)."""


class RunFailed(BraidError):
    """Raised by ``State.result()`` (so by ``future.result()`` and flow calls) for a FAILED
    state made without an exception, e.g. one a task returned as ``Failed(message=...)``;
    its text is the state's message."""


class Crash(BraidError):
    """Carried by a CRASHED state for a run ended by something other than a user error.

    A ``KeyboardInterrupt`` or ``SystemExit`` raised inside a task, or a flow
    interrupted while the task was running; ``.result()`` raises it.
    """


# -- caching, results, transactions --
class CacheKeyError(BraidError, ValueError):
    """Raised by a cache policy's ``compute_key`` when a task input cannot be hashed.

    Raised on the worker before the task body runs, by ``INPUTS`` (and so ``DEFAULT``)
    and ``FLOW_PARAMETERS``; the message names the task, the parameter and the path to
    the culprit, and says how to leave the input out (``INPUTS - "name"``) or write a
    ``cache_key_fn``.  A ``ValueError``, as the error Prefect raises here is.
    """


class ResultNotFound(BraidError, KeyError):
    """Raised by ``ResultStore.read`` when no readable, unexpired record is stored at the key."""


class LocalStoreOnRemoteCluster(ConfigurationError):
    """Raised by ``braid.results.check_store_for_remote`` at flow start when a result store
    or lock manager on this machine's disk (or in this process's memory) would be used by
    workers on other hosts, who could neither see nor share it.

    The message names the store and says to use a shared path or an fsspec URL.
    """


class LockTimeout(BraidError, TimeoutError):
    """Raised by ``braid.caching.cache_plan`` under ``SERIALIZABLE`` isolation when the lock on
    the run's cache key is not free within ``lock_timeout`` seconds (lock managers
    themselves answer False, as Prefect's do)."""


class TransactionError(BraidError, RuntimeError):
    """Raised by ``braid.transactions`` on misuse: entering a transaction twice, staging
    into a transaction that is no longer active, or staging from a worker's detached copy."""


class BraidWarning(UserWarning):
    """The root of every warning braid emits; filter them all with this class."""


class CacheWarning(BraidWarning):
    """Base class of the warnings braid's caching emits; filter this to silence them all."""


class CorruptRecordWarning(CacheWarning):
    """Emitted by ``ResultStore`` when a stored record cannot be read or decoded (truncated,
    corrupt, written by an unknown serializer); the look-up is then a miss, never a crash."""


class CacheKeyWarning(CacheWarning):
    """Emitted by ``braid.caching.cache_plan`` when the default cache policy (not one the
    user chose) cannot hash an input: the run goes on uncached, as in Prefect."""


__all__ += [
    "BraidWarning",
    "CacheKeyError",
    "ResultNotFound",
    "LocalStoreOnRemoteCluster",
    "LockTimeout",
    "TransactionError",
    "CacheWarning",
    "CorruptRecordWarning",
    "CacheKeyWarning",
]


# -- concurrency limits --
class InvalidLimit(ConfigurationError):
    """Raised by ``braid.concurrency.Limit`` and by the parser of ``BRAID_CONCURRENCY_LIMITS``
    (and ``braid run --limit``) when a limit is not a non-negative integer, a slot decay is
    negative, or a declaration cannot be read; the message names the offending entry.
    """


class LimitRedeclared(ConfigurationError):
    """Raised when a limit name is declared again with a different ``Limit``.

    Raised by ``declare_limits`` (a nested flow redeclaring a name of its parent with
    another value), and by a limits backend when the name is in use on that backend
    (held slots, or a Dask/Ray cluster shared with another flow) with another value.
    """


class UndeclaredLimit(ConfigurationError):
    """Raised by ``concurrency(..., strict=True)`` and ``rate_limit(..., strict=True)`` for a
    name declared nowhere; the message says where to declare it.
    """


class SlotsExceedLimit(ConfigurationError):
    """Raised by ``concurrency``, ``rate_limit`` and the tag-limit functions when more slots
    are asked for than the limit has (a limit of 0 included): they could never be granted.
    """


class RateLimitWithoutDecay(ConfigurationError):
    """Raised by ``rate_limit`` for a limit whose ``slot_decay_per_second`` is 0: its slots
    would never come back.
    """


class ConcurrencyTimeout(BraidError, TimeoutError):
    """Raised by ``concurrency``, ``rate_limit`` and ``acquire_for_tags`` when the slots were
    not granted within ``timeout_seconds``; nothing is held afterwards.
    """


class LimitsUnavailable(BraidError, RuntimeError):
    """Raised when the place where limits live cannot be reached: the process coordinator
    stopped or its parent is gone, a limits handle used in a process it cannot serve, or a
    Dask scheduler or Ray cluster that is not connected.
    """


__all__ += [
    "InvalidLimit",
    "LimitRedeclared",
    "UndeclaredLimit",
    "SlotsExceedLimit",
    "RateLimitWithoutDecay",
    "ConcurrencyTimeout",
    "LimitsUnavailable",
]


# -- command line --
class InvalidParameterValue(BraidError, ValueError):
    """Raised by ``braid.params.coerce_parameter`` (so by ``braid run --param``) when a
    value does not convert to its parameter's type hint; the message is one line naming the
    parameter, the value and the expected type (an Enum's or Literal's valid choices too).
    """


__all__ += ["InvalidParameterValue"]
