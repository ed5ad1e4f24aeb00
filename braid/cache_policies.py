"""Cache policies: recipes that turn a task run into a cache key, as Prefect defines them.

``DEFAULT`` is ``INPUTS + TASK_SOURCE + RUN_ID``; policies add up (``TASK_SOURCE +
INPUTS``), ``INPUTS - "debug"`` leaves a parameter out, ``NO_CACHE`` turns caching off,
and ``.configure(key_storage=, lock_manager=, isolation_level=)`` returns a configured
copy.  A key is a hex digest that is the same in every process and on every machine:
values are hashed by what they hold, never by ``id`` or ``hash()``.  NumPy arrays are
hashed by their buffer (dtype and shape, then the bytes, in C with no per-element
Python work), pandas objects by ``pandas.util.hash_pandas_object``, plain data by
its contents, anything else by its cloudpickle bytes.
"""

from __future__ import annotations

import copy
import hashlib
import pickle
import struct
from collections.abc import Callable
from typing import Any

from braid import errors

__all__ = [
    "CacheContext",
    "CachePolicy",
    "CacheKeyFnPolicy",
    "CompoundCachePolicy",
    "Inputs",
    "TaskSource",
    "FlowParameters",
    "RunId",
    "INPUTS",
    "TASK_SOURCE",
    "FLOW_PARAMETERS",
    "RUN_ID",
    "NO_CACHE",
    "NONE",
    "DEFAULT",
    "NoCache",
    "hash_objects",
    "task_input_hash",
]


# -- the run a key is computed for ------------------------------------------------------
class _RunView:
    """What ``context.task_run`` offers a cache key function."""

    __slots__ = ("id", "name", "flow_run_id", "task_name", "parameters")

    def __init__(
        self,
        id: Any,
        name: str,
        flow_run_id: Any,
        task_name: str,  # noqa: A002
        parameters: dict[str, Any],
    ) -> None:
        self.id, self.name, self.flow_run_id = id, name, flow_run_id
        self.task_name, self.parameters = task_name, parameters

    def __repr__(self) -> str:
        return f"TaskRun(id={self.id!r}, name={self.name!r}, flow_run_id={self.flow_run_id!r})"


class CacheContext:
    """The run a cache key is computed for: what a policy and a ``cache_key_fn(context,
    parameters)`` may read.

    Attribute paths follow Prefect's ``TaskRunContext``: ``context.task`` (with ``.fn``,
    ``.name``), ``context.task_run.id``, ``.name``, ``.flow_run_id``, ``.parameters``,
    plus the shortcuts ``task_run_id``, ``flow_run_id``, ``parameters``,
    ``flow_parameters``, and ``transaction_key`` (the nearest enclosing transaction
    with a key, which ``RUN_ID`` prefers: see :class:`RunId`).  The engine builds one
    per run on the worker; it holds nothing but the task and plain values.
    """

    __slots__ = (
        "task",
        "task_run",
        "parameters",
        "flow_parameters",
        "flow_run_name",
        "flow_name",
        "transaction_key",
    )

    def __init__(
        self,
        task: Any,
        task_run_id: Any,
        parameters: dict[str, Any] | None = None,
        flow_run_id: Any = None,
        flow_parameters: dict[str, Any] | None = None,
        task_run_name: str | None = None,
        flow_run_name: str | None = None,
        flow_name: str | None = None,
        transaction_key: str | None = None,
    ) -> None:
        self.task = task
        self.parameters = dict(parameters or {})
        self.flow_parameters = dict(flow_parameters or {})
        name = getattr(task, "name", None) or getattr(getattr(task, "fn", None), "__name__", "")
        self.task_run = _RunView(
            task_run_id,
            task_run_name or f"{name}-{task_run_id}",
            flow_run_id,
            name,
            self.parameters,
        )
        self.flow_run_name, self.flow_name = flow_run_name, flow_name
        self.transaction_key = transaction_key

    @property
    def task_run_id(self) -> Any:
        """The task run's id."""
        return self.task_run.id

    @property
    def flow_run_id(self) -> Any:
        """The enclosing flow run's id, or None for a task run outside any flow."""
        return self.task_run.flow_run_id

    def __repr__(self) -> str:
        return f"CacheContext(task={self.task_run.task_name!r}, task_run={self.task_run!r})"


