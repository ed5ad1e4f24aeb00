"""Wrappers that change how ``.map()`` and dependency resolution treat a parameter."""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["unmapped", "allow_failure", "quote", "opaque", "BaseAnnotation"]

T = TypeVar("T")


class BaseAnnotation(Generic[T]):
    """A parameter value wrapped to change how braid treats it; ``unwrap()`` gives it back."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def unwrap(self) -> T:
        """Return the wrapped value."""
        return self.value

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.value == other.value

    def __hash__(self) -> int:
        return hash((type(self), id(self.value)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r})"

    def __reduce__(self) -> tuple[type[BaseAnnotation[T]], tuple[T]]:
        return (type(self), (self.value,))


class unmapped(BaseAnnotation[T]):
    """Broadcast this value to every mapped call instead of iterating over it."""

    __slots__ = ()


class allow_failure(BaseAnnotation[T]):
    """Let the task run even if this upstream failed; it then receives the exception."""

    __slots__ = ()


class quote(BaseAnnotation[T]):
    """Pass this value to the task untouched: futures inside it are not resolved."""

    __slots__ = ()

    def unquote(self) -> T:
        """Return the wrapped value."""
        return self.value


class opaque(BaseAnnotation[T]):
    """Resolve this value if it is a future, but never look inside it for futures.

    For large arguments (a big dict, a DataFrame) whose contents hold no futures: braid
    does not walk them at submit.  ``quote`` passes a value untouched without resolving
    it; ``opaque`` resolves only the top level.
    """

    __slots__ = ()
