"""Run records: a flow's final state lists its task runs and nested flow runs."""

from __future__ import annotations

import gc
import weakref

import pytest

from braid import ThreadPoolTaskRunner, flow
from braid.core.records import ARGUMENT_CHARS, kept_arguments
from braid.runners.processes import ProcessPoolTaskRunner
from braid.testing import report_flows
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


# -- what a task run's record holds beyond its state: attempts, edges, arguments ----------
@pytest.mark.parametrize("runner", ["threads", "processes"])
def test_record_keeps_attempts_upstreams_arguments_and_traceback(runner):
    """On the runners whose run table reschedules retries; Dask and Ray: test_report.py."""
    flow_ = report_flows.retries_and_failures.with_options(
        task_runner=ThreadPoolTaskRunner(max_workers=2)
        if runner == "threads"
        else ProcessPoolTaskRunner(max_workers=2)
    )
    state = flow_(return_state=True)
    assert state.is_failed()
    runs = {r.task_name: r for r in state.record.task_runs}
    fetch, load, join, report = runs["fetch"], runs["load"], runs["join"], runs["report"]

    assert [a["state_name"] for a in fetch.attempts] == ["AwaitingRetry"] * 2 + ["Completed"]
    assert [a["error"] for a in fetch.attempts] == [
        "FetchError: connection reset on attempt 1",
        "FetchError: connection reset on attempt 2",
        None,
    ]
    assert [a["delay"] for a in fetch.attempts] == [report_flows.RETRY_DELAY] * 2 + [None]
    for before, after in zip(fetch.attempts, fetch.attempts[1:], strict=False):
        assert before["start"] <= before["end"]
        assert after["start"] - before["end"] >= report_flows.RETRY_DELAY - 0.01
    assert fetch.start == fetch.attempts[0]["start"] and fetch.end == fetch.attempts[-1]["end"]
    assert fetch.where == fetch.attempts[-1]["where"] and fetch.where.startswith("pid ")
    assert fetch.traceback is None and fetch.message is None and fetch.upstreams == []
    assert fetch.parameters == {"source": "'api'"}
    assert len(load.attempts) == 1 and load.attempts[0]["state_name"] == "Completed"

    assert join.upstreams == [fetch.id, load.id]
    assert join.parameters is not None
    rows = join.parameters.pop("rows")
    assert rows.startswith("[0, 1, 2, ") and len(rows) <= ARGUMENT_CHARS
    assert join.parameters == {
        "left": "<result of fetch-api>",
        "right": "<result of load-3>",
        "on": "'user_id'",
    }
    assert join.message == "KeyError: 'user_id'" and join.error == "KeyError: 'user_id'"
    assert join.traceback is not None
    assert 'report_flows.py", line' in join.traceback and "in join" in join.traceback
    assert join.traceback.endswith("KeyError: 'user_id'")

    assert report.state_name == "UpstreamFailed" and report.attempts == []
    assert report.upstreams == [join.id] and report.traceback is None
    assert report.parameters == {"joined": f"<result of {join.name}>"}
    as_dict = state.record.to_dict()["task_runs"][2]
    assert as_dict["upstreams"] == [fetch.id, load.id] and "traceback" in as_dict


class Payload:
    """A large argument; a record must not keep it alive."""

    def __init__(self) -> None:
        self.blob = bytearray(10_000_000)

    def __repr__(self) -> str:
        return f"Payload({len(self.blob)} bytes)"


_payloads: list[weakref.ref] = []


@flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
def given_a_payload() -> int:
    payload = Payload()
    sized = report_flows.size_of.with_options(name="sized")  # a task copy for this run
    _payloads.extend([weakref.ref(payload), weakref.ref(sized)])
    return sized.submit(payload, "x" * 1000).result()


def test_a_record_keeps_no_argument_alive():
    state = given_a_payload(return_state=True)
    gc.collect()
    # the record holds a repr, not the payload, and the task's name, not the task
    assert [ref() for ref in _payloads] == [None, None]
    _payloads.clear()
    [run] = state.record.task_runs
    assert run.parameters is not None
    assert run.parameters["value"] == "Payload(10000000 bytes)"
    note = run.parameters["note"]
    assert len(note) <= ARGUMENT_CHARS and note.startswith("'xxx") and note.endswith("xx'")


def test_kept_arguments_are_small_scalars_or_bounded_reprs():
    class Loud:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    small = (1, 2.5, None, True, "short")
    assert kept_arguments(small) is small  # nothing copied on the common path
    kept = kept_arguments((10**40, "y" * 500, list(range(10**5)), {"k": [1] * 100}, Loud()))
    assert all(len(str(v)) <= ARGUMENT_CHARS for v in kept)
    assert kept[0] == repr(10**40) and kept[2].startswith("[0, 1, 2")
    assert kept[4].startswith("<Loud instance at ")  # its repr raised


@flow
def direct_calls():
    first = st.add(1, 2)
    upstream = st.inc.submit(first)
    st.add(upstream, 10)  # a direct call given a future: waits, then runs here
    return st.fail("called directly")


@flow
async def direct_async_call():
    return await st.async_add(2, 3)


def test_direct_calls_record_arguments_upstreams_and_failures():
    state = direct_calls(return_state=True)
    add1, inc, add2, fail = state.record.task_runs
    assert add1.parameters == {"x": "1", "y": "2"} and add1.upstreams == []
    assert add2.upstreams == [inc.id]
    assert add2.parameters == {"x": f"<result of {inc.name}>", "y": "10"}
    assert fail.state_type == "FAILED" and fail.error == "UserError: called directly"
    assert fail.traceback is not None and fail.traceback.endswith("UserError: called directly")


def test_an_awaited_async_task_is_recorded():
    import asyncio

    state = asyncio.run(direct_async_call(return_state=True))
    [run] = state.record.task_runs
    assert run.task_name == "async_add" and run.state_name == "Completed"
    assert run.parameters == {"x": "2", "y": "3"}


def _live_runs() -> list[object]:
    from braid.core.runs import Run

    return [o for o in gc.get_objects() if type(o) is Run]


def test_a_final_run_is_freed_and_its_record_still_lists_it():
    held: list[object] = []

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def many():
        futures = st.inc.map(range(200))
        held.extend([futures, st.inc.submit(futures[0])])

    # the futures outlive the flow run (the test holds them): only the record could
    # keep the runs, and it keeps their snapshots instead (reference counting alone
    # frees them: the collector is off; runs of earlier tests are left out)
    before = {id(r) for r in _live_runs()}
    gc.disable()
    try:
        state = many(return_state=True)
        live = [r for r in _live_runs() if id(r) not in before]
    finally:
        gc.enable()
    futures, chained = held
    assert futures.result() == list(range(1, 201)) and chained.result() == 2
    assert live == []
    record = state.record
    assert record.counts() == {"COMPLETED": 201}
    runs = record.task_runs
    assert len(runs) == 201 and {r.state_type for r in runs} == {"COMPLETED"}
    assert runs[-1].upstreams == [runs[0].id] and runs[-1].error is None
