"""The engine's one entry to caching and persisted results.

Two calls, both cheap when caching is off::

    options = resolve_cache_options(task_opts, flow_opts)   # on the driver, per task
    ...                                                      # (None: nothing to do)
    plan = cache_plan(options, ctx, transaction=txn)        # on the worker, before
    if plan.hit:                                             #   the attempt loop
        -> COMPLETED named "Cached" with plan.value; the body does not run
    else:
        value = <attempts>
        staged = plan.commit(value)   # after success: persist (or stage in txn), unlock
        plan.abort()                  # instead, after the final failure: unlock

``options`` and ``plan`` hold only picklable configuration (policy, store, serializer);
``ctx`` is a :class:`braid.cache_policies.CacheContext` built on the worker.  Under
``SERIALIZABLE`` isolation ``cache_plan`` blocks until no other run holds the key,
then looks again, so N identical runs compute once and the rest hit.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
import warnings
from collections.abc import Mapping
from typing import Any

from braid import errors
from braid.cache_policies import DEFAULT, NO_CACHE, CacheContext, CachePolicy, NoCache
from braid.results import ResultRecord, ResultStore
from braid.transactions import IsolationLevel, StagedResult, Transaction

__all__ = [
    "CacheOptions",
    "CachePlan",
    "resolve_cache_options",
    "cache_plan",
    "format_storage_key",
    "persist_flow_result",
    "OPTION_DEFAULTS",
]

#: The task options braid adds for caching and results, with Prefect's defaults.
OPTION_DEFAULTS: dict[str, Any] = {
    "cache_policy": None,  # None = not given: DEFAULT when persisting
    "cache_key_fn": None,
    "cache_expiration": None,  # datetime.timedelta; None = never expires
    "refresh_cache": None,  # None = $BRAID_TASKS_REFRESH_CACHE, default False
    "persist_result": None,  # None = decided as Prefect does (see resolve_...)
    "result_storage": None,  # path, URL, filesystem; None = flow's, else default
    "result_storage_key": None,  # str.format template over the run
    "result_serializer": None,  # "pickle" | "json" | Serializer; None = flow's/pickle
    "cache_result_in_memory": True,
}
#: The flow options: persistence and storage its tasks inherit.
FLOW_OPTION_DEFAULTS: dict[str, Any] = {
    "persist_result": None,
    "result_storage": None,
    "result_serializer": None,
    "cache_result_in_memory": True,
}


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


class CacheOptions:
    """A task's caching and persistence settings, resolved against its flow's (picklable)."""

    __slots__ = (
        "policy",
        "policy_explicit",
        "expiration",
        "refresh",
        "store",
        "storage_key",
        "cache_result_in_memory",
    )

    def __init__(
        self,
        policy: CachePolicy | None,
        policy_explicit: bool,
        expiration: dt.timedelta | None,
        refresh: bool,
        store: ResultStore,
        storage_key: str | None,
        cache_result_in_memory: bool,
    ) -> None:
        self.policy, self.policy_explicit = policy, policy_explicit
        self.expiration, self.refresh, self.store = expiration, refresh, store
        self.storage_key, self.cache_result_in_memory = storage_key, cache_result_in_memory

    def __getstate__(self) -> tuple:
        return tuple(getattr(self, s) for s in self.__slots__)

    def __setstate__(self, state: tuple) -> None:
        for name, value in zip(self.__slots__, state, strict=True):
            setattr(self, name, value)

    def __repr__(self) -> str:
        return f"CacheOptions(policy={self.policy!r}, store={self.store!r})"


def resolve_cache_options(
    task: Mapping[str, Any] | Any, flow: Mapping[str, Any] | Any | None = None
) -> CacheOptions | None:
    """The caching settings of a task run, or None when its result is not persisted (then
    no key is computed and nothing is read or written: the engine skips caching).

    ``task``/``flow`` are mappings of the options in :data:`OPTION_DEFAULTS` /
    :data:`FLOW_OPTION_DEFAULTS` (or objects with those attributes); absent means
    default.  Prefect's rules: ``cache_key_fn`` wins over ``cache_policy``; a task
    persists when ``persist_result`` says so, else when it sets a cache policy other
    than ``NO_CACHE``, a ``cache_key_fn``, ``result_storage_key``, ``result_storage`` or
    ``result_serializer``, else when its flow persists (``persist_result=True``,
    ``result_storage`` or ``result_serializer``), else when
    ``$BRAID_RESULTS_PERSIST_BY_DEFAULT`` is true.  Not persisting means no cache.
    """
    t = _opts(task, OPTION_DEFAULTS)
    f = _opts(flow, FLOW_OPTION_DEFAULTS)
    policy, key_fn = t["cache_policy"], t["cache_key_fn"]
    if key_fn is not None:
        if policy is not None:
            warnings.warn(
                errors.CacheWarning(
                    "both cache_policy and cache_key_fn are set; cache_key_fn is used"
                ),
                stacklevel=2,
            )
        policy = CachePolicy.from_cache_key_fn(key_fn)
    persist = t["persist_result"]
    if persist is None and (
        (policy is not None and not isinstance(policy, NoCache))
        or any(
            t[k] is not None for k in ("result_storage_key", "result_storage", "result_serializer")
        )
    ):
        persist = True
    if persist is None:
        flow_persist = f["persist_result"]
        if flow_persist is None and (
            f["result_storage"] is not None or f["result_serializer"] is not None
        ):
            flow_persist = True
        persist = (
            flow_persist
            if flow_persist is not None
            else _env_flag("BRAID_RESULTS_PERSIST_BY_DEFAULT")
        )
    if not persist:
        if policy is not None and not isinstance(policy, NoCache):
            warnings.warn(
                errors.CacheWarning("cache_policy is ignored because persist_result is False"),
                stacklevel=2,
            )
        return None
    explicit = policy is not None
    storage_key = t["result_storage_key"]
    if policy is None:
        policy = None if storage_key is not None else DEFAULT
    elif isinstance(policy, NoCache):
        policy = NO_CACHE
    elif storage_key is not None:
        policy = None  # as in Prefect, the template names the record
    storage = t["result_storage"] if t["result_storage"] is not None else f["result_storage"]
    serializer = t["result_serializer"] or f["result_serializer"] or "pickle"
    store = ResultStore(
        result_storage=storage,
        metadata_storage=getattr(policy, "key_storage", None),
        lock_manager=getattr(policy, "lock_manager", None),
        serializer=serializer,
        cache_result_in_memory=t["cache_result_in_memory"],
    )
    refresh = t["refresh_cache"]
    if refresh is None:
        refresh = _env_flag("BRAID_TASKS_REFRESH_CACHE")
    return CacheOptions(
        policy,
        explicit,
        t["cache_expiration"],
        bool(refresh),
        store,
        storage_key,
        bool(t["cache_result_in_memory"]),
    )


def _opts(source: Any, defaults: dict[str, Any]) -> dict[str, Any]:
    if source is None:
        return dict(defaults)
    if isinstance(source, Mapping):
        return {k: source.get(k, d) for k, d in defaults.items()}
    return {k: getattr(source, k, d) for k, d in defaults.items()}


class _FlowRunView:
    __slots__ = ("id", "name", "flow_name", "parameters")

    def __init__(self, ctx: CacheContext) -> None:
        self.id, self.name = ctx.flow_run_id, ctx.flow_run_name
        self.flow_name, self.parameters = ctx.flow_name, ctx.flow_parameters


def format_storage_key(template: str, ctx: CacheContext) -> str:
    """``template`` formatted with ``parameters`` (the task's), ``task_run`` (``id``,
    ``name``, ``task_name``, ``parameters``) and ``flow_run`` (``id``, ``name``,
    ``flow_name``, ``parameters``)."""
    return template.format(
        parameters=ctx.parameters, task_run=ctx.task_run, flow_run=_FlowRunView(ctx)
    )


class CachePlan:
    """What :func:`cache_plan` decided for one task run: a hit (``value``, ``record``) or a
    miss to :meth:`commit` after success or :meth:`abort` after failure."""

    __slots__ = (
        "options",
        "key",
        "hit",
        "record",
        "transaction",
        "_holder",
        "_locked",
        "_done",
        "task_name",
    )

    def __init__(
        self,
        options: CacheOptions | None,
        key: str | None,
        hit: bool = False,
        record: ResultRecord | None = None,
        transaction: Transaction | None = None,
        holder: str | None = None,
        task_name: str | None = None,
    ) -> None:
        self.options, self.key, self.hit, self.record = options, key, hit, record
        self.transaction, self.task_name = transaction, task_name
        self._holder, self._locked, self._done = holder, holder is not None, False

    @property
    def value(self) -> Any:
        """The cached value (hits only)."""
        if self.record is None:
            raise errors.BraidError("a cache miss has no value")
        return self.record.result

    def commit(self, value: Any) -> StagedResult | None:
        """Persist ``value`` under the key and release the key's lock.

        Inside a live (uncommitted) transaction the record is staged instead and the
        :class:`StagedResult` returned: the engine hands it back with the final state,
        and the process holding the transaction calls ``txn.stage_task_run(staged,
        on_commit, on_rollback)``.  A value the serializer cannot write is not persisted
        (a :class:`~braid.errors.CacheWarning`), and the run still succeeds, as in Prefect.
        """
        if self._done:
            return None
        self._done = True
        try:
            if self.options is None or self.key is None:
                return None
            opts = self.options
            expiration = (
                None
                if opts.expiration is None
                else dt.datetime.now(dt.timezone.utc) + opts.expiration
            )
            txn = self.transaction
            try:
                if txn is not None and not txn.is_committed() and not txn.is_rolled_back():
                    name = opts.store.stage(self.key, value, expiration, self.task_name)
                    return StagedResult(opts.store, self.key, name)
                self.record = opts.store.write(
                    self.key, value, expiration, task_name=self.task_name
                )
            except Exception as exc:  # noqa: BLE001 - a result we cannot store is not fatal
                warnings.warn(
                    errors.CacheWarning(
                        f"task {self.task_name!r}: result not persisted at {self.key!r}: "
                        f"{type(exc).__name__}: {exc}"
                    ),
                    stacklevel=2,
                )
            return None
        finally:
            self._unlock()

    def abort(self) -> None:
        """Give up the key without writing (the run failed): release its lock."""
        self._done = True
        self._unlock()

    def _unlock(self) -> None:
        if self._locked and self.options is not None and self.key is not None:
            self._locked = False
            try:
                _lock_manager(self.options).release_lock(self.key, self._holder)
            except ValueError:
                pass  # lapsed and taken by another: nothing of ours to release

    def __repr__(self) -> str:
        return f"CachePlan(key={self.key!r}, hit={self.hit})"


def _lock_manager(options: CacheOptions) -> Any:
    lm = getattr(options.policy, "lock_manager", None) or options.store.lock_manager
    if lm is None:
        raise errors.ConfigurationError(
            "SERIALIZABLE isolation needs a lock manager: cache_policy.configure("
            "isolation_level='SERIALIZABLE', lock_manager=MemoryLockManager() (threads), "
            "FileSystemLockManager(path) (processes), DaskLockManager() or RayLockManager())"
        )
    return lm


def _isolation(options: CacheOptions, txn: Transaction | None) -> IsolationLevel:
    level = getattr(options.policy, "isolation_level", None)
    if level is None and txn is not None:
        level = txn.isolation_level
    return IsolationLevel(level) if level is not None else IsolationLevel.READ_COMMITTED


def cache_plan(
    options: CacheOptions | None,
    ctx: CacheContext,
    transaction: Transaction | None = None,
    lock_timeout: float | None = None,
) -> CachePlan:
    """Decide, before a task run's first attempt, whether it is a cache hit.

    Computes the key (``result_storage_key`` template, else the policy), waits for the
    key's lock under ``SERIALIZABLE`` isolation (raising :class:`~braid.errors.LockTimeout`
    after ``lock_timeout`` seconds), then reads an unexpired record unless
    ``refresh_cache``.  Raises :class:`~braid.errors.CacheKeyError` when a policy the
    user chose cannot hash an input; with the default policy that is a
    :class:`~braid.errors.CacheKeyWarning` and the run goes on uncached.
    """
    task_name = getattr(ctx.task, "name", None)
    if options is None:
        return CachePlan(None, None, task_name=task_name)
    if transaction is not None and ctx.transaction_key is None:
        ctx.transaction_key = _nearest_key(transaction)
    if options.storage_key is not None:
        key: str | None = format_storage_key(options.storage_key, ctx)
    else:
        try:
            key = options.policy.compute_key(ctx, ctx.parameters, ctx.flow_parameters)
        except errors.CacheKeyError as exc:
            if options.policy_explicit:
                raise
            warnings.warn(errors.CacheKeyWarning(f"{exc}; the run is not cached"), stacklevel=2)
            key = None
        if key is None:
            # Persisted all the same, as in Prefect, under a key no look-up will find.
            return CachePlan(
                options, uuid.uuid4().hex, transaction=transaction, task_name=task_name
            )
    holder = None
    if _isolation(options, transaction) == IsolationLevel.SERIALIZABLE:
        holder = uuid.uuid4().hex
        if not _lock_manager(options).acquire_lock(key, holder, acquire_timeout=lock_timeout):
            raise errors.LockTimeout(
                f"task {task_name!r}: the lock on cache key {key!r} "
                f"was not free within {lock_timeout} s"
            )
    plan = CachePlan(options, key, transaction=transaction, holder=holder, task_name=task_name)
    if not options.refresh:
        try:
            record = options.store.read_fresh(key)
        except BaseException:
            plan.abort()
            raise
        if record is not None:
            plan.hit, plan.record = True, record
            plan.abort()
    return plan


def _nearest_key(txn: Transaction | None) -> str | None:
    while txn is not None:
        if txn.key:
            return txn.key
        txn = txn.get_parent()
    return None


def persist_flow_result(
    flow: Mapping[str, Any] | Any, value: Any, flow_run_id: Any, flow_name: str | None = None
) -> ResultRecord | None:
    """Persist a flow run's return value under its run id when the flow persists
    (``persist_result=True``, ``result_storage`` or ``result_serializer``); None if not."""
    f = _opts(flow, FLOW_OPTION_DEFAULTS)
    persist = f["persist_result"]
    if persist is None:
        persist = (
            f["result_storage"] is not None
            or f["result_serializer"] is not None
            or _env_flag("BRAID_RESULTS_PERSIST_BY_DEFAULT")
        )
    if not persist:
        return None
    store = ResultStore(
        result_storage=f["result_storage"],
        serializer=f["result_serializer"] or "pickle",
        cache_result_in_memory=f["cache_result_in_memory"],
    )
    return store.write(str(flow_run_id), value, task_name=flow_name)