# -- hashing ----------------------------------------------------------------------------
_SCALARS = (type(None), bool, int, float, complex)
_MAX_DEPTH = 32


def _feed(h: Any, value: Any, path: str, depth: int) -> None:
    t = type(value)
    if t is str:
        b = value.encode("utf-8", "surrogatepass")
        h.update(b"s" + struct.pack("<Q", len(b)) + b)
    elif t is bytes:
        h.update(b"b" + struct.pack("<Q", len(value)) + value)
    elif t in _SCALARS:
        r = repr(value).encode()
        h.update(b"n" + t.__name__.encode() + b":" + struct.pack("<Q", len(r)) + r)
    elif depth > _MAX_DEPTH:
        _feed_pickle(h, value, path)
    elif t is list or t is tuple:
        h.update(b"l" if t is list else b"t")
        h.update(struct.pack("<Q", len(value)))
        for i, v in enumerate(value):
            _feed(h, v, f"{path}[{i}]", depth + 1)
    elif t is dict:
        parts = sorted(
            (_digest(k, f"{path} key {k!r}", depth + 1), _digest(v, f"{path}[{k!r}]", depth + 1))
            for k, v in value.items()
        )
        h.update(b"d" + struct.pack("<Q", len(parts)))
        for k, v in parts:
            h.update(k + v)
    elif t is set or t is frozenset:
        parts = sorted(_digest(v, f"{path}{{{v!r}}}", depth + 1) for v in value)
        h.update(b"e" + struct.pack("<Q", len(parts)) + b"".join(parts))
    elif _feed_array_like(h, value, path, depth):
        pass
    else:
        _feed_pickle(h, value, path)


def _digest(value: Any, path: str, depth: int) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    _feed(h, value, path, depth)
    return h.digest()


def _feed_array_like(h: Any, value: Any, path: str, depth: int) -> bool:
    module = type(value).__module__.partition(".")[0]
    if module == "numpy" and hasattr(value, "__array_interface__") and hasattr(value, "dtype"):
        if value.dtype.hasobject:
            return False  # elements are Python objects: pickle them
        import numpy as np

        arr = np.ascontiguousarray(value)
        head = f"{type(value).__qualname__}|{arr.dtype.str}|{arr.shape}".encode()
        h.update(b"a" + struct.pack("<Q", len(head)) + head)
        h.update(memoryview(arr.reshape(-1)).cast("B"))
        return True
    if module == "pandas" and type(value).__name__ in ("DataFrame", "Series", "Index"):
        import pandas as pd

        if isinstance(value, pd.DataFrame):
            # Column order does not matter, as in Prefect's stable transform.
            h.update(b"pdf")
            for col in sorted(value.columns, key=repr):
                _feed(h, repr(col), f"{path}[{col!r}]", depth + 1)
                _feed(h, value[col], f"{path}[{col!r}]", depth + 1)
            return True
        h.update(b"p" + type(value).__name__.encode() + str(value.dtype).encode())
        _feed(h, repr(getattr(value, "name", None)), path, depth + 1)
        _feed(h, pd.util.hash_pandas_object(value, index=True).to_numpy(), path, depth + 1)
        return True
    if isinstance(value, (bytearray, memoryview)):
        mv = memoryview(value).cast("B") if memoryview(value).contiguous else None
        if mv is not None:
            h.update(b"m" + struct.pack("<Q", mv.nbytes))
            h.update(mv)
            return True
    return False


def _feed_pickle(h: Any, value: Any, path: str) -> None:
    try:
        import cloudpickle

        blob = cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - named below, with the culprit's path
        raise _Unhashable(path, value) from exc
    h.update(b"p" + struct.pack("<Q", len(blob)) + blob)


