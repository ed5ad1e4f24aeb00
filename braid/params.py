"""Flow parameters from text: convert a command-line value to its parameter's type hint.

:func:`coerce_parameter` is what ``braid run --param NAME=VALUE`` uses; it takes the raw
text (or an already decoded value, for callers that validate Python values) and the
parameter's annotation, and returns the converted value or raises
:class:`~braid.errors.InvalidParameterValue` with one line naming the parameter, the value
and the expected type.

Text is read by what the annotation asks for:

- ``str``: the text as it is; ``bool``: ``true/false``, ``yes/no``, ``on/off``, ``1/0``;
  ``int``, ``float``: a number (an int is accepted for a float);
- ``datetime.date``, ``datetime.datetime``, ``datetime.time``: ISO 8601 (``Z`` allowed);
- ``pathlib.Path`` (any ``PurePath``): the text as a path;
- an ``Enum``: a member's name, else its value; ``Literal[...]``: one of the literals;
- ``list[X]``, ``set[X]``, ``frozenset[X]``, ``tuple[X, ...]``, ``tuple[X, Y]``: a JSON
  array, or comma-separated items; each item converted to ``X``;
- ``dict[K, V]``: a JSON object, keys converted to ``K`` and values to ``V``;
- ``X | None``, ``Optional[X]``, ``X | Y``: ``null`` (or ``None``) for None, else the
  first member the value converts to, in the order written;
- a pydantic model (when pydantic is installed and already imported by the flow's
  module): a JSON object validated by the model;
- anything else (no annotation, ``Any``, other classes): JSON when the text parses as
  JSON, else the text, unchecked.

Pydantic is never imported here: a model annotation means the flow's module imported it.
"""

from __future__ import annotations

import datetime
import enum
import json
import sys
import types
import typing
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from braid.errors import InvalidParameterValue

__all__ = ["coerce_parameter", "describe_type"]

_NONE_TEXT = ("null", "None")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_UNION_TYPES: tuple[Any, ...] = (typing.Union, types.UnionType)
_SEQUENCES = (list, set, frozenset, tuple)


