"""How a Dask run's end reaches the driver: the workers send the headers of runs that
end while they have more to do in batches, one Dask event for many runs, and a header
left waiting is sent by the worker's timer even while its next run blocks.

The cluster's worker is a thread of this process (so a test can open the gates its
runs wait at, and set how long headers may wait), with one thread, and the scheduler
hands it every run at once (no queuing), so its runs end while others are ready.
"""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("distributed")

import dask  # noqa: E402

from braid import flow  # noqa: E402
from braid.adapters.dask import DaskTaskRunner, get_dask_client  # noqa: E402
from braid.adapters.dask import worker as dask_worker  # noqa: E402
from braid.core.states import DeferredState  # noqa: E402
from braid.testing import dask_tasks as dt  # noqa: E402
from braid.testing import sample_tasks as st  # noqa: E402
from braid.testing.dask_processes import local_cluster  # noqa: E402

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def cluster(tmp_path):
    """One worker thread in this process; the scheduler sends it every run at once."""
    with dask.config.set({"distributed.scheduler.worker-saturation": float("inf")}):
        with local_cluster(tmp_path, workers=1, processes=False) as made:
            yield made


def _header_events(client) -> list[tuple]:
    """The braid header events on the client's topic, as the scheduler keeps them."""
    return [
        msg
        for _, msg in client.get_events(client.id)
        if isinstance(msg, tuple) and msg and msg[0] == dask_worker.HEADERS
    ]


def test_runs_that_end_while_their_worker_is_busy_share_one_event(cluster, monkeypatch):
    """Twenty runs handed to a one-thread worker at once: every run but the last ends
    with another ready, so their headers wait (here as long as it takes) and the last
    run, ending idle, sends all twenty in one event; each run ends from its header."""
    monkeypatch.setattr(dask_worker, "BATCH_SECONDS", 600.0)

    @flow(task_runner=DaskTaskRunner(address=cluster.scheduler_address))
    def body():
        futures = st.inc.map(range(20))
        values = futures.result()
        with get_dask_client() as client:
            events = _header_events(client)
        from_headers = [isinstance(f.state, DeferredState) for f in futures]
        return values, [f.key for f in futures], events, from_headers

    values, keys, events, from_headers = body()
    assert values == list(range(1, 21))
    assert len(events) == 1
    assert sorted(key for key, _ in events[0][1]) == sorted(keys)
    assert all(from_headers)  # each ended from its header, not from a fetch


def test_a_waiting_header_is_sent_while_the_next_run_blocks(cluster):
    """Run 'a' ends while 'b' is ready, so its header waits; 'b' then blocks, and the
    worker's timer still sends 'a''s header: 'a' ends from it (not from a fetch, which
    a lost header would need) while 'b' is running."""
    gates = {name: threading.Event() for name in ("a", "b")}
    dt.GATES.update(gates)

    @flow(task_runner=DaskTaskRunner(address=cluster.scheduler_address))
    def body():
        a, b = dt.gated.map(["a", "b"])
        try:
            gates["a"].set()
            first = a.result(timeout=60)
            seen = (first, isinstance(a.state, DeferredState), b.done())
        finally:
            gates["b"].set()
        return seen, b.result(timeout=60)

    try:
        (first, from_header, b_done), second = body()
    finally:
        for name in gates:
            dt.GATES.pop(name, None)
    assert (first, second) == ("a", "b")
    assert from_header
    assert not b_done
