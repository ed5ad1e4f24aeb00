"""Resource hints: what a task run needs (CPUs, GPUs, memory, custom resources).

Declared on the task (``@task(resources={"gpus": 1})``) or around submits with the
:func:`resources` context manager (inner values win, the context wins over the
task).  The core only carries them, in ``call.extra["resources"]``; the Dask runner
turns them into worker resources and the Ray runner into its options.  Local
runners ignore them.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from braid import errors

__all__ = ["ResourceHints", "resources", "current_hints", "hints_from"]

_KNOWN = ("cpus", "gpus", "memory")


class ResourceHints:
    """CPUs, GPUs, memory in bytes, and custom named resources; None means unspecified."""

    __slots__ = ("cpus", "gpus", "memory", "custom")

    def __init__(
        self,
        cpus: float | None = None,
        gpus: float | None = None,
        memory: int | None = None,
        custom: Mapping[str, float] | None = None,
    ) -> None:
        self.cpus = cpus
        self.gpus = gpus
        self.memory = memory
        self.custom: Mapping[str, float] = dict(custom) if custom else {}

    def _key(self) -> tuple[Any, ...]:
        return (self.cpus, self.gpus, self.memory, tuple(sorted(self.custom.items())))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResourceHints) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __reduce__(self) -> tuple[Any, ...]:
        return (ResourceHints, (self.cpus, self.gpus, self.memory, dict(self.custom)))

    def __repr__(self) -> str:
        return (
            f"ResourceHints(cpus={self.cpus!r}, gpus={self.gpus!r}, memory={self.memory!r}, "
            f"custom={dict(self.custom)!r})"
        )

    def merged(self, inner: ResourceHints | None) -> ResourceHints:
        """These hints overridden by every value ``inner`` specifies."""
        if inner is None:
            return self
        return ResourceHints(
            cpus=inner.cpus if inner.cpus is not None else self.cpus,
            gpus=inner.gpus if inner.gpus is not None else self.gpus,
            memory=inner.memory if inner.memory is not None else self.memory,
            custom={**self.custom, **inner.custom},
        )

    def is_empty(self) -> bool:
        return self.cpus is None and self.gpus is None and self.memory is None and not self.custom


def hints_from(spec: Mapping[str, Any] | ResourceHints | None, owner: str) -> ResourceHints | None:
    """Validate a hint mapping (``cpus``, ``gpus``, ``memory``, others custom) into hints."""
    if spec is None or isinstance(spec, ResourceHints):
        return spec
    if not isinstance(spec, Mapping):
        raise errors.ConfigurationError(
            f"{owner}: resources must be a dict like {{'cpus': 1, 'gpus': 1, 'memory': 2**30}}, "
            f"got {spec!r}"
        )
    values: dict[str, Any] = {}
    custom: dict[str, float] = {}
    for key, value in spec.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise errors.ConfigurationError(
                f"{owner}: resource {key!r} must be a number >= 0, got {value!r}"
            )
        if key in _KNOWN:
            values[key] = int(value) if key == "memory" else value
        else:
            custom[str(key)] = value
    return ResourceHints(custom=custom, **values)


#: whether resources() was ever entered (until then, submits skip the context look-up)
_used = False
_current: contextvars.ContextVar[ResourceHints | None] = contextvars.ContextVar(
    "braid_resources", default=None
)


@contextmanager
def resources(
    cpus: float | None = None, gpus: float | None = None, memory: int | None = None, **custom: float
) -> Iterator[ResourceHints]:
    """Apply resource hints to every task submitted inside the block (inner values win)."""
    spec: dict[str, Any] = {
        k: v for k, v in (("cpus", cpus), ("gpus", gpus), ("memory", memory)) if v is not None
    }
    spec.update(custom)
    hints = hints_from(spec, "resources()")
    global _used
    _used = True
    outer = _current.get()
    token = _current.set(outer.merged(hints) if outer is not None else hints)
    try:
        yield _current.get()  # type: ignore[misc]
    finally:
        _current.reset(token)


def current_hints(task_hints: ResourceHints | None) -> ResourceHints | None:
    """The hints for a submit now: the task's, overridden by any active ``resources()``."""
    if not _used:
        return task_hints
    ctx = _current.get()
    if ctx is None:
        return task_hints
    return task_hints.merged(ctx) if task_hints is not None else ctx
