"""Conformance tests of concurrency limits: tag limits and ``concurrency()`` hold on every
runner, and a run waiting for a slot holds no worker."""

from __future__ import annotations

from typing import Any

import pytest

from braid import errors, flow
from braid.concurrency.limits import declare_limits
from braid.testing import limited_tasks as lt

__all__ = ["LimitTests"]


class LimitTests:
    """Limits declared on a flow hold for its task runs wherever they run."""

    def test_tag_limit_bounds_runs_at_once(self, runner, tmp_path):
        @flow(task_runner=runner, concurrency_limits={lt.TAG: 2})
        def body() -> list[int]:
            return lt.tagged_span.map(str(tmp_path), range(8)).result()

        assert body() == list(range(8))
        assert 1 <= lt.peak(str(tmp_path)) <= 2

    def test_concurrency_inside_tasks_holds_across_workers(self, runner, tmp_path):
        @flow(task_runner=runner, concurrency_limits={lt.NAME: 1})
        def body() -> list[int]:
            return lt.guarded_span.map(str(tmp_path), range(5)).result()

        assert body() == list(range(5))
        assert lt.peak(str(tmp_path)) == 1

    def test_limit_one_with_nested_submits_does_not_deadlock(self, runner):
        @flow(task_runner=runner, concurrency_limits={lt.TAG: 1})
        def body() -> list[int]:
            return lt.tagged_parent.map(range(4)).result(timeout=120)  # hang guard

        assert body() == [1, 2, 3, 4]

    def test_an_undeclared_name_in_strict_mode_says_where_to_declare(self, runner, tmp_path):
        @flow(task_runner=runner)
        def body() -> Any:
            f = lt.guarded_span.submit(str(tmp_path), 0)
            f.wait()
            return f.state

        with pytest.raises(errors.UndeclaredLimit, match="concurrency_limits"):
            body()  # the task's failed state fails the flow with its error

    def test_nested_flows_see_their_parents_limits(self, runner, tmp_path):
        @flow(task_runner=runner)
        def child() -> list[int]:
            return lt.tagged_span.map(str(tmp_path), range(4), 0.15).result()

        with declare_limits({lt.TAG: 1}):  # as `braid run --limit` declares them

            @flow(task_runner=runner, concurrency_limits={"braid-test-other": 3})
            def parent() -> list[int]:
                return child()

            assert parent() == list(range(4))
        assert lt.peak(str(tmp_path)) == 1
