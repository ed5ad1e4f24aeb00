"""Module-level tasks the caching conformance tests use (workers import them by name)."""

from __future__ import annotations

from typing import Any

from braid import task
from braid.cache_policies import INPUTS


def _note(path: str, text: str) -> None:
    with open(path, "a") as fh:
        fh.write(text + "\n")


@task(cache_policy=INPUTS - "marker", persist_result=True)
def counted_square(x: int, marker: str) -> int:
    """``x * x``; notes every time the body runs in ``marker``."""
    _note(marker, str(x))
    return x * x


@task
def step(name: str) -> str:
    """Returns ``name`` (a run inside a transaction)."""
    return name


@step.on_rollback
def undo_step(txn: Any) -> None:
    """Notes the rolled-back step in the transaction's ``path`` (its ``name`` is the run's)."""
    _note(txn.get("path"), f"undo {txn.key}")


@step.on_commit
def commit_step(txn: Any) -> None:
    """Notes the committed step in the transaction's ``path``."""
    _note(txn.get("path"), f"commit {txn.key}")