class _Unhashable(Exception):
    def __init__(self, path: str, value: Any) -> None:
        super().__init__(path)
        self.path, self.value = path, value


def _diagnose(exc: _Unhashable) -> str:
    from braid.core.serialization import find_unpicklable

    return find_unpicklable(exc.value, exc.path) or f"{exc.path} → {type(exc.value).__name__}"


def hash_objects(*objects: Any) -> str:
    """A 32-character hex digest of ``objects`` that is the same in every process and on
    every machine; raises ``TypeError`` naming the path to a part that cannot be hashed."""
    h = hashlib.blake2b(digest_size=16)
    try:
        for i, obj in enumerate(objects):
            _feed(h, obj, f"#{i}", 0)
    except _Unhashable as exc:
        raise TypeError(f"cannot hash {_diagnose(exc)}") from exc.__cause__
    return h.hexdigest()


def _hash_named(values: dict[str, Any], ctx: CacheContext | None, what: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    try:
        for name in sorted(values):
            _feed(h, name, "name", 0)
            _feed(h, values[name], name, 0)
    except _Unhashable as exc:
        task = getattr(getattr(ctx, "task", None), "name", None) or "?"
        param = exc.path.split("[", 1)[0].split(" ", 1)[0].split(".", 1)[0]
        raise errors.CacheKeyError(
            f"task {task!r}: cannot compute the cache key: {what} {param!r} → "
            f"{_diagnose(exc)}.  Leave it out of the key with cache_policy=INPUTS - "
            f"{param!r} (plus any other policies you use), or pass a cache_key_fn(context, "
            f"parameters) that returns a key from the parts that matter"
        ) from exc.__cause__
    return h.hexdigest()


def task_input_hash(context: CacheContext, arguments: dict[str, Any]) -> str | None:
    """Prefect's ready-made ``cache_key_fn``: a hash of the task's name, its code and its
    arguments; None (no caching) when an argument cannot be hashed."""
    fn = getattr(context.task, "fn", None)
    code = getattr(fn, "__code__", None)
    try:
        return hash_objects(
            getattr(context.task, "name", ""), code.co_code if code is not None else b"", arguments
        )
    except TypeError:
        return None


# -- policies ---------------------------------------------------------------------------
class CachePolicy:
    """A recipe for a task run's cache key; ``compute_key`` returns the key, or None for
    "do not cache this run"."""

    def __init__(
        self, key_storage: Any = None, isolation_level: Any = None, lock_manager: Any = None
    ) -> None:
        self.key_storage = key_storage
        self.isolation_level = isolation_level
        self.lock_manager = lock_manager

    @classmethod
    def from_cache_key_fn(
        cls, cache_key_fn: Callable[[CacheContext, dict[str, Any]], str | None]
    ) -> CacheKeyFnPolicy:
        """The policy that asks ``cache_key_fn(context, parameters)`` for the key."""
        return CacheKeyFnPolicy(cache_key_fn=cache_key_fn)

    def configure(
        self, key_storage: Any = None, lock_manager: Any = None, isolation_level: Any = None
    ) -> CachePolicy:
        """A copy of this policy with cache records kept in ``key_storage`` (a path, URL or
        filesystem), locks from ``lock_manager``, and ``isolation_level``
        (``"READ_COMMITTED"`` or ``"SERIALIZABLE"``); arguments left None keep theirs."""
        new = copy.copy(self)
        if key_storage is not None:
            new.key_storage = key_storage
        if lock_manager is not None:
            new.lock_manager = lock_manager
        if isolation_level is not None:
            from braid.transactions import IsolationLevel

            new.isolation_level = IsolationLevel(isolation_level)
        return new

    def compute_key(
        self,
        task_ctx: CacheContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """The cache key of this run, or None to leave it uncached."""
        raise NotImplementedError

    def __sub__(self, other: str) -> CachePolicy:
        if not isinstance(other, str):
            raise TypeError("only parameter names (str) can be subtracted from a cache policy")
        return self

    def __add__(self, other: CachePolicy) -> CachePolicy:
        if isinstance(other, NoCache):
            return self
        if not isinstance(other, CachePolicy):
            return NotImplemented
        for attr, what in (
            ("key_storage", "storage locations"),
            ("isolation_level", "isolation levels"),
            ("lock_manager", "lock managers"),
        ):
            mine, theirs = getattr(self, attr), getattr(other, attr)
            if mine is not None and theirs is not None and mine != theirs:
                raise ValueError(f"cannot add cache policies with different {what}")
        return CompoundCachePolicy(
            policies=[self, other],
            key_storage=self.key_storage or other.key_storage,
            isolation_level=self.isolation_level or other.isolation_level,
            lock_manager=self.lock_manager or other.lock_manager,
        )

    def _fields(self) -> tuple[Any, ...]:
        return (self.key_storage, self.isolation_level, self.lock_manager)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._fields() == self._fields()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(type(self).__name__)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CacheKeyFnPolicy(CachePolicy):
    """The key is whatever ``cache_key_fn(context, parameters)`` returns."""

    def __init__(
        self,
        cache_key_fn: Callable[[CacheContext, dict[str, Any]], str | None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cache_key_fn = cache_key_fn

    def compute_key(
        self,
        task_ctx: CacheContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """``cache_key_fn(task_ctx, inputs)``; None when there is no function."""
        return None if self.cache_key_fn is None else self.cache_key_fn(task_ctx, inputs)

    def _fields(self) -> tuple[Any, ...]:
        return (*super()._fields(), self.cache_key_fn)


class CompoundCachePolicy(CachePolicy):
    """Several policies in one: the key hashes each policy's key (those returning None are
    skipped; None if all are).  ``INPUTS`` policies merge into one whose exclusions are
    the union of theirs."""

    def __init__(self, policies: list[CachePolicy] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        flat = [
            q
            for p in policies or []
            for q in (p.policies if isinstance(p, CompoundCachePolicy) else [p])
        ]
        inputs = [p for p in flat if isinstance(p, Inputs)]
        self.policies = [p for p in flat if not isinstance(p, Inputs)]
        if inputs:
            self.policies.append(Inputs(exclude=sorted({e for p in inputs for e in p.exclude})))

    def compute_key(
        self,
        task_ctx: CacheContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """A hash of the keys of the parts; None when every part returns None."""
        keys = [
            k
            for p in self.policies
            if (k := p.compute_key(task_ctx, inputs, flow_parameters, **kwargs)) is not None
        ]
        return hash_objects(*keys) if keys else None

    def __add__(self, other: CachePolicy) -> CachePolicy:
        combined = super().__add__(other)
        if isinstance(combined, CompoundCachePolicy) and isinstance(other, CompoundCachePolicy):
            combined = CompoundCachePolicy(
                policies=[*self.policies, *other.policies],
                key_storage=combined.key_storage,
                isolation_level=combined.isolation_level,
                lock_manager=combined.lock_manager,
            )
        return combined

    def __sub__(self, other: str) -> CachePolicy:
        if not isinstance(other, str):
            raise TypeError("only parameter names (str) can be subtracted from a cache policy")
        if not any(isinstance(p, Inputs) for p in self.policies):
            return self
        return CompoundCachePolicy(
            policies=[*self.policies, Inputs(exclude=[other])],
            key_storage=self.key_storage,
            isolation_level=self.isolation_level,
            lock_manager=self.lock_manager,
        )

    def _fields(self) -> tuple[Any, ...]:
        return (*super()._fields(), tuple(self.policies))

    def __repr__(self) -> str:
        return " + ".join(repr(p) for p in self.policies)


class NoCache(CachePolicy):
    """Never a key: no caching and no persistence by key."""

    def compute_key(
        self,
        task_ctx: CacheContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """Always None."""
        return None

    def __add__(self, other: CachePolicy) -> CachePolicy:
        return other

    def __repr__(self) -> str:
        return "NO_CACHE"


class TaskSource(CachePolicy):
    """The key hashes the task function's source text (not that of tasks it calls).

    Reads ``task.source_code`` when the task carries it (set it at decoration so the key
    is the same on a host without the source file), else the source file, else the
    function's bytecode.
    """

    def compute_key(
        self,
        task_ctx: CacheContext,
        inputs: dict[str, Any] | None,
        flow_parameters: dict[str, Any] | None,
        **kwargs: Any,
    ) -> str | None:
        """A hash of the task's source; None without a task."""
        task = getattr(task_ctx, "task", None)
        if task is None:
            return None
        return hash_objects(source_of(task))

    def __repr__(self) -> str:
        return "TASK_SOURCE"


def source_of(task: Any) -> str | bytes:
    """The text ``TASK_SOURCE`` hashes for ``task`` (source, else bytecode)."""
    source = getattr(task, "source_code", None)
    if source is not None:
        return source
    fn = getattr(task, "fn", task)
    import inspect

    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        return code.co_code if code is not None else repr(fn)


class FlowParameters(CachePolicy):
    """The key hashes the parameters of the enclosing flow run (None outside a flow or
    for a flow without parameters)."""

    def compute_key(
        self,
        task_ctx: CacheContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """A hash of ``flow_parameters``; None when there are none."""
        if not flow_parameters:
            return None
        return _hash_named(flow_parameters, task_ctx, "flow parameter")

    def __repr__(self) -> str:
        return "FLOW_PARAMETERS"


class RunId(CachePolicy):
    """The key is the flow run's id, or the task run's id for a task run outside a flow.

    braid adds one rule: inside a transaction that has a key, the transaction's key
    stands in for the run id, so re-running a committed keyed transaction in a new
    flow run finds its tasks' records (idempotency with the ``DEFAULT`` policy).
    """

    def compute_key(
        self,
        task_ctx: CacheContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """The transaction key, flow run id or task run id, as a string."""
        if task_ctx is None:
            return None
        if getattr(task_ctx, "transaction_key", None):
            return f"txn:{task_ctx.transaction_key}"
        run = task_ctx.task_run
        return str(run.flow_run_id if run.flow_run_id is not None else run.id)

    def __repr__(self) -> str:
        return "RUN_ID"


class Inputs(CachePolicy):
    """The key hashes the task's inputs, except the parameters named in ``exclude``."""

    def __init__(self, exclude: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.exclude = list(exclude or [])

    def compute_key(
        self,
        task_ctx: CacheContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """A hash of the inputs not excluded; None for a task without inputs; raises
        :class:`braid.errors.CacheKeyError` naming an input that cannot be hashed."""
        if not inputs:
            return None
        kept = {k: v for k, v in inputs.items() if k not in self.exclude}
        return _hash_named(kept, task_ctx, "parameter")

    def __sub__(self, other: str) -> CachePolicy:
        if not isinstance(other, str):
            raise TypeError("only parameter names (str) can be subtracted from a cache policy")
        return Inputs(
            exclude=[*self.exclude, other],
            key_storage=self.key_storage,
            isolation_level=self.isolation_level,
            lock_manager=self.lock_manager,
        )

    def _fields(self) -> tuple[Any, ...]:
        return (*super()._fields(), tuple(self.exclude))

    def __repr__(self) -> str:
        return "INPUTS" + "".join(f" - {e!r}" for e in self.exclude)


INPUTS = Inputs()
NONE = NoCache()
NO_CACHE = NoCache()
TASK_SOURCE = TaskSource()
FLOW_PARAMETERS = FlowParameters()
RUN_ID = RunId()
DEFAULT = INPUTS + TASK_SOURCE + RUN_ID
