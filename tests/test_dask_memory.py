"""What a DaskTaskRunner's driver keeps alive per run: the client it opens keeps a short
log of the messages it sent (each run is one), and a user's own setting of that log wins.
"""

from __future__ import annotations

import time

import pytest

pytest.importorskip("distributed")

import dask  # noqa: E402

from braid import flow  # noqa: E402
from braid.adapters.dask import DaskTaskRunner  # noqa: E402
from braid.adapters.dask.cluster import LOG_LENGTH, MESSAGE_LOG  # noqa: E402
from braid.testing import sample_tasks as st  # noqa: E402
from braid.testing.dask_processes import local_cluster  # noqa: E402

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One worker process with one thread."""
    with local_cluster(tmp_path_factory.mktemp("dask"), workers=1) as made:
        yield made


def test_a_runners_client_keeps_a_short_log_of_the_runs_it_sent(cluster):
    """Each run is one message to the scheduler; Dask's client keeps its last 1000
    batches of them (every run of the last ~10 s), the runner's own client only
    MESSAGE_LOG batches: a chain sent over many batches leaves no more behind."""
    runner = DaskTaskRunner(address=cluster.scheduler_address)

    @flow(task_runner=runner)
    def chain() -> tuple[int, int, int]:
        f = st.inc.submit(0)
        for _ in range(1, 2 * MESSAGE_LOG):
            time.sleep(0.012)  # past the client's 10 ms batching: a batch each
            f = st.inc.submit(f)
        assert f.result() == 2 * MESSAGE_LOG
        comm = _client_comm()
        return comm.batch_count, len(comm.recent_message_log), comm.recent_message_log.maxlen

    sent, kept, most = chain()
    assert sent > MESSAGE_LOG  # the log was full
    assert kept == most == MESSAGE_LOG


def test_a_log_length_the_user_set_is_kept(cluster):
    """A length set in Dask's config (here 7 batches) is the user's to choose."""
    runner = DaskTaskRunner(address=cluster.scheduler_address)

    @flow(task_runner=runner)
    def one() -> int | None:
        assert st.inc.submit(1).result() == 2
        maxlen: int | None = _client_comm().recent_message_log.maxlen
        return maxlen

    with dask.config.set({LOG_LENGTH: 7}):
        assert one() == 7
    assert dask.config.get(LOG_LENGTH) == 1000  # Dask's own default, untouched after


def _client_comm():
    """The batched stream to the scheduler of the flow's runner's client."""
    from braid.adapters.dask import get_dask_client

    with get_dask_client() as client:
        return client.scheduler_comm
