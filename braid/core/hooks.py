"""State change hooks of tasks and flows: ``on_completion``, ``on_failure``, ``on_crashed``,
``on_cancellation`` and ``on_running``.

A hook is called as ``hook(task, task_run, state)`` (a flow's as ``hook(flow, flow_run,
state)``) when the run enters a state of its kind.  Task hooks run where the run runs
(a pool thread, a worker process, a Dask or Ray worker), inside the run's context, so
``get_run_logger()`` works there and what they log reaches the driver.  A state made
outside the engine (a dead worker, a run cancelled before it started) has its hooks
run on the driver by the run table.  A hook that raises is logged with its traceback;
it never changes the run's state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from braid import errors
from braid.core.context import current_run, run_logger_for
from braid.core.states import State, StateType

__all__ = ["HOOK_OPTIONS", "StateHooks", "HookDecorators"]

#: the option names, in order, and the state type each one answers
HOOK_OPTIONS: dict[str, StateType] = {
    "on_completion": StateType.COMPLETED,
    "on_failure": StateType.FAILED,
    "on_crashed": StateType.CRASHED,
    "on_cancellation": StateType.CANCELLED,
    "on_running": StateType.RUNNING,
}
#: set in a final state's ``extra`` once its hooks ran (so the driver does not run them)
HOOKS_RAN = "hooks_ran"

_log = logging.getLogger("braid.hooks")

Hook = Callable[[Any, Any, State], Any]


class StateHooks:
    """The hooks of one task or flow, by the state type they answer."""

    __slots__ = ("by_type",)

    def __init__(self, by_type: Mapping[StateType, list[Hook]] | None = None) -> None:
        self.by_type: dict[StateType, list[Hook]] = {
            t: list(v) for t, v in (by_type or {}).items() if v
        }

    @classmethod
    def from_options(
        cls, owner: str, options: Mapping[str, Iterable[Hook] | None]
    ) -> StateHooks | None:
        """Hooks from ``on_*=[...]`` options; None when there are none (the common case)."""
        by_type: dict[StateType, list[Hook]] = {}
        for option, state_type in HOOK_OPTIONS.items():
            given = options.get(option)
            if given is None:
                continue
            hooks: list[Hook] = [given] if callable(given) else list(given)
            for hook in hooks:
                if not callable(hook):
                    raise errors.ConfigurationError(
                        f"{owner}: {option} takes a list of callables "
                        f"hook(task_or_flow, run, state), got {hook!r}"
                    )
            if hooks:
                by_type[state_type] = hooks
        return cls(by_type) if by_type else None

    def options(self) -> dict[str, list[Hook]]:
        """The hooks as ``on_*`` options (for ``with_options``)."""
        return {option: list(self.by_type.get(t, ())) for option, t in HOOK_OPTIONS.items()}

    def wants(self, state_type: StateType) -> bool:
        """Whether any hook answers ``state_type``."""
        return state_type in self.by_type

    def run(self, owner: Any, run: Any, state: State) -> None:
        """Call the hooks of ``state``'s type; log (never raise) what they raise."""
        for hook in self.by_type.get(state.type, ()):
            try:
                hook(owner, run, state)
            except Exception:  # noqa: BLE001 - a hook never changes the run's state
                _logger().exception(
                    "%s hook %s of %r raised (the run's state stays %s)",
                    _option_of(state.type),
                    getattr(hook, "__name__", hook),
                    getattr(owner, "name", owner),
                    state.name,
                )


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The run's logger inside a run (its records travel to the driver), else ours."""
    ctx = current_run.get()
    return run_logger_for(ctx) if ctx is not None else _log


def _option_of(state_type: StateType) -> str:
    for option, t in HOOK_OPTIONS.items():
        if t is state_type:
            return option
    return "state"


def mark_ran(state: State) -> None:
    """Note on ``state`` that its hooks ran where it was made."""
    state.extra = {**(state.extra or {}), HOOKS_RAN: True}


def ran(state: State) -> bool:
    """Whether ``state``'s hooks ran already."""
    extra = state.extra
    return bool(extra and extra.get(HOOKS_RAN))


class HookDecorators:
    """``@task_or_flow.on_failure`` and friends: add a hook and return it unchanged."""

    hooks: StateHooks | None

    def _add_hook(self, option: str, fn: Hook) -> Hook:
        if not callable(fn):
            raise errors.ConfigurationError(f"{option} needs a function, got {fn!r}")
        hooks = self.hooks if self.hooks is not None else StateHooks()
        hooks.by_type.setdefault(HOOK_OPTIONS[option], []).append(fn)
        self.hooks = hooks
        self.__dict__.pop("_blob", None)  # a task pickled before must be pickled again
        return fn

    def on_completion(self, fn: Hook) -> Hook:
        """Decorator: call ``fn(owner, run, state)`` when a run completes."""
        return self._add_hook("on_completion", fn)

    def on_failure(self, fn: Hook) -> Hook:
        """Decorator: call ``fn(owner, run, state)`` when a run fails."""
        return self._add_hook("on_failure", fn)

    def on_crashed(self, fn: Hook) -> Hook:
        """Decorator: call ``fn(owner, run, state)`` when a run crashes."""
        return self._add_hook("on_crashed", fn)

    def on_cancellation(self, fn: Hook) -> Hook:
        """Decorator: call ``fn(owner, run, state)`` when a run is cancelled."""
        return self._add_hook("on_cancellation", fn)

    def on_running(self, fn: Hook) -> Hook:
        """Decorator: call ``fn(owner, run, state)`` when a run starts running."""
        return self._add_hook("on_running", fn)
