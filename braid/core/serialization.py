"""Pickling of calls and states for runners that ship them elsewhere, with a diagnosis
that names the culprit when pickling fails.

The happy path is one ``cloudpickle.dumps``; only when it fails does
:func:`find_unpicklable` walk the object (containers, dataclass fields, instance
attributes, a function's closure, globals and defaults) to name the first part
that cannot be pickled, e.g.
``task 'load': parameter 'cfg' → cfg['conn'] → sqlite3.Connection: cannot pickle
'sqlite3.Connection' object``.
"""

from __future__ import annotations

import io
import pickle
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import cloudpickle

from braid import errors
from braid.core.resolve import UpstreamSlot
from braid.core.states import Failed, State

if TYPE_CHECKING:
    from braid.core.calls import TaskCall

__all__ = [
    "dumps",
    "loads",
    "dumps_call",
    "dumps_state",
    "dumps_result",
    "find_unpicklable",
    "describe_call_failure",
]

loads: Callable[[bytes], Any] = cloudpickle.loads
_MAX_DEPTH = 12


def dumps(obj: Any) -> bytes:
    """``cloudpickle.dumps`` with the highest protocol."""
    data: bytes = cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return data


def _try_dump(obj: Any) -> BaseException | None:
    try:
        cloudpickle.dump(obj, io.BytesIO(), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - any failure is what we are looking for
        return exc
    return None


def _type_name(obj: Any) -> str:
    t = type(obj)
    module = t.__module__
    return t.__qualname__ if module in ("builtins", None) else f"{module}.{t.__qualname__}"


def _children(obj: Any, path: str) -> list[tuple[str, Any]]:
    """The parts of ``obj`` a pickler would visit, each with the path to it."""
    if isinstance(obj, dict):
        return [(f"{path}[{k!r}]", v) for k, v in obj.items()]
    if isinstance(obj, (list, tuple)):
        return [(f"{path}[{i}]", v) for i, v in enumerate(obj)]
    if isinstance(obj, (set, frozenset)):
        return [(f"{path}{{{v!r}}}", v) for v in obj]
    if isinstance(obj, types.FunctionType):
        out: list[tuple[str, Any]] = []
        code = obj.__code__
        if obj.__closure__:
            for name, cell in zip(code.co_freevars, obj.__closure__, strict=False):
                try:
                    out.append((f"{path} → closure variable {name!r}", cell.cell_contents))
                except ValueError:
                    pass
        g = obj.__globals__
        for name in code.co_names:
            if name in g and not isinstance(g[name], types.ModuleType):
                out.append((f"{path} → global {name!r}", g[name]))
        for i, d in enumerate(obj.__defaults__ or ()):
            out.append((f"{path} → default {i}", d))
        for k, d in (obj.__kwdefaults__ or {}).items():
            out.append((f"{path} → default {k!r}", d))
        return out
    if isinstance(obj, types.MethodType):
        return [(f"{path}.__self__", obj.__self__), (f"{path}.__func__", obj.__func__)]
    if hasattr(type(obj), "__dataclass_fields__") and not isinstance(obj, type):
        import dataclasses

        return [(f"{path}.{f.name}", getattr(obj, f.name, None)) for f in dataclasses.fields(obj)]
    d = getattr(obj, "__dict__", None)
    if isinstance(d, dict):
        return [(f"{path}.{k}", v) for k, v in d.items()]
    slots = getattr(type(obj), "__slots__", ())
    if isinstance(slots, str):
        slots = (slots,)
    return [(f"{path}.{s}", getattr(obj, s)) for s in slots if hasattr(obj, s)]


def find_unpicklable(
    obj: Any, path: str, _depth: int = 0, _seen: set[int] | None = None
) -> str | None:
    """Name the deepest part of ``obj`` that cannot be pickled, as ``path → ... → type: why``.

    Returns None if ``obj`` pickles.
    """
    exc = _try_dump(obj)
    if exc is None:
        return None
    seen = _seen if _seen is not None else set()
    if id(obj) not in seen and _depth < _MAX_DEPTH:
        seen.add(id(obj))
        for child_path, child in _children(obj, path):
            found = find_unpicklable(child, child_path, _depth + 1, seen)
            if found is not None:
                return found
    return f"{path} → {_type_name(obj)}: {exc}"


def describe_call_failure(task: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """Why a call of ``task`` with these parameters cannot be pickled, naming the culprit."""
    head = f"task {task.name!r}"
    found = find_unpicklable(task.fn, f"function {getattr(task.fn, '__name__', task.name)!r}")
    if found is not None:
        return f"{head}: {found}"
    try:
        params = task.bind(args, kwargs)
    except TypeError:
        params = {**{f"#{i}": a for i, a in enumerate(args)}, **kwargs}
    for name, value in params.items():
        found = find_unpicklable(value, name)
        if found is not None:
            return f"{head}: parameter {name!r} → {found}"
    for opt in ("retry_condition_fn", "retry_delay_seconds", "task_run_name"):
        value = getattr(task, opt, None)
        found = find_unpicklable(value, opt) if value is not None else None
        if found is not None:
            return f"{head}: option {found}"
    return f"{head}: the call cannot be pickled"


_PLAIN = frozenset({int, float, str, bytes, bool, type(None), complex})


def _plain(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` is plain data (numbers, strings, and lists, tuples, sets and dicts
    of them): data that pickles the same with the C pickler as with cloudpickle."""
    t = type(value)
    if t in _PLAIN:
        return True
    if depth > 3:
        return False
    if t is list or t is tuple or t is set or t is frozenset:
        return all(_plain(v, depth + 1) for v in value)
    if t is dict:
        return all(type(k) in _PLAIN and _plain(v, depth + 1) for k, v in value.items())
    if t is UpstreamSlot:
        return True
    return False


def dumps_call(call: TaskCall) -> bytes:
    """Pickle a task call; on failure raise :class:`SerializationError` naming the culprit.

    A call whose arguments are plain data goes through the C pickler (braid's own
    records and the task, already pickled once by cloudpickle, are all it holds besides);
    any other through cloudpickle, which pickles by value what a worker could not import
    (``__main__``, closures).
    """
    if _plain(call.args) and _plain(call.kwargs) and not cloudpickle_by_value_modules():
        try:
            return pickle.dumps(call, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - cloudpickle says what is wrong, below
            pass
    try:
        data: bytes = cloudpickle.dumps(call, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001
        message = describe_call_failure(call.task, call.args, call.kwargs)
        raise errors.SerializationError(
            f"{message}.  Runners that run tasks in other processes pickle every call: "
            f"pass something picklable (a path, a config) and open the resource inside the "
            f"task"
        ) from exc
    return data


def cloudpickle_by_value_modules() -> bool:
    """Whether the user asked cloudpickle to pickle some module by value (then only
    cloudpickle may pickle calls)."""
    return bool(getattr(cloudpickle.cloudpickle, "_PICKLE_BY_VALUE_MODULES", None))


def dumps_result(obj: Any) -> bytes:
    """Pickle what a worker sends back: the C pickler first, cloudpickle if it cannot.

    Safe for the way back only: the C pickler refers to classes and functions by name,
    and checks that the name finds the very same object, so anything made inside a task
    (or loaded by value) fails over to cloudpickle; what it does write, the driver can
    import.  It costs a fraction of cloudpickle's per call.
    """
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - by value, then
        data: bytes = cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        return data


def dumps_state(state: State, task_name: str = "task") -> bytes:
    """Pickle a task run's final state; an unpicklable result becomes a FAILED state."""
    return pickle_state(state, task_name)[1]


def pickle_state(state: State, task_name: str = "task") -> tuple[State, bytes]:
    """``(the state that was pickled, its bytes)``: ``state``, or the FAILED state that
    replaces it when its result or exception cannot be pickled."""
    try:
        return state, dumps_result(state)
    except Exception as exc:  # noqa: BLE001
        what = "return value" if state.is_completed() else "exception"
        found = find_unpicklable(state.data, what) or f"{what}: {exc}"
        err = errors.SerializationError(
            f"task run {state.task_run_name or task_name!r}: {found}; the {what} must be "
            f"picklable to leave the worker"
        )
        failed = Failed(err)
        failed.task_run_name = state.task_run_name
        failed.extra = state.extra
        try:
            return failed, cloudpickle.dumps(failed, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - extra (log records) may hold the culprit
            failed.extra = None
            return failed, cloudpickle.dumps(failed, protocol=pickle.HIGHEST_PROTOCOL)
