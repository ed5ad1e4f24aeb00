"""Limits and where they are declared: ``Limit``, ``LimitTable`` and the declaration layers.

A limit is declared, never created on a server.  The table in effect is built from
layers, innermost last:

1. the environment variable ``BRAID_CONCURRENCY_LIMITS`` (read when no flow declared
   anything), e.g. ``db=2,api=5/1.0``: ``name=N`` is a limit of N slots,
   ``name=N/D`` adds a slot decay of D slots per second (a rate limit);
2. what each enclosing flow declares, ``@flow(concurrency_limits={"db": 2,
   "api": Limit(5, slot_decay_per_second=1.0)})`` (the flow engine pushes it with
   ``declare_limits``); ``braid run --limit db=2`` is parsed by ``parse_limits`` and
   declared the same way.

A nested layer may add names.  Declaring a name again with the same limit is allowed;
with a different limit it raises ``LimitRedeclared``.
"""

from __future__ import annotations

import contextvars
import math
import os
from collections.abc import Hashable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from braid import errors
from braid.core.context import current_run

__all__ = [
    "ENV_VAR",
    "Limit",
    "LimitTable",
    "declare_limits",
    "declared_limits",
    "parse_limits",
    "register_run_limits",
    "run_limits",
    "unregister_run_limits",
]

ENV_VAR = "BRAID_CONCURRENCY_LIMITS"


class Limit:
    """A limit of ``limit`` slots whose slots taken by ``rate_limit`` come back at
    ``slot_decay_per_second`` slots per second (0: only a concurrency limit).

    Slots held with ``concurrency()`` come back when its block exits.  Slots taken with
    ``rate_limit()`` come back by decay only, so ``limit`` is the largest burst and the
    decay is the steady rate.  Values are compared and hashed by their two numbers.
    """

    __slots__ = ("limit", "slot_decay_per_second")

    def __init__(self, limit: int, slot_decay_per_second: float = 0.0) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise errors.InvalidLimit(
                f"Limit(limit={limit!r}): limit must be an integer >= 0 (the number of slots)"
            )
        if (
            isinstance(slot_decay_per_second, bool)
            or not isinstance(slot_decay_per_second, (int, float))
            or not math.isfinite(slot_decay_per_second)
            or slot_decay_per_second < 0
        ):
            raise errors.InvalidLimit(
                f"Limit(slot_decay_per_second={slot_decay_per_second!r}): the decay must be a "
                "finite number >= 0 (slots given back per second)"
            )
        object.__setattr__(self, "limit", limit)
        object.__setattr__(self, "slot_decay_per_second", float(slot_decay_per_second))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Limit is immutable")

    def __reduce__(self) -> tuple:
        return (Limit, (self.limit, self.slot_decay_per_second))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Limit) and (self.limit, self.slot_decay_per_second) == (
            other.limit,
            other.slot_decay_per_second,
        )

    def __hash__(self) -> int:
        return hash((self.limit, self.slot_decay_per_second))

    def __repr__(self) -> str:
        if self.slot_decay_per_second:
            return f"Limit({self.limit}, slot_decay_per_second={self.slot_decay_per_second})"
        return f"Limit({self.limit})"

    @classmethod
    def coerce(cls, value: int | Limit, name: str = "?") -> Limit:
        """Return ``value`` as a ``Limit`` (an int is a plain concurrency limit)."""
        if isinstance(value, Limit):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(value)
        raise errors.InvalidLimit(
            f"limit {name!r}: expected an int or braid.concurrency.Limit, got {value!r}"
        )


class LimitTable(Mapping[str, Limit]):
    """An immutable mapping name -> ``Limit``; ``with_declarations`` returns a wider table."""

    __slots__ = ("_limits",)

    def __init__(self, limits: Mapping[str, int | Limit] | None = None) -> None:
        table: dict[str, Limit] = {}
        for name, value in (limits or {}).items():
            if not isinstance(name, str) or not name:
                raise errors.InvalidLimit(f"limit name {name!r}: expected a non-empty string")
            table[name] = Limit.coerce(value, name)
        self._limits = table

    def __getitem__(self, name: str) -> Limit:
        return self._limits[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._limits)

    def __len__(self) -> int:
        return len(self._limits)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self.items()) == dict(other.items())

    def __hash__(self) -> int:
        return hash(frozenset(self._limits.items()))

    def __reduce__(self) -> tuple:
        return (LimitTable, (self._limits,))

    def __repr__(self) -> str:
        return f"LimitTable({self._limits!r})"

    def with_declarations(self, limits: Mapping[str, int | Limit]) -> LimitTable:
        """Return this table plus ``limits``; a name already here with another value raises
        ``LimitRedeclared``."""
        added = LimitTable(limits)
        for name, limit in added.items():
            current = self._limits.get(name)
            if current is not None and current != limit:
                raise errors.LimitRedeclared(
                    f"concurrency limit {name!r} is declared as {current!r} by an enclosing "
                    f"flow or {ENV_VAR}, and again as {limit!r}: declare each name once, or "
                    "with the same value"
                )
        if not added:
            return self
        return LimitTable({**self._limits, **added._limits})


