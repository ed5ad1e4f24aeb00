"""Conformance tests of caching, persisted results, isolation and transactions: the same
store and the same semantics on every runner (the store is a local directory here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from braid import flow, quote
from braid.testing import cached_tasks as ct

__all__ = ["CachingTests"]


def _shared(path: Path) -> Any:
    """The test's store: a directory every worker of the runner sees (on one machine, or
    across network namespaces of one machine), so declared shared."""
    from braid.filesystems import LocalFileSystem

    return LocalFileSystem(str(path), shared=True)


class CachingTests:
    """A cached run is a hit in the next flow run; results persist; SERIALIZABLE runs
    compute once; a transaction rolls back what its runs staged."""

    def test_a_cache_hit_skips_the_body(self, runner, tmp_path):
        marker = str(tmp_path / "calls.txt")
        square = ct.counted_square.with_options(result_storage=_shared(tmp_path / "store"))

        @flow(task_runner=runner)
        def body() -> Any:
            futures = square.map([2, 3], marker=marker)
            futures.wait()
            return quote([(f.state.name, f.result()) for f in futures])

        assert body().unquote() == [("Completed", 4), ("Completed", 9)]
        assert body().unquote() == [("Cached", 4), ("Cached", 9)]
        assert sorted(Path(marker).read_text().split()) == ["2", "3"]

    def test_a_persisted_result_is_read_back_by_key(self, runner, tmp_path):
        from braid.results import ResultStore

        store = _shared(tmp_path / "store")
        keyed = ct.counted_square.with_options(
            result_storage=store, result_storage_key="square-{parameters[x]}"
        )

        @flow(task_runner=runner)
        def body() -> int:
            return keyed.submit(5, str(tmp_path / "calls.txt")).result()

        assert body() == 25
        assert ResultStore(result_storage=store).read("square-5").result == 25

    def test_serializable_runs_compute_once(self, runner, tmp_path):
        from braid.cache_policies import INPUTS
        from braid.locking import FileSystemLockManager

        marker = str(tmp_path / "calls.txt")
        policy = (INPUTS - "marker").configure(
            isolation_level="SERIALIZABLE",
            lock_manager=FileSystemLockManager(str(tmp_path / "locks"), shared=True),
        )
        once = ct.counted_square.with_options(
            cache_policy=policy, result_storage=_shared(tmp_path / "store")
        )

        @flow(task_runner=runner)
        def body() -> Any:
            futures = [once.submit(7, marker) for _ in range(4)]
            return sorted(f.result() for f in futures), sorted(f.state.name for f in futures)

        values, names = body()
        assert values == [49] * 4
        assert Path(marker).read_text().split() == ["7"]
        assert names.count("Completed") == 1 and names.count("Cached") == 3

    def test_a_failed_transaction_rolls_back_in_reverse_order(self, runner, tmp_path):
        from braid.transactions import transaction

        path = str(tmp_path / "hooks.txt")
        named = ct.step.with_options(task_run_name="{name}")

        @flow(task_runner=runner)
        def body(fail: bool) -> None:
            with transaction() as txn:
                txn.set("path", path)
                named.submit("first").result()
                named.submit("second").result()
                if fail:
                    raise ValueError("undo it all")

        body(False)
        assert Path(path).read_text().splitlines() == ["commit first", "commit second"]
        Path(path).unlink()
        with pytest.raises(ValueError):
            body(True)
        assert Path(path).read_text().splitlines() == ["undo second", "undo first"]
