"""What a flow call needs besides running: parameters checked against the type hints, and
flows defined in classes (bound to their instance or class)."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from braid.core.flows import Flow

__all__ = ["BoundFlow", "type_hints", "validate_arguments"]


def type_hints(fn: Any) -> dict[str, Any]:
    """``fn``'s parameter annotations, resolved (empty when they cannot be resolved)."""
    import typing

    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # noqa: BLE001 - a forward reference that does not resolve: no checks
        return {}
    hints.pop("return", None)
    return hints


def validate_arguments(
    owner: str, arguments: MutableMapping[str, Any], hints: dict[str, Any]
) -> None:
    """Convert every argument that has a type hint to it, in place; a value that does not
    fit raises :class:`braid.errors.InvalidParameterValue` naming the parameter, the
    value and the expected type.  ``*args``/``**kwargs`` are left as they are."""
    from braid.params import coerce_parameter

    for name, value in arguments.items():
        hint = hints.get(name)
        if hint is None or isinstance(value, (tuple, dict)) and name not in hints:
            continue
        arguments[name] = coerce_parameter(name, value, hint, owner=owner)


class BoundFlow:
    """A flow accessed on an instance (or, under ``@classmethod``, on a class): calling
    it runs the flow with that object as its first argument."""

    __slots__ = ("flow", "bound_to")

    def __init__(self, flow: Flow[Any], bound_to: Any) -> None:
        self.flow = flow
        self.bound_to = bound_to

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.flow(self.bound_to, *args, **kwargs)

    def with_options(self, **options: Any) -> BoundFlow:
        """The flow with some options replaced, still bound."""
        return BoundFlow(self.flow.with_options(**options), self.bound_to)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.flow, name)

    def __repr__(self) -> str:
        return f"<bound {self.flow!r} of {self.bound_to!r}>"
