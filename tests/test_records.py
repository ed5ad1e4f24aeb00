"""Run records: a flow's final state lists its task runs and nested flow runs."""

from __future__ import annotations

from braid import ThreadPoolTaskRunner, flow
from braid.runners.processes import ProcessPoolTaskRunner
from braid.testing import sample_tasks as st


@flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
def nested_on_processes():
    return st.inc.map(range(2))


@flow(task_runner=ThreadPoolTaskRunner(max_workers=2), flow_run_name="recorded")
def recorded():
    st.add(1, 2)
    a = st.inc.map(range(3))
    st.fail.submit("recorded failure")
    nested_on_processes()
    return a


def test_record_lists_every_run_with_state_times_and_place():
    state = recorded(return_state=True)
    record = state.record
    assert record.name == "recorded" and record.state_name == "Completed"
    assert record.counts() == {"COMPLETED": 4, "FAILED": 1}
    runs = record.task_runs
    assert [r.task_name for r in runs] == ["add", "inc", "inc", "inc", "fail"]
    failed = runs[-1]
    assert failed.state_type == "FAILED" and failed.error == "UserError: recorded failure"
    for r in runs:
        assert r.start is not None and r.end is not None and r.end >= r.start
        assert r.where and r.where.startswith("pid ")
    [child] = record.flow_runs
    assert "ProcessPoolTaskRunner" in child.runner
    child_runs = child.task_runs
    assert len(child_runs) == 2
    assert {r.where for r in child_runs}.isdisjoint({r.where for r in runs})
    assert len(record.all_task_runs()) == 7
    as_dict = record.to_dict()
    assert as_dict["flow_runs"][0]["task_runs"][0]["state_name"] == "Completed"


def test_failed_flow_records_error():
    @flow
    def failing():
        raise st.UserError("flow failed here")

    state = failing(return_state=True)
    assert state.record.state_type == "FAILED"
    assert state.record.error == "UserError: flow failed here"


def test_watch_flow_runs_sees_top_level_runs_as_they_start():
    from braid.core.records import watch_flow_runs

    seen_inside = []

    @flow
    def watched():
        seen_inside.append(len(seen))
        return st.inc.submit(1).result()

    with watch_flow_runs() as seen:
        watched()
        recorded()
    assert seen_inside == [1]
    assert [r.flow_name for r in seen] == ["watched", "recorded"]
    assert len(seen[1].flow_runs) == 1
