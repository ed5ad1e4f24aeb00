"""Transactions: groups of task runs whose records are committed together or rolled back.

``with transaction(key=..., store=..., isolation_level=..., commit_mode=...) as txn:``
opens one; ``get_transaction()`` returns the innermost one of the current context.
Task runs that complete inside it are *staged*: their records are written under hidden
names, and their ``on_commit``/``on_rollback`` hooks are remembered.  When the block
ends normally the transaction commits (records renamed into place, ``on_commit``
hooks run, then its own record, if it has a key, marks it committed); when the
block raises, it rolls back: ``on_rollback`` hooks of what was staged run in reverse
order, and staged records are deleted.

Where things run: hooks run in the process that holds the transaction, after the
task runs they belong to, as in Prefect.  A task run on another process, Dask worker
or Ray worker receives a *detached copy* of the transaction (key, state and values;
``get``/``is_committed`` work, staging does not); the record it writes is staged on the
worker into the shared store, and the driver stages that result into the live
transaction when the run completes (:meth:`Transaction.stage_task_run`).

Nesting: an inner transaction with the default ``LAZY`` commit mode hands its
staged work to its parent on exit and commits when the parent does; ``EAGER``
commits on exit; ``OFF`` never commits by itself (rolled back unless someone commits).
"""

from __future__ import annotations

import contextvars
import copy
import enum
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from braid import errors

__all__ = [
    "IsolationLevel",
    "CommitMode",
    "TransactionState",
    "Transaction",
    "StagedResult",
    "transaction",
    "get_transaction",
    "use_transaction",
]

logger = logging.getLogger("braid.transactions")
_MISSING = object()


class IsolationLevel(str, enum.Enum):
    """``READ_COMMITTED`` (default): see committed records, run concurrently;
    ``SERIALIZABLE``: one holder of a key at a time, through a lock manager."""

    READ_COMMITTED = "READ_COMMITTED"
    SERIALIZABLE = "SERIALIZABLE"


class CommitMode(str, enum.Enum):
    """When a transaction commits: ``EAGER`` on exit, ``LAZY`` (default) on exit of the
    outermost transaction, ``OFF`` only when ``commit()`` is called."""

    EAGER = "EAGER"
    LAZY = "LAZY"
    OFF = "OFF"


class TransactionState(str, enum.Enum):
    """Where a transaction is in its life."""

    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    STAGED = "STAGED"
    COMMITTED = "COMMITTED"
    ROLLED_BACK = "ROLLED_BACK"


class StagedResult:
    """A record a task run wrote under a hidden name, waiting for its transaction to
    commit (publish) or roll back (delete); small and picklable, it travels back from
    workers with the run's final state."""

    __slots__ = ("store", "key", "staged_name")

    def __init__(self, store: Any, key: str, staged_name: str) -> None:
        self.store, self.key, self.staged_name = store, key, staged_name

    def publish(self) -> None:
        """Move the record to its key."""
        self.store.promote(self.staged_name, self.key)

    def discard(self) -> None:
        """Delete the staged record."""
        self.store.discard(self.staged_name)

    def __repr__(self) -> str:
        return f"StagedResult(key={self.key!r})"


_current: contextvars.ContextVar[Transaction | None] = contextvars.ContextVar(
    "braid_transaction", default=None
)


