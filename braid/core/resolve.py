"""Finding futures in task parameters, and putting upstream results in their place.

At submit, :func:`extract` walks the parameters once (lists, tuples, sets, dict
values, dataclass fields; not into ``quote``) and replaces every future with an
:class:`UpstreamSlot` numbered by its position in the call's upstream list.  The
runner waits for (or hands the backend) that list; wherever the task runs, the
engine calls :func:`materialize` with the upstreams' final states to put the
values in the slots.  Parameters without futures are neither copied nor walked
twice.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from braid.core.annotations import allow_failure, opaque, quote
from braid.core.futures import FutureList, TaskFuture
from braid.core.states import State

__all__ = [
    "ATOMIC_TYPES",
    "ONE_UPSTREAM_ARGS",
    "REQUIRED_ONE",
    "UpstreamSlot",
    "Extraction",
    "extract",
    "materialize",
    "walk_replace",
]

#: types whose values never hold a future: an argument of one needs no walking
ATOMIC_TYPES = _ATOMIC = frozenset({int, float, str, bytes, bool, type(None), complex, range})
_unchanged: Any = object()  # what walk_replace gives for "nothing replaced"


class UpstreamSlot:
    """Stands for upstream number ``index`` inside a shipped call's parameters."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self) -> tuple[type[UpstreamSlot], tuple[int]]:
        return (UpstreamSlot, (self.index,))

    def __repr__(self) -> str:
        return f"UpstreamSlot({self.index})"


# UpstreamSlot(i) is immutable: the first ones are made once and shared
_SLOTS: list[UpstreamSlot] = [UpstreamSlot(n) for n in range(32)]

#: the arguments of a call whose only argument is one future (a chain's link), shared
#: by every such call: the engine knows them by identity and skips the general fill-in
ONE_UPSTREAM_ARGS: tuple[UpstreamSlot] = (_SLOTS[0],)


def _slot(i: int) -> UpstreamSlot:
    return _SLOTS[i] if i < 32 else UpstreamSlot(i)


REQUIRED_ONE = _REQUIRED = (True,)
_ALLOWED = (False,)


class Extraction:
    """The futures found in a call: ``upstreams`` in slot order, and which must succeed."""

    __slots__ = ("upstreams", "must_succeed", "_index", "flat")

    def __init__(self) -> None:
        self.upstreams: list[TaskFuture[Any]] = []
        self.must_succeed: Any = ()  # a shared tuple until a second upstream comes
        self._index: dict[int, int] | None = None  # made at the second upstream
        #: every slot is a top-level argument (the engine then skips the deep walk)
        self.flat = False

    def add(self, future: TaskFuture[Any], allow: bool) -> int:
        ups = self.upstreams
        if not ups:  # the first upstream (often the only one) needs no index
            ups.append(future)
            self.must_succeed = _ALLOWED if allow else _REQUIRED
            return 0
        index = self._index
        if index is None:
            index = self._index = {id(ups[0]): 0}
            self.must_succeed = list(self.must_succeed)
        key = id(future)
        i = index.get(key)
        if i is None:
            i = index[key] = len(ups)
            ups.append(future)
            self.must_succeed.append(not allow)
        elif not allow:
            self.must_succeed[i] = True
        return i


def walk_replace(
    obj: Any,
    on_future: Callable[[Any, bool], Any],
    on_quote: Callable[[Any], Any],
    allow: bool = False,
    on_state: Callable[[State], Any] | None = None,
) -> Any:
    """Return ``obj`` with futures and quotes replaced, or ``_unchanged`` if none were found.

    ``on_future(future, allow)`` gives the replacement of a future (``allow`` is True
    under ``allow_failure``); ``on_quote(q)`` the replacement of a ``quote``; and, when
    given, ``on_state(state)`` the replacement of a State.
    Containers holding a replacement are rebuilt; the others are returned as they are.
    """
    t = type(obj)
    if t in _ATOMIC:
        return _unchanged
    if isinstance(obj, (TaskFuture, UpstreamSlot)):
        return on_future(obj, allow)
    if on_state is not None and isinstance(obj, State):
        return on_state(obj)
    if t is list or t is tuple or t is set or t is frozenset:
        out, changed = [], False
        for item in obj:
            new = walk_replace(item, on_future, on_quote, allow, on_state)
            if new is _unchanged:
                out.append(item)
            else:
                out.append(new)
                changed = True
        return t(out) if changed else _unchanged
    if t is dict:
        new_d, changed = {}, False
        for k, v in obj.items():
            new = walk_replace(v, on_future, on_quote, allow, on_state)
            if new is _unchanged:
                new_d[k] = v
            else:
                new_d[k] = new
                changed = True
        return new_d if changed else _unchanged
    if t is quote:
        return on_quote(obj)
    if t is opaque:  # a future at the top: resolved; anything else: kept, never walked
        inner = obj.value
        if isinstance(inner, (TaskFuture, UpstreamSlot)):
            return on_future(inner, allow)
        return on_quote(obj)
    if t is allow_failure:
        new = walk_replace(obj.value, on_future, on_quote, True, on_state)
        return obj.value if new is _unchanged else new
    if hasattr(t, "__dataclass_fields__") and not isinstance(obj, type):
        import dataclasses  # loaded by the user's code already, since obj is a dataclass

        changes = {}
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name, None)
            new = walk_replace(v, on_future, on_quote, allow, on_state)
            if new is not _unchanged:
                changes[f.name] = new
        if not changes:
            return _unchanged
        clone = copy.copy(obj)
        for name, v in changes.items():
            object.__setattr__(clone, name, v)
        return clone
    if isinstance(obj, (list, tuple, set, frozenset, dict)):
        # subclasses (namedtuples, OrderedDict, ...) are walked but rebuilt by their type
        return _walk_subclass(obj, on_future, on_quote, allow, on_state)
    return _unchanged


