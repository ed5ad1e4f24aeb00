"""A flow run's concurrency limits on its runner: the handle its calls carry, and the gate
that holds a run whose task's tags are limited until it gets a slot.

Made by the run table only when limits are declared (on the flow, in
``BRAID_CONCURRENCY_LIMITS`` or with ``braid run --limit``), so flows without limits pay
one look-up per flow run and nothing per task run::

    made            registered by flow run id: a task run in this process finds the
                    limits by its flow run (``braid.concurrency.limits.run_limits``)
    accept(call)    call.extra["limits"] = handle   (a remote runner: concurrency() in the
                                                     task finds the backend where it runs;
                                                     not on a runner in this process, nor
                                                     on one that hands each worker the
                                                     handle once: SharesLimits)
    send(run)       admit(run): a limited tag? a free slot of each taken here, or the
                    gate's when_available(tags, ...): the run waits for its slots,
                    holding no worker; then dispatch
    finish(run)     its slots go back (completed, failed, crashed, cancelled): in-process
                    slots are on the run (run.held), gate leases in RunLimits.leases

Where the slots live is the runner's choice (:class:`braid.core.contract.ProvidesLimits`):
in this process for threads, a coordinator in the parent for processes, Dask's
semaphores on the scheduler, Ray actors on the cluster.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from braid.core.context import current_run
from braid.core.contract import ProvidesLimits, SharesLimits

__all__ = ["RunLimits"]

_ENV = "BRAID_CONCURRENCY_LIMITS"
_REMEMBERED = 256  # distinct tag sets remembered per flow run


class RunLimits:
    """The declared limits of one flow run on one started runner."""

    def __init__(self, runner: Any, table: Any) -> None:
        from braid.concurrency import LocalLimits, TagGate
        from braid.concurrency.limits import register_run_limits
        from braid.concurrency.local import SLOT, SlotPool

        if isinstance(runner, ProvidesLimits):
            self.backend = runner.limits_backend()
        else:
            self.backend = LocalLimits()
        self.table = table
        #: where ``concurrency()`` and tag slots find the backend and the table
        self.backend_handle = self.backend.handle(table)
        #: the handle a call carries to where its task runs (``call.extra["limits"]``); None
        #: when the runner runs tasks in this process, where a task run finds the limits by
        #: its flow run (``run_limits``): then no task run enters them, and none pays for it
        remote = getattr(getattr(runner, "capabilities", None), "remote", True)
        self.handle = self.backend_handle if remote else None
        ctx = current_run.get()
        self._flow_run_id = ctx.flow_run.id if ctx is not None and ctx.flow_run else None
        if remote and self._flow_run_id is not None and isinstance(runner, SharesLimits):
            # each worker gets the handle once, and finds it by the run's flow run id
            runner.share_limits(self._flow_run_id, self.backend_handle)
            self.handle = None
        if self._flow_run_id is not None:
            register_run_limits(self._flow_run_id, self.backend_handle)
        self.gate = TagGate(self.backend_handle)
        #: run -> the lease the gate got for it (a backend's request, in any process);
        #: the in-process slots a run takes without waiting are on the run (``run.held``)
        self.leases: dict[Any, Any] = {}
        self._pool, self._slot = SlotPool, SLOT
        self._lock = threading.Lock()
        # an in-process backend is asked for a free slot directly, in the sending thread
        self._here: Any = self.backend if getattr(self.backend, "in_process", False) else None
        self._limited: dict[Any, tuple[str, ...]] = {}  # tags -> the limited ones
        self._slots: dict[tuple[str, ...], Any] = {}  # limited tags -> their FreeSlots
        #: task -> (its limited tags, the SlotPool of its one tag or None, the FreeSlots of
        #: its tags or None): for calls without extra tags
        self._by_task: dict[Any, tuple[tuple[str, ...], Any, Any]] = {}

    @classmethod
    def for_runner(cls, runner: Any) -> RunLimits | None:
        """The limits in effect for a runner starting now; None when none are declared
        (then :mod:`braid.concurrency` is not even imported)."""
        if "braid.concurrency.limits" not in sys.modules and not os.environ.get(_ENV):
            return None
        from braid.concurrency.limits import declared_limits

        table = declared_limits()
        return cls(runner, table) if len(table) else None

    def limited(self, tags: Any) -> tuple[str, ...]:
        """Which of ``tags`` are limited, sorted (no I/O; remembered per set of tags)."""
        if not tags:
            return ()
        try:
            return self._limited[tags]
        except KeyError:
            pass
        except TypeError:  # not hashable: not remembered
            return self._find_limited(tags)
        if len(self._limited) >= _REMEMBERED:  # many distinct tag sets: start afresh
            self._limited.clear()
        found = self._limited[tags] = self._find_limited(tags)
        return found

    def _find_limited(self, tags: Any) -> tuple[str, ...]:
        from braid.concurrency import limited_tags

        return limited_tags(tags, self.backend_handle)

    def admit(self, run: Any) -> tuple[str, ...]:
        """Return ``()`` when ``run`` may be dispatched now: its task's tags are not
        limited, or an in-process backend gave it a free slot of each here, in this thread
        (one look-up and, for one tag, one pop from its ``SlotPool`` without a lock: the
        uncontended path of every tagged run).  Otherwise return the limited tags, for the
        caller to wait on with ``when_available``.  Raises what declaring the tags does
        (e.g. a limit of 0)."""
        call = run.call
        if call.extra is None:  # the task's own tags: what they need is known per task
            task = call.task
            try:
                limited, pool, slots = self._by_task[task]
            except KeyError:
                limited, pool, slots = self._task_entry(task)
        else:
            limited = self._limited_of(call)
            slots = None
            if limited and self._here is not None:
                slots = self._slots.get(limited) or self._slots_of(limited)
            pool = None if slots is None else slots.pool
        if pool is not None:  # one tag counted here: SlotPool.take written out
            if pool.waiting or self.gate.queued:
                return limited
            try:
                pool.pop()
            except IndexError:
                if not pool.take():
                    return limited
            run.held = pool
            return ()
        if not limited:
            return ()
        if slots is not None and not self.gate.queued and slots.take():  # several tags
            run.held = slots
            return ()
        return limited

    def _task_entry(self, task: Any) -> tuple[tuple[str, ...], Any, Any]:
        limited = self.limited(task.tags) if task.tags else ()
        slots = None
        if limited and self._here is not None:
            slots = self._slots.get(limited) or self._slots_of(limited)
        if len(self._by_task) >= _REMEMBERED:  # many tasks (with_options copies)
            self._by_task.clear()
        entry = self._by_task[task] = (limited, None if slots is None else slots.pool, slots)
        return entry

    def _limited_of(self, call: Any) -> tuple[str, ...]:
        tags = call.task.tags
        extra_tags = call.extra.get("tags")
        if extra_tags:
            tags = tags | set(extra_tags)
        return self.limited(tags) if tags else ()

    def _slots_of(self, tags: tuple[str, ...]) -> Any:
        from braid.concurrency.tags import tag_pairs

        pairs = tag_pairs(tags, self.backend_handle)  # a limit of 0 raises here
        slots = self._here.slots(pairs)
        if len(self._slots) >= _REMEMBERED:
            self._slots.clear()
        self._slots[tags] = slots
        return slots

    def when_available(self, run: Any, tags: tuple[str, ...], then: Callable[[Any], None]) -> None:
        """Call ``then(run)`` once a slot of every tag in ``tags`` is held for ``run``.

        An in-process backend with every slot free and no run waiting in the gate grants
        them here, in this thread, holding them as a bare count (the uncontended path:
        one lock, no thread hop, no lease object); otherwise the gate's thread waits.
        """
        if self._here is not None and not self.gate.queued:
            slots = self._slots.get(tags)
            if slots is None:
                slots = self._slots_of(tags)
            if slots.take():
                run.held = slots
                then(run)
                return

        def granted(lease: Any) -> None:
            if lease is not None:
                with self._lock:
                    self.leases[run] = lease
            then(run)

        self.gate.when_available(tags, granted)

    def release(self, run: Any) -> None:
        """Give back the slots ``run`` holds, if any, and forget them.

        The run table calls it once per holding: when the run ends (from the one thread
        whose final state won) and before a retry's delay (from the thread finishing the
        attempt; the run is sent again, and takes slots again, only after).  Slots taken
        in this process are on the run (``run.held``); a lease the gate got is in
        ``leases``, popped atomically, so a lease granted to a run that ended meanwhile is
        given back by :meth:`close` or here, once.
        """
        held = run.held
        if held is not None:
            run.held = None
            if held.__class__ is self._pool:  # SlotPool.release written out
                held.append(self._slot)
                if held.waiting:
                    held.wake()
            else:
                held.release()
        elif self.leases:
            lease = self.leases.pop(run, None)  # atomic: of two callers, one gets it
            if lease is not None:
                lease.release()

    def close(self) -> None:
        """Stop waiting for slots, give back every lease the gate got, and close the
        backend (slots taken in this process go back as their runs end: each ends before
        the table closes, and a closed ``LocalLimits`` gives nothing out again)."""
        from braid.concurrency.limits import unregister_run_limits

        if self._flow_run_id is not None:
            unregister_run_limits(self._flow_run_id, self.backend_handle)
        self.gate.close()
        with self._lock:
            held, self.leases = list(self.leases.values()), {}
        for one in held:
            one.release()
        self.backend.close()
