"""Load a task runner named by a dotted path, with errors that say what to fix.

A spec is one of braid's runner names (``threads``, ``processes``, ``dask``, ``ray``:
the registry in :mod:`braid.runners.registry`), ``"package.module:Name"`` or
``"package.module.Name"`` (``Name`` may be dotted, ``"pkg.mod:Outer.Inner"``).
``Name`` is a :class:`~braid.TaskRunner` subclass, or any callable that returns an
unstarted runner when called with no arguments (a factory function, to pass
configuration).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from braid.core.runner import TaskRunner
from braid.runners.registry import RUNNERS

__all__ = ["RunnerSpecError", "load_runner_factory"]

_FORMS = "'package.module:ClassName' or 'package.module.ClassName'"


class RunnerSpecError(ValueError):
    """Raised by :func:`load_runner_factory` when a spec does not name a usable runner."""


def load_runner_factory(spec: str) -> Callable[[], TaskRunner]:
    """The zero-argument callable named by ``spec``, checked to give an unstarted runner.

    Imports the module and calls the factory once to check what it returns; raises
    :class:`RunnerSpecError` naming the spec and the problem otherwise.
    """
    entry = RUNNERS.get(spec.strip())
    if entry is not None:
        spec = entry.spec
    module_name, attr_path = _split(spec)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RunnerSpecError(
            f"runner {spec!r}: cannot import module {module_name!r} "
            f"({type(exc).__name__}: {exc}); is its package installed or on sys.path?"
        ) from exc
    except Exception as exc:
        raise RunnerSpecError(
            f"runner {spec!r}: importing module {module_name!r} raised "
            f"{type(exc).__name__}: {exc} (python -c 'import {module_name}' shows where)"
        ) from exc
    target: Any = module
    for i, part in enumerate(attr_path):
        try:
            target = getattr(target, part)
        except AttributeError:
            owner = ".".join([module_name, *attr_path[:i]])
            raise RunnerSpecError(
                f"runner {spec!r}: {owner!r} has no attribute {part!r}"
                + _runners_in(module if i == 0 else None)
            ) from None
    if not callable(target):
        raise RunnerSpecError(
            f"runner {spec!r} is {type(target).__name__} {target!r}, not a TaskRunner subclass "
            f"or a function returning a runner"
        )
    if isinstance(target, type) and not issubclass(target, TaskRunner):
        raise RunnerSpecError(
            f"runner {spec!r}: class {target.__name__} is not a subclass of braid.TaskRunner"
        )
    try:
        sample = target()
    except Exception as exc:
        raise RunnerSpecError(
            f"runner {spec!r} could not be created with no arguments "
            f"({type(exc).__name__}: {exc}); name a function that returns a configured runner"
        ) from exc
    if not isinstance(sample, TaskRunner):
        raise RunnerSpecError(
            f"runner {spec!r} returned {type(sample).__name__}, not a braid.TaskRunner"
        )
    return target


def _split(spec: str) -> tuple[str, list[str]]:
    """``(module name, attribute path)`` of a spec in either form."""
    spec = spec.strip()
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
    else:
        module_name, _, attr = spec.rpartition(".")
    parts = attr.split(".") if attr else []
    if (
        not module_name
        or not parts
        or not all(p.isidentifier() for p in parts)
        or not all(p.isidentifier() for p in module_name.split("."))
    ):
        raise RunnerSpecError(f"runner {spec!r}: expected {_FORMS}")
    return module_name, parts


def _runners_in(module: Any) -> str:
    """A hint listing the TaskRunner subclasses a module defines, if any."""
    if module is None:
        return ""
    names = sorted(
        name
        for name, value in vars(module).items()
        if isinstance(value, type)
        and issubclass(value, TaskRunner)
        and value is not TaskRunner
        and value.__module__ == module.__name__
    )
    return f"; runners it defines: {', '.join(names)}" if names else ""