class Transaction:
    """A transaction (see the module docstring); made by :func:`transaction`."""

    def __init__(
        self,
        key: str | None = None,
        store: Any = None,
        commit_mode: CommitMode | str | None = None,
        isolation_level: IsolationLevel | str | None = None,
        overwrite: bool = False,
        write_on_commit: bool = True,
        logger: logging.Logger | logging.LoggerAdapter | None = None,
    ) -> None:
        self.key = key
        self.store = store
        self.commit_mode = None if commit_mode is None else CommitMode(commit_mode)
        self.isolation_level = None if isolation_level is None else IsolationLevel(isolation_level)
        self.overwrite = overwrite
        self.write_on_commit = write_on_commit
        self.logger = logger or globals()["logger"]
        self.state = TransactionState.PENDING
        self.children: list[Transaction] = []
        self.on_commit_hooks: list[Callable[[Transaction], Any]] = []
        self.on_rollback_hooks: list[Callable[[Transaction], Any]] = []
        self.parent: Transaction | None = None
        self.detached = False
        self._values: dict[str, Any] = {}
        self._staged_value: Any = None
        self._staged_result: StagedResult | None = None
        self._holder = uuid.uuid4().hex
        self._token: contextvars.Token | None = None
        self._guard = threading.RLock()

    # -- pickling: a detached copy for workers ----------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "store": self.store,
            "commit_mode": self.commit_mode,
            "isolation_level": self.isolation_level,
            "state": self.state,
            "values": self.stored_values(),
            "overwrite": self.overwrite,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(
            key=state["key"],
            store=state["store"],  # type: ignore[misc]
            commit_mode=state["commit_mode"],
            isolation_level=state["isolation_level"],
            overwrite=state["overwrite"],
        )
        self.state = state["state"]
        self._values = state["values"]
        self.detached = True

    def stored_values(self) -> dict[str, Any]:
        """Every value visible here: this transaction's over its parents'."""
        values = self.parent.stored_values() if self.parent is not None else {}
        values.update(self._values)
        return values

    # -- values -----------------------------------------------------------------------
    def set(self, name: str, value: Any) -> None:
        """Store ``value`` under ``name`` for this transaction, its children and hooks."""
        self._values[name] = value

    def get(self, name: str, default: Any = _MISSING) -> Any:
        """A copy of the value stored under ``name`` here or in a parent; ``default`` if
        none (``ValueError`` without a default)."""
        if name in self._values:
            return copy.deepcopy(self._values[name])
        if self.parent is not None:
            return self.parent.get(name, default)
        if default is not _MISSING:
            return default
        raise ValueError(f"no value stored under {name!r} in this transaction")

    # -- state ------------------------------------------------------------------------
    def is_committed(self) -> bool:
        """Whether this transaction committed (or found its key already committed)."""
        return self.state == TransactionState.COMMITTED

    def is_rolled_back(self) -> bool:
        """Whether this transaction rolled back."""
        return self.state == TransactionState.ROLLED_BACK

    def is_staged(self) -> bool:
        """Whether this transaction has staged work waiting for a commit."""
        return self.state == TransactionState.STAGED

    def is_pending(self) -> bool:
        """Whether this transaction has not begun."""
        return self.state == TransactionState.PENDING

    def is_active(self) -> bool:
        """Whether this transaction has begun and neither staged, committed nor rolled back."""
        return self.state == TransactionState.ACTIVE

    def get_parent(self) -> Transaction | None:
        """The transaction this one is nested in, if any."""
        return self.parent

    # -- life -------------------------------------------------------------------------
    def __enter__(self) -> Transaction:
        if self._token is not None or self.detached:
            raise errors.TransactionError(
                "a transaction can be entered once, on the process that made it"
            )
        parent = _current.get()
        self.parent = parent
        if self.commit_mode is None:
            self.commit_mode = parent.commit_mode if parent else CommitMode.LAZY
        if self.isolation_level is None:
            self.isolation_level = (
                parent.isolation_level if parent else (IsolationLevel.READ_COMMITTED)
            )
        if self.key and self.store is None:
            from braid.results import ResultStore

            self.store = ResultStore()
        if (
            self.key
            and self.isolation_level == IsolationLevel.SERIALIZABLE
            and not self.store.supports_isolation_level(self.isolation_level)
        ):
            raise errors.ConfigurationError(
                "SERIALIZABLE isolation needs a lock manager: pass "
                "store=ResultStore(lock_manager=FileSystemLockManager(...))"
            )
        self.state = TransactionState.ACTIVE
        self.begin()
        self._token = _current.set(self)
        return self

    def begin(self) -> None:
        """Take the key's lock (``SERIALIZABLE``) and mark the transaction committed if a
        record already exists at its key (unless ``overwrite``)."""
        if self._locks():
            self.store.acquire_lock(self.key, self._holder)
        if not self.overwrite and self.key and self.store.exists(self.key):
            self.state = TransactionState.COMMITTED

    def _locks(self) -> bool:
        return bool(
            self.key
            and self.store is not None
            and self.isolation_level == IsolationLevel.SERIALIZABLE
        )

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._token is None:
            raise errors.TransactionError("transaction exited without being entered")
        _current.reset(self._token)
        self._token = None
        parent = self.parent
        if exc_type is not None:
            self.rollback()
            if parent is not None:
                parent.add_child(self)
                parent.rollback()  # as in Prefect: a failed child fails its parent
            return
        if self.commit_mode == CommitMode.EAGER:
            self.commit()
        if parent is not None:
            parent.add_child(self)
            return
        if self.commit_mode == CommitMode.OFF:
            self.rollback()
        else:
            self.commit()

    def add_child(self, child: Transaction) -> None:
        """Make ``child`` part of this transaction: it commits and rolls back with it."""
        with self._guard:
            child.parent = self
            self.children.append(child)

    def stage(
        self,
        value: Any = None,
        on_commit_hooks: list[Callable] | None = None,
        on_rollback_hooks: list[Callable] | None = None,
    ) -> None:
        """Stage ``value`` as this transaction's own record (written at its key on commit)
        and register hooks; ignored once committed."""
        self._check_live()
        with self._guard:
            if self.state == TransactionState.COMMITTED:
                return
            self._staged_value = value
            self.on_commit_hooks += list(on_commit_hooks or [])
            self.on_rollback_hooks += list(on_rollback_hooks or [])
            self.state = TransactionState.STAGED

    def stage_task_run(
        self,
        staged: StagedResult | None = None,
        on_commit: list[Callable] | tuple = (),
        on_rollback: list[Callable] | tuple = (),
        name: str | None = None,
    ) -> Transaction:
        """Record a task run that completed inside this transaction (the engine's call,
        made where this transaction lives): its staged record, if any, is published on
        commit and deleted on rollback; its hooks run then, each given the task run's
        own child transaction (whose ``get`` sees this one's values)."""
        self._check_live()
        child = Transaction(
            key=staged.key if staged else name,
            store=staged.store if staged else None,
            commit_mode=CommitMode.LAZY,
            isolation_level=self.isolation_level,
            logger=self.logger,
        )
        child._staged_result = staged
        child.on_commit_hooks = list(on_commit)
        child.on_rollback_hooks = list(on_rollback)
        child.state = TransactionState.STAGED
        with self._guard:
            if self.state in (TransactionState.ROLLED_BACK,):
                child.parent = self
                child.rollback()
                return child
            self.add_child(child)
        return child

    def _check_live(self) -> None:
        if self.detached:
            raise errors.TransactionError(
                "this is a worker's copy of a transaction: only the process that opened it "
                "can stage into it (the engine stages task runs there when they complete)"
            )

    def read(self) -> Any:
        """The record stored at this transaction's key, or None."""
        if self.store is None or not self.key:
            return None
        return self.store.read_fresh(self.key)

    def commit(self) -> bool:
        """Commit: children first (in order), then this one's ``on_commit`` hooks and its
        record; True if it committed now.  A failure rolls everything back."""
        with self._guard:
            if self.state in (TransactionState.ROLLED_BACK, TransactionState.COMMITTED):
                self._release()
                return False
            try:
                for child in list(self.children):
                    child.commit()
                for hook in self.on_commit_hooks:
                    self._run_hook(hook, "commit")
                if self._staged_result is not None:
                    self._staged_result.publish()
                if (
                    self.key
                    and self.store is not None
                    and self.write_on_commit
                    and self._staged_result is None
                ):
                    self.store.write(self.key, self._staged_value)
                self.state = TransactionState.COMMITTED
                return True
            except Exception:  # noqa: BLE001 - reported, then everything is undone
                self.logger.exception("committing transaction %r failed; rolling back", self.key)
                self.rollback()
                return False
            finally:
                self._release()

    def rollback(self) -> bool:
        """Roll back: this one's ``on_rollback`` hooks in reverse order, then children in
        reverse order, deleting staged records; True if it rolled back now."""
        with self._guard:
            if self.state in (TransactionState.ROLLED_BACK, TransactionState.COMMITTED):
                return False
            try:
                for hook in reversed(self.on_rollback_hooks):
                    self._run_hook(hook, "rollback")
                self.state = TransactionState.ROLLED_BACK
                for child in reversed(self.children):
                    child.rollback()
                return True
            except Exception:  # noqa: BLE001 - a failing hook must not hide the failure
                self.logger.exception("rolling back transaction %r failed", self.key)
                self.state = TransactionState.ROLLED_BACK
                return False
            finally:
                if self._staged_result is not None:
                    try:
                        self._staged_result.discard()
                    except OSError:
                        pass
                self._release()

    def _release(self) -> None:
        if self._locks() and not self.detached:
            try:
                self.store.release_lock(self.key, self._holder)
            except ValueError:
                pass  # released already

    def _run_hook(self, hook: Callable[[Transaction], Any], kind: str) -> None:
        import inspect

        result = hook(self)
        if inspect.isawaitable(result):
            import asyncio

            async def _await() -> Any:
                return await result

            asyncio.run(_await())

    def __repr__(self) -> str:
        return f"Transaction(key={self.key!r}, state={self.state.value})"


@contextmanager
def transaction(
    key: str | None = None,
    store: Any = None,
    commit_mode: CommitMode | str | None = None,
    isolation_level: IsolationLevel | str | None = None,
    overwrite: bool = False,
    write_on_commit: bool = True,
    logger: logging.Logger | logging.LoggerAdapter | None = None,
) -> Iterator[Transaction]:
    """Open a transaction for the block (see the module docstring); with a ``key`` it
    writes a record to ``store`` (default: the default result store) when it commits,
    and a later transaction with that key starts out committed."""
    with Transaction(
        key=key,
        store=store,
        commit_mode=commit_mode,
        isolation_level=isolation_level,
        overwrite=overwrite,
        write_on_commit=write_on_commit,
        logger=logger,
    ) as txn:
        yield txn


def get_transaction() -> Transaction | None:
    """The innermost transaction of the current context (in a task on a worker: the
    detached copy the engine entered), or None."""
    return _current.get()


@contextmanager
def use_transaction(txn: Transaction | None) -> Iterator[Transaction | None]:
    """Make ``txn`` the current transaction for the block without beginning or ending it:
    the engine's way to run a task body inside the transaction it was submitted in."""
    token = _current.set(txn)
    try:
        yield txn
    finally:
        _current.reset(token)
