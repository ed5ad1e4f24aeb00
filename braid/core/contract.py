"""The data and the optional hooks of the runner contract (see :mod:`braid.core.runner`)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from braid.core.calls import TaskCall
    from braid.core.futures import TaskFuture
    from braid.core.runs import Run

__all__ = [
    "BatchDispatch",
    "CancelsRuns",
    "Capabilities",
    "ChecksCalls",
    "NativeDependencies",
    "NewFuture",
    "ProvidesLimits",
    "SharesLimits",
]


class Capabilities:
    """What a runner can do; the core and the conformance suite read these as data.

    - ``requires_pickling``: calls and results cross a process boundary; the core
      pickles each call at submit (a bad one raises ``SerializationError`` there).
    - ``native_dependencies``: the backend orders dependent runs itself; the core
      does not wait for upstreams the runner's ``is_native`` claims.
    - ``can_interrupt_running``: a running task can be stopped (its process ended),
      so a task time-out ends stuck code too.
    - ``reschedules_retries``: the engine hands back ``AwaitingRetry`` and the core
      re-dispatches the run after the delay, so a waiting run holds no worker.
    - ``remote``: tasks run outside the driver's process.
    - ``runs_inline``: ``dispatch`` runs the call to its end in the submitting thread;
      the core waits for the upstreams in ``submit`` first.
    """

    __slots__ = (
        "requires_pickling",
        "native_dependencies",
        "can_interrupt_running",
        "reschedules_retries",
        "remote",
        "runs_inline",
    )
    requires_pickling: bool
    native_dependencies: bool
    can_interrupt_running: bool
    reschedules_retries: bool
    remote: bool
    runs_inline: bool

    def __init__(
        self,
        requires_pickling: bool = False,
        native_dependencies: bool = False,
        can_interrupt_running: bool = False,
        reschedules_retries: bool = False,
        remote: bool = False,
        runs_inline: bool = False,
    ) -> None:
        values = (
            requires_pickling,
            native_dependencies,
            can_interrupt_running,
            reschedules_retries,
            remote,
            runs_inline,
        )
        for name, value in zip(self.__slots__, values, strict=True):
            object.__setattr__(self, name, bool(value))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Capabilities are read-only; make a new Capabilities(...)")

    def as_dict(self) -> dict[str, bool]:
        """Every capability by name."""
        return {n: getattr(self, n) for n in self.__slots__}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Capabilities) and self.as_dict() == other.as_dict()

    def __hash__(self) -> int:
        return hash(tuple(self.as_dict().values()))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Capabilities, tuple(self.as_dict().values()))

    def __repr__(self) -> str:
        on = ", ".join(f"{n}=True" for n, v in self.as_dict().items() if v)
        return f"Capabilities({on})"


@runtime_checkable
class NativeDependencies(Protocol):
    """A runner whose backend orders runs by itself (declare ``native_dependencies``)."""

    def is_native(self, future: TaskFuture[Any]) -> bool:
        """Whether the backend itself waits for ``future`` when it is an upstream."""


@runtime_checkable
class BatchDispatch(Protocol):
    """A runner that sends many runnable runs in one message (``.map()``)."""

    def dispatch_many(self, runs: Sequence[Run]) -> None:
        """Send every run in ``runs``, like ``dispatch`` on each."""


@runtime_checkable
class NewFuture(Protocol):
    """A runner whose runs need a future class of its own."""

    def new_future(self, call: TaskCall) -> TaskFuture[Any]:
        """A new, pending future for ``call`` (with its task, run name and run id)."""


@runtime_checkable
class CancelsRuns(Protocol):
    """A runner that can cancel dispatched runs on its backend when a flow is abandoned."""

    def cancel(self, runs: Sequence[Run]) -> Collection[Run]:
        """Cancel ``runs`` on the backend; return those that may have started running."""


@runtime_checkable
class ChecksCalls(Protocol):
    """A runner that refuses, at submit, calls its backend can never run."""

    def check_call(self, call: TaskCall) -> None:
        """Raise a named :mod:`braid.errors` error if ``call`` cannot run here (say why)."""


@runtime_checkable
class SharesLimits(Protocol):
    """A runner that gives a flow run's limits handle to each of its workers once (its
    task calls then carry none: a worker finds the handle by the run's flow run id)."""

    def share_limits(self, flow_run_id: Any, handle: Any) -> None:
        """Make ``handle`` the limits of flow run ``flow_run_id``'s task runs in every
        worker, before the next call that worker runs."""


@runtime_checkable
class ProvidesLimits(Protocol):
    """A runner whose concurrency limits live with its backend (shared by every worker)."""

    def limits_backend(self) -> Any:
        """A new :class:`braid.concurrency.LimitBackend` for one flow run on this runner
        (closed by the run table when the flow run ends)."""
