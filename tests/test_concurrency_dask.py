"""Concurrency and rate limits on a real Dask cluster: a ``LocalCluster`` shared by the
module, and ``dask scheduler``/``dask worker`` processes for a worker killed from outside.

Leases expire fast here (``lease-timeout`` 1 s, checked every 0.2 s) so that a dead
holder's slot comes back within the test's time."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import pytest

pytest.importorskip("distributed")

import dask  # noqa: E402
from distributed import Client  # noqa: E402

from braid import errors  # noqa: E402
from braid.concurrency import (  # noqa: E402
    Limit,
    LimitTable,
    dask_backend,  # noqa: E402
    use_limits,
)
from braid.concurrency.dask_backend import DaskLimits  # noqa: E402
from braid.concurrency.sync import concurrency  # noqa: E402
from braid.testing import limit_tasks as lt  # noqa: E402
from braid.testing.dask_processes import dask_processes, local_cluster

pytestmark = pytest.mark.timeout(90)
#: clock resolution: grants are timed by time.time() in different processes
CLOCK = 0.001
FAST_LEASES = {
    "distributed.scheduler.locks.lease-timeout": "1s",
    "distributed.scheduler.locks.lease-validation-interval": "200ms",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with (
        dask.config.set(FAST_LEASES),
        local_cluster(tmp_path_factory.mktemp("dask"), nthreads=2) as cluster,
    ):
        yield cluster


@pytest.fixture
def client(cluster):
    with dask.config.set(FAST_LEASES), Client(cluster, set_as_default=False) as client:
        limits = DaskLimits(client)
        yield client, limits
        limits.close()


def _map(client, fn, *columns):
    return client.gather(client.map(fn, *columns, pure=False))


def test_peak_across_workers_and_clients_is_the_limit(cluster, client):
    first, limits = client
    handle = limits.handle(LimitTable({"db": 2}))
    with Client(cluster, set_as_default=False) as second:
        other = DaskLimits(second).handle(LimitTable({"db": 2}))
        futures = first.map(lt.hold, [handle] * 6, ["db"] * 6, [0.1] * 6, pure=False)
        futures += second.map(lt.hold, [other] * 6, ["db"] * 6, [0.1] * 6, pure=False)
        with use_limits(handle):
            spans = [lt.hold(handle, "db", 0.1)]
        spans += first.gather(futures[:6]) + second.gather(futures[6:])
    assert lt.peak(spans) == 2


def test_several_slots_at_once(client):
    dask_client, limits = client
    handle = limits.handle(LimitTable({"wide": 3}))
    spans = _map(dask_client, lt.hold, [handle] * 4, ["wide"] * 4, [0.1] * 4, [2] * 4)
    assert lt.peak(spans) == 1


def test_rate_limit_across_workers(client):
    dask_client, limits = client
    handle = limits.handle(LimitTable({"api": Limit(1, 10.0)}))
    spans = _map(dask_client, lt.rate_times, [handle] * 2, ["api"] * 2, [3] * 2)
    assert lt.granted_span(spans) >= 5 * 0.1 - CLOCK  # 6 grants, 0.1 s apart


def test_timeout_in_a_worker_is_the_named_error(client):
    dask_client, limits = client
    handle = limits.handle(LimitTable({"one": 1}))
    with use_limits(handle), concurrency("one"):
        future = dask_client.submit(lt.hold, handle, "one", 0, 1, 0.2, pure=False)
        with pytest.raises(errors.ConcurrencyTimeout):
            future.result()


def test_a_name_in_use_keeps_its_limit(client):
    _, limits = client
    with use_limits(limits.handle(LimitTable({"redo": 2}))), concurrency("redo"):
        with use_limits(limits.handle(LimitTable({"redo": 3}))):
            with pytest.raises(errors.LimitRedeclared):
                with concurrency("redo"):
                    pass
    with use_limits(limits.handle(LimitTable({"redo": 3}))):
        with concurrency("redo", occupy=3, timeout_seconds=10):
            pass


def test_a_worker_killed_holding_a_slot_gives_it_back(client, tmp_path):
    dask_client, limits = client
    handle = limits.handle(LimitTable({"solo": 1}))
    # The worker dies holding the slot; Dask reruns the task elsewhere, and the rerun
    # gets the slot once the dead worker's lease expires.
    future = dask_client.submit(
        lt.hold_then_die_once, handle, "solo", str(tmp_path / "f"), pure=False
    )
    assert future.result(timeout=60) > 0
    with use_limits(handle), concurrency("solo", timeout_seconds=10):
        pass


def test_a_release_travels_with_the_next_acquire_of_this_process(cluster, client, monkeypatch):
    # no release is sent on its own for a minute, and leases expire after 1 s here: five
    # slots of a limit of 2 taken in turn within 0.5 s each were given back by the acquires
    dask_client, limits = client
    monkeypatch.setattr(limits.releases, "delay", 60.0)
    with Client(cluster, set_as_default=False) as second:
        other = DaskLimits(second)  # another process's view: it takes nothing along
        try:
            for _ in range(5):
                limits.release("along", limits.acquire("along", Limit(2), 1, 0.5))
            assert other.acquire("along", Limit(2), 2, 0.2) is None  # the last is unsent
        finally:
            other.close()
    limits.close()  # sends it
    after = DaskLimits(dask_client)
    try:
        assert after.acquire("along", Limit(2), 2, 0.5) is not None
    finally:
        after.close()


def test_a_release_no_acquire_takes_along_is_sent_soon(client):
    dask_client, limits = client
    handle = limits.handle(LimitTable({"flush": 2}))
    with use_limits(handle), concurrency("flush"):
        pass
    # sent within FLUSH_SECONDS: a worker gets both slots before the lease would expire
    dask_client.submit(lt.hold, handle, "flush", 0, 2, 0.5, pure=False).result()


def test_without_braids_routes_on_the_scheduler_dask_routes_are_used(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="braid.concurrency")
    blocked = {"distributed.scheduler.blocked-handlers": ["run_function"], **FAST_LEASES}
    with (
        dask.config.set(blocked),
        local_cluster(tmp_path, workers=1, nthreads=2) as cluster,
        Client(cluster, set_as_default=False) as dask_client,
    ):
        limits = DaskLimits(dask_client)
        try:
            handle = limits.handle(LimitTable({"db": 1}))
            spans = _map(dask_client, lt.hold, [handle] * 4, ["db"] * 4, [0.05] * 4)
            with use_limits(handle):
                spans.append(lt.hold(handle, "db", 0.05, 1, 5))
                spans.append(lt.hold(handle, "db", 0.05, 1, 0.5))  # the release went at once
            assert lt.peak(spans) == 1
            assert "cannot add braid's semaphore routes" in caplog.text
        finally:
            limits.close()


def test_a_slot_given_back_is_taken_again_without_a_round_trip_only_while_there_is_room(client):
    # a lease held back, not yet sent, is still counted by the scheduler: this process may
    # take it again (the same lease) while the scheduler's last answer said there was room
    _, limits = client
    roomy = limits.acquire("room", Limit(3), 1, 5)
    limits.release("room", roomy)
    again = limits.acquire("room", Limit(3), 1, 5)
    assert again == roomy
    limits.release("room", again)
    time.sleep(2 * dask_backend.FLUSH_SECONDS)  # the answer is too old: ask the scheduler
    fresh = limits.acquire("room", Limit(3), 1, 5)
    assert fresh != roomy
    limits.release("room", fresh)
    full = limits.acquire("full", Limit(1), 1, 5)  # the semaphore is full: sent at once
    limits.release("full", full)
    assert limits.acquire("full", Limit(1), 1, 5) not in (None, full)


# -- dask scheduler + dask worker processes -------------------------------------------------------
@pytest.fixture
def process_cluster(tmp_path):
    env = {
        "DASK_DISTRIBUTED__SCHEDULER__LOCKS__LEASE_TIMEOUT": "1s",
        "DASK_DISTRIBUTED__SCHEDULER__LOCKS__LEASE_VALIDATION_INTERVAL": "200ms",
    }
    with (
        dask_processes(tmp_path, nthreads=2, env=env) as (_, sched_file),
        dask.config.set(FAST_LEASES),
        Client(scheduler_file=str(sched_file), set_as_default=False) as client,
    ):
        client.wait_for_workers(2, timeout=60)
        yield client


def test_process_cluster_peak_and_a_worker_killed_from_outside(process_cluster, tmp_path):
    limits = DaskLimits(process_cluster)
    try:
        handle = limits.handle(LimitTable({"db": 2}))
        spans = _map(process_cluster, lt.hold, [handle] * 12, ["db"] * 12, [0.1] * 12)
        assert lt.peak(spans) == 2

        flag = tmp_path / "holding"
        victim = process_cluster.submit(lt.hold_until_killed, handle, "db", str(flag), pure=False)
        deadline = time.monotonic() + 30
        while not flag.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        victim.cancel()  # so that Dask does not rerun it: the rerun would hold the slot
        os.kill(int(flag.read_text()), signal.SIGKILL)
        with use_limits(handle), concurrency("db", occupy=2, timeout_seconds=30):
            pass
    finally:
        limits.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("braid-limits")]
