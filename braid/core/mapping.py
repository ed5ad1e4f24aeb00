"""What ``Task.map()`` submits: one row of arguments per run, from iterables zipped.

``rows(...)`` turns the arguments of a ``.map()`` call into one ``(args, kwargs)`` pair
per run.  Iterables (not str/bytes; a dict gives its keys; a generator is consumed; a
future whose result is iterable is waited for) are zipped; anything else, and anything
wrapped in ``unmapped``, is given to every run.  The rows are built by ``zip`` in C, and
the runs of one map with no keyword arguments share one empty dict (nothing downstream
writes to a call's kwargs: the engine calls the task with ``**kwargs``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from braid import errors
from braid.core.annotations import unmapped
from braid.core.futures import TaskFuture

if TYPE_CHECKING:
    import inspect

__all__ = ["as_map_iterable", "rows"]


def as_map_iterable(value: Any) -> list[Any] | None:
    """The elements to map over for one argument, or None when it is broadcast."""
    if isinstance(value, unmapped):
        return None
    if isinstance(value, TaskFuture):
        value = value.result()
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            return None
    if isinstance(value, (str, bytes, bytearray)):
        return None
    if isinstance(value, dict):
        return list(value.keys())
    if isinstance(value, Iterable):
        return list(value)
    return None


def rows(
    task_name: str,
    signature: Callable[[], inspect.Signature | None],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """One ``(args, kwargs)`` per run of ``task_name.map(*args, **kwargs)``.

    Raises ``MappingMissingIterable`` when nothing is iterable and
    ``MappingLengthMismatch`` when the iterables differ in length (``signature()`` gives
    the task's signature, to name the parameters in those messages).
    """
    mapped: dict[Any, list[Any]] = {}
    static: dict[Any, Any] = {}
    for key, value in [*enumerate(args), *kwargs.items()]:
        as_list = as_map_iterable(value)
        if as_list is None:
            static[key] = value.value if isinstance(value, unmapped) else value
        else:
            mapped[key] = as_list
    if not mapped:
        described = ", ".join(_describe(k, signature) for k in static) or "no arguments"
        raise errors.MappingMissingIterable(
            f"task {task_name!r}.map() got no iterable argument to map over "
            f"(got {described}); pass a list, tuple, set, dict, "
            f"generator or a future of one, or use .submit() for a single run"
        )
    lengths = {k: len(v) for k, v in mapped.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{_describe(k, signature)} has {n}" for k, n in lengths.items())
        raise errors.MappingLengthMismatch(
            f"task {task_name!r}.map() got iterables of different lengths: {detail}; "
            f"make them equal or wrap the ones to broadcast in unmapped()"
        )
    n = next(iter(lengths.values()))
    columns = [
        mapped[j] if j in mapped else itertools.repeat(static[j], n) for j in range(len(args))
    ]
    positional: Iterable[tuple[Any, ...]] = zip(*columns, strict=False) if columns else [()] * n
    if not kwargs:
        empty: dict[str, Any] = {}
        return [(a, empty) for a in positional]
    keys = list(kwargs)
    named = zip(
        *(mapped[k] if k in mapped else itertools.repeat(static[k], n) for k in keys),
        strict=False,
    )
    return [(a, dict(zip(keys, v, strict=True))) for a, v in zip(positional, named, strict=True)]


def _describe(key: Any, signature: Callable[[], inspect.Signature | None]) -> str:
    import inspect  # only to word an error: `import braid` does not load it

    if isinstance(key, str):
        return f"parameter {key!r}"
    try:
        sig = signature()
        if sig is not None:
            params = list(sig.parameters)
            if key < len(params) and sig.parameters[params[key]].kind in (
                inspect.Parameter.POSITIONAL_ONLY,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
            ):
                return f"parameter {params[key]!r}"
    except (TypeError, ValueError):
        pass
    return f"positional argument {key}"
