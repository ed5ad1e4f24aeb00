"""One task run's caching and transaction, around the engine's attempts.

The engine makes a :class:`CachedRun` only for runs whose call carries cache options or
a transaction (``call.extra["cache"]``/``["txn"]``, set at submit), so other runs pay
nothing.  It looks the key up before the first attempt (a hit ends the run COMPLETED
named ``Cached`` without running the body), sets the transaction as the current one
while the body runs, and after the last attempt persists the result (or stages it in
the transaction: the staged record travels back in ``state.extra["staged"]`` and the
run table hands it to the transaction where it lives) or gives the key up.
"""

from __future__ import annotations

from typing import Any

from braid.core.calls import TaskCall
from braid.core.context import TaskRunInfo, default_run_name
from braid.core.states import State, StateType

__all__ = ["CachedRun", "STAGED"]

#: where a staged record travels in a final state's ``extra``
STAGED = "staged"


class CachedRun:
    """A task run's cache plan and transaction while its attempts run."""

    __slots__ = ("plan", "hit", "value", "failure", "_txn_token", "_txn_module", "_limits")

    def __init__(self) -> None:
        self.plan: Any = None
        self.hit = False
        self.value: Any = None
        self.failure: BaseException | None = None
        self._txn_token: Any = None
        self._txn_module: Any = None
        self._limits: Any = None

    @classmethod
    def start(
        cls, call: TaskCall, task_run: TaskRunInfo, options: Any, txn: Any, limits: Any = None
    ) -> CachedRun:
        """Enter the run's limits and transaction and look it up in the cache (in this
        thread)."""
        run = cls()
        if limits is not None:  # concurrency() in the task takes slots where limits live
            from braid.concurrency import use_limits

            run._limits = use_limits(limits)
            run._limits.__enter__()
        if txn is not None:
            from braid import transactions

            run._txn_module = transactions
            run._txn_token = transactions.use_transaction(txn)
            run._txn_token.__enter__()
        if options is not None:
            from braid.cache_policies import CacheContext
            from braid.caching import cache_plan

            flow_run = call.flow_run
            try:
                flow_parameters = flow_run.parameters if flow_run is not None else {}
            except Exception:  # noqa: BLE001 - too large to travel: FLOW_PARAMETERS sees {}
                flow_parameters = {}
            ctx = CacheContext(
                call.task,
                str(task_run.id),
                task_run.parameters,
                flow_run.id if flow_run is not None else None,
                flow_parameters,
                task_run.name,
                flow_run.name if flow_run is not None else None,
                flow_run.flow_name if flow_run is not None else None,
            )
            try:
                run.plan = cache_plan(options, ctx, transaction=txn)
            except Exception as exc:  # noqa: BLE001 - CacheKeyError, LockTimeout: it fails
                run.failure = exc
                return run
            if run.plan.hit:
                run.hit, run.value = True, run.plan.value
        return run

    def finish(self, state: State) -> State:
        """Persist (or stage) a completed run's result, or give its key up; leave the
        transaction; return ``state`` (with the staged record in its ``extra``)."""
        try:
            plan = self.plan
            if plan is not None and not self.hit:
                if state.type is StateType.COMPLETED:
                    staged = plan.commit(state.data)
                    if staged is not None:
                        state.extra = {**(state.extra or {}), STAGED: staged}
                else:
                    plan.abort()
        finally:
            token, self._txn_token = self._txn_token, None
            if token is not None:
                token.__exit__(None, None, None)
            limits, self._limits = self._limits, None
            if limits is not None:
                limits.__exit__(None, None, None)
        return state


def stage_in_transaction(call: TaskCall, state: State) -> None:
    """Hand a completed run to the transaction it was submitted in (where that lives):
    its staged record, if any, is published when the transaction commits and deleted if
    it rolls back, and the task's ``on_commit``/``on_rollback`` hooks run then."""
    extra = call.extra
    txn = extra.get("txn") if extra else None
    if txn is None or getattr(txn, "detached", False) or state.type is not StateType.COMPLETED:
        return
    staged = state.extra.get(STAGED) if state.extra else None
    task = call.task
    name = state.task_run_name or call.run_name or default_run_name(task.name, call.run_id)
    txn.stage_task_run(
        staged, on_commit=task.on_commit_hooks, on_rollback=task.on_rollback_hooks, name=name
    )