class _Mismatch(Exception):
    """A value that does not fit; ``detail`` says which part, when it is not the whole."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail)
        self.detail = detail


def coerce_parameter(name: str, raw: Any, annotation: Any, *, owner: str | None = None) -> Any:
    """Return ``raw`` converted to ``annotation``, or raise ``InvalidParameterValue``.

    ``raw`` is a parameter's text from the command line, or a value already decoded
    (then it is checked and converted the same way, e.g. ``"2024-05-01"`` to a date);
    ``annotation`` is the resolved type hint (``None`` or ``inspect.Parameter.empty``
    for none); ``owner`` names what the parameter belongs to in the message (``"flow
    'etl'"``).  The error's message is one line: the parameter, the value and the
    expected type, with the valid choices of an Enum or a Literal.
    """
    try:
        return _coerce(raw, annotation, isinstance(raw, str))
    except _Mismatch as exc:
        where = f" of {owner}" if owner else ""
        # text is shown quoted as typed; a decoded value as its repr
        shown = repr(_short(raw)) if isinstance(raw, str) else _short(repr(raw))
        detail = f" ({exc.detail})" if exc.detail else ""
        raise InvalidParameterValue(
            f"parameter {name!r}{where} expects {describe_type(annotation)}, got {shown}{detail}"
        ) from None


def describe_type(annotation: Any) -> str:
    """An annotation as people write it: ``int``, ``list[int]``, ``Colour``, ``date | None``."""
    annotation = _unwrap(annotation)
    if annotation is type(None) or annotation is None:
        return "None"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in _UNION_TYPES:
        return " | ".join(describe_type(a) for a in args)
    if origin is typing.Literal:
        return f"one of {', '.join(repr(_literal_text(a)) for a in args)}"
    if origin is not None:
        base = getattr(origin, "__name__", str(origin))
        return f"{base}[{', '.join('...' if a is Ellipsis else describe_type(a) for a in args)}]"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


# -- conversion -------------------------------------------------------------------------
def _unwrap(annotation: Any) -> Any:
    """Annotated[X, ...] is X; a NewType is its supertype."""
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif hasattr(annotation, "__supertype__"):
            annotation = annotation.__supertype__
        else:
            return annotation


def _coerce(value: Any, annotation: Any, text: bool) -> Any:
    """Convert ``value`` (command-line text when ``text``) to ``annotation``, or _Mismatch."""
    import inspect

    annotation = _unwrap(annotation)
    if (
        annotation is None
        or annotation is inspect.Parameter.empty
        or annotation is Any
        or annotation is object
    ):
        return _json_or_text(value) if text else value
    origin = typing.get_origin(annotation)
    if origin in _UNION_TYPES:
        return _coerce_union(value, typing.get_args(annotation), text)
    if origin is typing.Literal:
        return _coerce_literal(value, typing.get_args(annotation), text)
    if origin in _SEQUENCES:
        return _coerce_sequence(value, origin, typing.get_args(annotation), text)
    if origin is dict or origin is Mapping:
        return _coerce_dict(value, typing.get_args(annotation), text)
    if annotation is type(None):
        if value is None or (text and value in _NONE_TEXT):
            return None
        raise _Mismatch()
    if not isinstance(annotation, type):
        return _json_or_text(value) if text else value  # a hint we do not check
    return _coerce_class(value, annotation, text)


def _coerce_class(value: Any, cls: type, text: bool) -> Any:
    if cls is str:
        if isinstance(value, str):
            return value
        raise _Mismatch()
    if cls is bool:
        return _coerce_bool(value, text)
    if cls is int or cls is float:
        return _coerce_number(value, cls, text)
    if issubclass(cls, enum.Enum):
        return _coerce_enum(value, cls, text)
    if issubclass(cls, datetime.date) or cls is datetime.time:
        return _coerce_when(value, cls)
    if issubclass(cls, PurePath):
        if isinstance(value, (str, PurePath)) and str(value):
            return cls(value)
        raise _Mismatch()
    if cls in _SEQUENCES:
        return _coerce_sequence(value, cls, (), text)
    if cls is dict:
        return _coerce_dict(value, (), text)
    if _is_pydantic_model(cls):
        return _coerce_model(value, cls, text)
    if isinstance(value, cls):
        return value
    decoded = _json_or_text(value) if text else value
    if isinstance(decoded, cls):
        return decoded
    if text:
        return decoded  # a class we cannot build from text: passed on unchecked
    raise _Mismatch()


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _coerce_bool(value: Any, text: bool) -> bool:
    if isinstance(value, bool):
        return value
    if text:
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    raise _Mismatch()


def _coerce_number(value: Any, cls: type, text: bool) -> Any:
    if isinstance(value, bool):
        raise _Mismatch()
    if isinstance(value, int) or (cls is float and isinstance(value, float)):
        return cls(value)
    if text:
        try:
            return cls(value.strip())
        except ValueError:
            pass
    raise _Mismatch()


def _coerce_enum(value: Any, cls: type[enum.Enum], text: bool) -> enum.Enum:
    if isinstance(value, cls):
        return value
    members = cls.__members__
    if isinstance(value, str) and value in members:
        return members[value]
    for member in cls:
        if member.value == value and type(member.value) is type(value):
            return member
        if text and isinstance(value, str) and str(member.value) == value:
            return member
    raise _Mismatch(f"valid: {_enum_choices(cls)}")


def _enum_choices(cls: type[enum.Enum]) -> str:
    shown = []
    for name, member in cls.__members__.items():
        shown.append(name if member.value == name else f"{name} ({member.value!r})")
    return ", ".join(shown)


def _literal_text(value: Any) -> Any:
    return value.name if isinstance(value, enum.Enum) else value


def _coerce_literal(value: Any, choices: tuple[Any, ...], text: bool) -> Any:
    decoded = _json_or_text(value) if text else value
    for choice in choices:
        if isinstance(choice, enum.Enum):
            try:
                if _coerce_enum(value, type(choice), text) is choice:
                    return choice
            except _Mismatch:
                continue
        elif type(choice) is type(value) and choice == value:
            return choice
        elif type(choice) is type(decoded) and choice == decoded:
            return choice
    raise _Mismatch()


def _coerce_when(value: Any, cls: type) -> Any:
    if isinstance(value, cls) and (
        cls is datetime.datetime or not isinstance(value, datetime.datetime)
    ):
        return value
    if isinstance(value, str):
        iso = value.strip()
        if iso.endswith(("Z", "z")) and cls is not datetime.date:  # Python 3.10 lacks Z
            iso = iso[:-1] + "+00:00"
        try:
            return cls.fromisoformat(iso)  # type: ignore[attr-defined]
        except ValueError:
            pass
    raise _Mismatch(
        "ISO 8601, e.g. "
        + {datetime.datetime: "2024-05-01T12:30:00", datetime.time: "12:30:00"}.get(
            cls, "2024-05-01"
        )
    )


def _coerce_union(value: Any, members: tuple[Any, ...], text: bool) -> Any:
    if type(None) in members and (value is None or (text and value in _NONE_TEXT)):
        return None
    details = []
    for member in members:
        if member is type(None):
            continue
        try:
            return _coerce(value, member, text)
        except _Mismatch as exc:
            if exc.detail:
                details.append(exc.detail)
    raise _Mismatch("; ".join(details))


def _coerce_sequence(value: Any, kind: Any, args: tuple[Any, ...], text: bool) -> Any:
    if text:
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                items = json.loads(stripped)
            except ValueError:
                raise _Mismatch("not a JSON array") from None
        else:
            # comma-separated items stay text, so each converts as its own --param would
            items = [part.strip() for part in stripped.split(",")] if stripped else []
            return _build_sequence(items, kind, args, True)
    else:
        items = value
    if not isinstance(items, (list, tuple, set, frozenset)):
        raise _Mismatch()
    return _build_sequence(list(items), kind, args, False)


def _build_sequence(items: list[Any], kind: Any, args: tuple[Any, ...], text: bool) -> Any:
    if kind is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(items) != len(args):
            raise _Mismatch(f"{len(args)} items expected, got {len(items)}")
        hints = list(args)
    else:
        hints = [args[0] if args else None] * len(items)
    out = []
    for i, (item, hint) in enumerate(zip(items, hints, strict=True)):
        try:
            out.append(_coerce(item, hint, text))
        except _Mismatch as exc:
            detail = f": {exc.detail}" if exc.detail else ""
            raise _Mismatch(
                f"item {i}: {_short_repr(item)} is not {describe_type(hint)}{detail}"
            ) from None
    return kind(out)


def _coerce_dict(value: Any, args: tuple[Any, ...], text: bool) -> dict[Any, Any]:
    if text:
        try:
            value = json.loads(value)
        except ValueError:
            raise _Mismatch("not a JSON object") from None
    if not isinstance(value, dict):
        raise _Mismatch()
    key_hint, value_hint = args if len(args) == 2 else (None, None)
    out = {}
    for k, v in value.items():
        try:
            key = _coerce(k, key_hint, isinstance(k, str))  # JSON keys are always text
        except _Mismatch:
            raise _Mismatch(f"key {_short_repr(k)} is not {describe_type(key_hint)}") from None
        try:
            out[key] = _coerce(v, value_hint, False)
        except _Mismatch as exc:
            detail = f": {exc.detail}" if exc.detail else ""
            raise _Mismatch(
                f"value of {_short_repr(k)}: {_short_repr(v)} is not "
                f"{describe_type(value_hint)}{detail}"
            ) from None
    return out


# -- pydantic, without importing it -----------------------------------------------------
def _is_pydantic_model(cls: type) -> bool:
    pydantic = sys.modules.get("pydantic")
    if pydantic is None:  # the flow's module did not import pydantic: no model here
        return False
    base = getattr(pydantic, "BaseModel", None)
    return isinstance(base, type) and issubclass(cls, base)


def _coerce_model(value: Any, cls: type, text: bool) -> Any:
    if isinstance(value, cls):
        return value
    if text:
        try:
            value = json.loads(value)
        except ValueError:
            raise _Mismatch("not a JSON object") from None
    validate = getattr(cls, "model_validate", None) or getattr(cls, "parse_obj", None)  # v2, v1
    try:
        return validate(value)
    except Exception as exc:  # noqa: BLE001 - pydantic's ValidationError, whatever version
        raise _Mismatch(_pydantic_detail(exc)) from None


def _pydantic_detail(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    try:
        first = errors()[0] if callable(errors) else None
    except Exception:  # noqa: BLE001 - an unexpected error shape: fall back to the text
        first = None
    if isinstance(first, dict):
        loc = ".".join(str(p) for p in first.get("loc", ())) or "value"
        return f"{loc}: {first.get('msg', 'invalid')}"
    return _short(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


# -- text for messages ------------------------------------------------------------------
def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short_repr(value: Any) -> str:
    return _short(repr(value), 40)