def parse_limits(spec: str, source: str = ENV_VAR) -> LimitTable:
    """Return the table a spec like ``"db=2,api=5/1.0"`` declares (``name=N[/decay]``,
    comma separated, blanks ignored); a malformed entry raises ``InvalidLimit`` naming
    ``source``."""
    table: dict[str, Limit] = {}
    for entry in spec.split(","):
        entry = entry.strip()
        if not entry:
            continue
        name, sep, value = entry.partition("=")
        name, value = name.strip(), value.strip()
        count, slash, decay = value.partition("/")
        try:
            if not sep or not name:
                raise ValueError
            limit = Limit(int(count), float(decay) if slash else 0.0)
        except (ValueError, errors.InvalidLimit):
            raise errors.InvalidLimit(
                f"{source}: cannot read {entry!r}; expected name=N or name=N/DECAY, "
                "e.g. 'db=2,api=5/1.0'"
            ) from None
        if name in table and table[name] != limit:
            raise errors.LimitRedeclared(f"{source}: {name!r} is declared twice, differently")
        table[name] = limit
    return LimitTable(table)


_env_cache: tuple[str, LimitTable] = ("", LimitTable())
_declared: contextvars.ContextVar[LimitTable | None] = contextvars.ContextVar(
    "braid_declared_limits", default=None
)


def _env_limits() -> LimitTable:
    global _env_cache
    spec = os.environ.get(ENV_VAR, "")
    if spec != _env_cache[0]:
        _env_cache = (spec, parse_limits(spec))
    return _env_cache[1]


# flow run id -> the handle of the limits its runner keeps in this process (RunLimits)
_run_limits: dict[Hashable, Any] = {}


def register_run_limits(flow_run_id: Hashable, handle: Any) -> None:
    """Make ``handle`` the limits of the task runs of flow run ``flow_run_id`` in this
    process that carry none (a runner that runs them here need not put it on every call)."""
    _run_limits[flow_run_id] = handle


def unregister_run_limits(flow_run_id: Hashable, handle: Any) -> None:
    """Undo ``register_run_limits`` (if ``handle`` is still the one registered)."""
    if _run_limits.get(flow_run_id) is handle:
        del _run_limits[flow_run_id]


def run_limits() -> Any | None:
    """The handle registered for the flow run of the task run (or flow run) in progress
    here, else for its parent flow run (a flow called in a task, before its own limits
    are made), or None."""
    if not _run_limits:
        return None
    ctx = current_run.get()
    flow_run = ctx.flow_run if ctx is not None else None
    if flow_run is None:
        return None
    handle = _run_limits.get(flow_run.id)
    if handle is None and flow_run.parent_flow_run_id is not None:
        handle = _run_limits.get(flow_run.parent_flow_run_id)
    return handle


def declared_limits() -> LimitTable:
    """Return the table in effect here: the innermost ``declare_limits``/``use_limits``
    layer; else the table of the flow run in progress here (``register_run_limits``);
    else the environment variable's limits."""
    table = _declared.get()
    if table is not None:
        return table
    handle = run_limits()
    return _env_limits() if handle is None else handle.limits


def set_declared(table: LimitTable) -> contextvars.Token:
    """Make ``table`` the one in effect; returns the token ``reset_declared`` takes."""
    return _declared.set(table)


def reset_declared(token: contextvars.Token) -> None:
    """Undo one ``set_declared``."""
    _declared.reset(token)


@contextmanager
def declare_limits(limits: Mapping[str, int | Limit] | None) -> Iterator[LimitTable]:
    """Add ``limits`` to the table in effect for the body of the block (a flow's
    ``concurrency_limits``); yields the new table; redeclaring a name differently raises
    ``LimitRedeclared`` before the block runs."""
    table = declared_limits().with_declarations(limits or {})
    token = _declared.set(table)
    try:
        yield table
    finally:
        _declared.reset(token)
