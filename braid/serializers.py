"""Serializers that turn a task's return value into bytes for a result record and back.

``"pickle"`` (cloudpickle, the default) and ``"json"`` are built in; any object with a
``type`` name and ``dumps``/``loads`` methods is a serializer too.  A record names the
serializer that wrote it, so a reader picks the same one (a custom one is found by the
import path it records, so define it in a module every reader can import).
"""

from __future__ import annotations

import importlib
import json
import pickle
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "Serializer",
    "PickleSerializer",
    "JSONSerializer",
    "resolve_serializer",
    "serializer_for_record",
]


@runtime_checkable
class Serializer(Protocol):
    """What ``result_serializer=`` accepts besides a name: ``dumps`` and ``loads`` of bytes."""

    type: str

    def dumps(self, obj: Any) -> bytes:
        """The bytes that stand for ``obj``."""
        ...

    def loads(self, blob: bytes) -> Any:
        """The object ``blob`` stands for."""
        ...


class PickleSerializer:
    """Serializes with cloudpickle (values made in ``__main__`` or closures round-trip)."""

    type = "pickle"

    def dumps(self, obj: Any) -> bytes:
        """cloudpickle's bytes for ``obj``, highest protocol."""
        import cloudpickle

        return cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)

    def loads(self, blob: bytes) -> Any:
        """The object pickled in ``blob``."""
        return pickle.loads(blob)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(self.type)

    def __repr__(self) -> str:
        return "PickleSerializer()"


class JSONSerializer:
    """Serializes as UTF-8 JSON: readable by anything, for JSON-shaped values only."""

    type = "json"

    def dumps(self, obj: Any) -> bytes:
        """JSON text of ``obj`` as UTF-8 bytes; raises ``TypeError`` for non-JSON values."""
        return json.dumps(obj).encode()

    def loads(self, blob: bytes) -> Any:
        """The value the JSON text in ``blob`` holds."""
        return json.loads(blob)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(self.type)

    def __repr__(self) -> str:
        return "JSONSerializer()"


_BUILTIN: dict[str, type] = {"pickle": PickleSerializer, "json": JSONSerializer}


def resolve_serializer(spec: str | Serializer | None) -> Serializer:
    """The serializer named by ``spec`` (``None`` means ``"pickle"``); raises ``ValueError``
    for an unknown name or an object without ``dumps``/``loads``."""
    if spec is None:
        return PickleSerializer()
    if isinstance(spec, str):
        try:
            return _BUILTIN[spec]()
        except KeyError:
            raise ValueError(
                f"unknown result_serializer {spec!r}: use 'pickle', 'json' or an object "
                f"with dumps(obj) -> bytes and loads(bytes) -> obj"
            ) from None
    if callable(getattr(spec, "dumps", None)) and callable(getattr(spec, "loads", None)):
        return spec
    raise ValueError(f"result_serializer {spec!r} has no dumps/loads methods")


def describe(serializer: Serializer) -> dict[str, str]:
    """What a record stores about its serializer: its type and, for a custom one, the
    import path that finds it again."""
    if type(serializer) in _BUILTIN.values():
        return {"type": serializer.type}
    cls = type(serializer)
    return {
        "type": getattr(serializer, "type", cls.__name__),
        "path": f"{cls.__module__}:{cls.__qualname__}",
    }


def serializer_for_record(info: dict[str, str]) -> Serializer:
    """The serializer a record's metadata names; raises ``ValueError`` when it cannot be
    found in this process (a custom class that does not import here)."""
    if "path" not in info:
        return resolve_serializer(info.get("type", "pickle"))
    module, _, qualname = info["path"].partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        return obj()
    except Exception as exc:  # noqa: BLE001 - any failure means "not available here"
        raise ValueError(
            f"serializer {info.get('type')!r} ({info['path']}) is not available in this "
            f"process: {exc}"
        ) from exc
