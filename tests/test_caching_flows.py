"""Caching and results from flows: flow results persisted, the braid cache command on a
flow's records, and a local store refused for a cluster on other hosts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from braid import errors, flow
from braid.adapters.dask import DaskTaskRunner
from braid.results import ResultStore
from braid.testing import cached_tasks as ct

BRAID = Path(sys.executable).parent / "braid"


def test_a_flow_that_persists_stores_its_result_and_its_tasks_results(tmp_path):
    store = str(tmp_path / "store")

    @flow(result_storage=store)
    def body(x: int) -> int:
        from braid.context import FlowRunContext

        body.seen_id = FlowRunContext.get().flow_run.id
        return ct.counted_square.submit(x, str(tmp_path / "calls.txt")).result()

    assert body(6) == 36
    assert ResultStore(result_storage=store).read(body.seen_id).result == 36
    assert body(6) == 36  # the task's record (same inputs) is a hit now
    assert (tmp_path / "calls.txt").read_text().split() == ["6"]


def test_the_cache_command_lists_and_clears_a_flows_records(tmp_path):
    store = str(tmp_path / "store")
    square = ct.counted_square.with_options(result_storage=store)

    @flow
    def body() -> list[int]:
        return square.map([1, 2], marker=str(tmp_path / "calls.txt")).result()

    assert body() == [1, 4]
    listed = subprocess.run(
        [str(BRAID), "cache", "list", "--storage", store],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("counted_square") == 2
    cleared = subprocess.run(
        [str(BRAID), "cache", "clear", "--all", "--storage", store],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cleared.returncode == 0, cleared.stderr
    assert body() == [1, 4]
    assert sorted((tmp_path / "calls.txt").read_text().split()) == ["1", "1", "2", "2"]


def test_a_local_store_is_refused_for_a_cluster_on_other_hosts(tmp_path):
    square = ct.counted_square.with_options(result_storage=str(tmp_path / "store"))
    # nothing listens there: the check comes before any connection is needed
    runner = DaskTaskRunner(address="tcp://10.255.255.1:8786")

    class Started:  # the check reads only the runner's address
        address = runner.address

    from braid.core.tasks import check_store_reaches

    options = square.cache_options_for(None)
    with pytest.raises(errors.LocalStoreOnRemoteCluster, match="10.255.255.1"):
        check_store_reaches(options, Started())
    check_store_reaches(options, type("Local", (), {"address": "tcp://127.0.0.1:8786"})())


def test_a_task_called_directly_in_a_transaction_is_staged_and_published(tmp_path):
    from braid.transactions import transaction

    store = str(tmp_path / "store")
    square = ct.counted_square.with_options(result_storage=store)
    marker = str(tmp_path / "calls.txt")

    @flow
    def body() -> int:
        with transaction():
            return square(4, marker)

    assert body() == 16 and body() == 16
    assert (tmp_path / "calls.txt").read_text().split() == ["4"]  # the second run hit
    assert not [p for p in (tmp_path / "store").iterdir() if ".staged" in p.name]


def test_a_tag_limit_of_zero_fails_the_run_by_name():
    from braid.testing import limited_tasks as lt

    @flow(concurrency_limits={lt.TAG: 0})
    def body() -> int:
        return lt.tagged_span.submit(str(Path.cwd()), 0).result(timeout=60)  # hang guard

    with pytest.raises(errors.SlotsExceedLimit):
        body()