def _walk_subclass(
    obj: Any,
    on_future: Callable[[Any, bool], Any],
    on_quote: Callable[[quote[Any]], Any],
    allow: bool,
    on_state: Callable[[State], Any] | None,
) -> Any:
    if isinstance(obj, dict):
        by_key = {k: walk_replace(v, on_future, on_quote, allow, on_state) for k, v in obj.items()}
        if all(v is _unchanged for v in by_key.values()):
            return _unchanged
        clone = copy.copy(obj)
        for k, v in by_key.items():
            if v is not _unchanged:
                clone[k] = v
        return clone
    items = [walk_replace(v, on_future, on_quote, allow, on_state) for v in obj]
    if all(v is _unchanged for v in items):
        return _unchanged
    values = [old if new is _unchanged else new for old, new in zip(obj, items, strict=False)]
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*values)
    if isinstance(obj, FutureList):
        return values  # futures replaced by results: a plain list
    return type(obj)(values)


def _keep_quote(q: quote[Any]) -> Any:
    return q


def extract(
    args: tuple[Any, ...], kwargs: dict[str, Any], wait_for: Any = None
) -> tuple[tuple[Any, ...], dict[str, Any], Extraction] | None:
    """Replace futures in ``args``/``kwargs`` with slots; None when there is nothing to do.

    ``wait_for`` futures join the upstream list without a slot.  Quotes are kept (the
    engine unwraps them), but their presence makes the result non-None so the engine
    knows to walk the parameters.
    """
    if not wait_for:  # the most common call: plain values only, nothing to make
        atomic = _ATOMIC
        for a in args:
            if type(a) not in atomic:
                break
        else:
            for v in kwargs.values():
                if type(v) not in atomic:
                    break
            else:
                return None
    ex = Extraction()
    flat = _extract_flat(args, kwargs, ex)
    if flat is not None:
        new_args, new_kwargs = flat
        ex.flat = True
        if wait_for:
            _add_wait_for(ex, wait_for)
        if not ex.upstreams:
            return None
        return new_args, new_kwargs, ex

    def on_future(f: Any, allow: bool) -> Any:
        return _slot(ex.add(f, allow))

    def on_quote(q: quote[Any]) -> Any:
        return q

    new_args = walk_replace(args, on_future, on_quote) if args else _unchanged
    new_kwargs = walk_replace(kwargs, on_future, on_quote) if kwargs else _unchanged
    if wait_for:
        _add_wait_for(ex, wait_for)
    if new_args is _unchanged and new_kwargs is _unchanged and not ex.upstreams:
        return None
    if new_args is _unchanged:
        new_args = args
    if new_kwargs is _unchanged:
        new_kwargs = kwargs
    return new_args, new_kwargs, ex


def _add_wait_for(ex: Extraction, wait_for: Any) -> None:
    if isinstance(wait_for, (TaskFuture, allow_failure)):
        wait_for = [wait_for]
    for w in wait_for:
        allow = isinstance(w, allow_failure)
        f = w.value if allow else w
        if isinstance(f, TaskFuture):
            ex.add(f, allow)


def _extract_flat(
    args: tuple[Any, ...], kwargs: dict[str, Any], ex: Extraction
) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """The common case in one pass: arguments that are plain values or futures.

    Returns the arguments with top-level futures replaced by slots, or None when some
    argument needs the deep walk (a container, a dataclass, a wrapper, ...).
    """
    new_args: Any = args
    for i, a in enumerate(args):
        if type(a) in _ATOMIC:
            continue
        if not isinstance(a, TaskFuture):
            return None
        if new_args is args:
            new_args = list(args)
        new_args[i] = _slot(ex.add(a, False))
    new_kwargs = kwargs
    for k, v in kwargs.items():
        if type(v) in _ATOMIC:
            continue
        if not isinstance(v, TaskFuture):
            return None
        if new_kwargs is kwargs:
            new_kwargs = dict(kwargs)
        new_kwargs[k] = _slot(ex.add(v, False))
    return (args if new_args is args else tuple(new_args)), new_kwargs


def materialize_flat(
    args: tuple[Any, ...], kwargs: dict[str, Any], values: list[Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``materialize`` for calls whose slots are all top-level arguments."""
    if args:
        args = tuple(values[a.index] if type(a) is UpstreamSlot else a for a in args)
    if kwargs:
        kwargs = {k: (values[v.index] if type(v) is UpstreamSlot else v) for k, v in kwargs.items()}
    return args, kwargs


def materialize(
    args: tuple[Any, ...], kwargs: dict[str, Any], values: list[Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Put ``values[i]`` in place of every ``UpstreamSlot(i)`` and unwrap quotes."""

    def on_future(slot: Any, allow: bool) -> Any:
        return values[slot.index]

    def on_quote(q: quote[Any]) -> Any:
        return q.value

    new_args = walk_replace(args, on_future, on_quote)
    new_kwargs = walk_replace(kwargs, on_future, on_quote)
    return (
        args if new_args is _unchanged else new_args,
        kwargs if new_kwargs is _unchanged else new_kwargs,
    )
