"""Concurrency and rate limits on a real local Ray (``ray.init`` once for the module): one
named actor per limit, leases renewed by the holder and expiring when it dies (2 s here)."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time

import pytest

for _key, _value in (
    ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0"),
    ("RAY_AUTH_MODE", "disabled"),
    ("RAY_USAGE_STATS_ENABLED", "0"),
):
    os.environ.setdefault(_key, _value)

ray = pytest.importorskip("ray")

from braid import errors  # noqa: E402
from braid.concurrency import Limit, LimitTable, ray_backend, use_limits  # noqa: E402
from braid.concurrency.ray_backend import RayLimits  # noqa: E402
from braid.concurrency.sync import concurrency  # noqa: E402
from braid.testing import limit_tasks as lt  # noqa: E402

pytestmark = pytest.mark.timeout(120)
#: clock resolution: grants are timed by time.time() in different processes
CLOCK = 0.001
NAMES = ("db", "api", "one", "redo", "solo", "along", "flush", "room", "full")


@pytest.fixture(scope="module")
def limits():
    if ray.is_initialized():
        pytest.skip("this process is already connected to a Ray")
    temp_dir = tempfile.mkdtemp(prefix="brl", dir="/tmp")  # socket paths must stay short
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
        _temp_dir=temp_dir,
    )
    try:
        backend = RayLimits(lease_seconds=2.0)
        yield backend
        backend.close()
        for name in NAMES:
            backend.remove(name)
        assert not [t for t in threading.enumerate() if t.name.startswith("braid-limits")]
    finally:
        ray.shutdown()


def _run(fn, *args, **options):
    return ray.remote(fn).options(num_cpus=1, **options).remote(*args)


def test_peak_across_ray_workers_is_the_limit(limits):
    handle = limits.handle(LimitTable({"db": 2}))
    refs = [_run(lt.hold, handle, "db", 0.1) for _ in range(12)]
    with use_limits(handle):
        spans = [lt.hold(handle, "db", 0.1)]
    spans += ray.get(refs)
    assert lt.peak(spans) == 2


def test_rate_limit_across_ray_workers(limits):
    handle = limits.handle(LimitTable({"api": Limit(1, 10.0)}))
    spans = ray.get([_run(lt.rate_times, handle, "api", 3) for _ in range(2)])
    assert lt.granted_span(spans) >= 5 * 0.1 - CLOCK  # 6 grants, 0.1 s apart


def test_timeout_in_a_ray_worker_is_the_named_error(limits):
    handle = limits.handle(LimitTable({"one": 1}))
    with use_limits(handle), concurrency("one"):
        with pytest.raises(errors.ConcurrencyTimeout):
            ray.get(_run(lt.hold, handle, "one", 0, 1, 0.2))


def test_a_name_in_use_keeps_its_limit(limits):
    with use_limits(limits.handle(LimitTable({"redo": 2}))), concurrency("redo"):
        with use_limits(limits.handle(LimitTable({"redo": 3}))):
            with pytest.raises(errors.LimitRedeclared):
                with concurrency("redo"):
                    pass
    with use_limits(limits.handle(LimitTable({"redo": 3}))):
        with concurrency("redo", occupy=3, timeout_seconds=10):
            pass


def test_a_ray_worker_killed_holding_a_slot_gives_it_back(limits, tmp_path):
    handle = limits.handle(LimitTable({"solo": 1}))
    # The first attempt dies holding the slot; Ray's retry waits for the lease to expire.
    ref = _run(lt.hold_then_die_once, handle, "solo", str(tmp_path / "flag"), max_retries=1)
    assert ray.get(ref, timeout=60) > 0
    with use_limits(handle), concurrency("solo", timeout_seconds=10):
        pass


def test_a_release_travels_with_the_next_request_of_this_process(limits):
    # no release is sent on its own for a minute, and leases last 2.5 s: five slots of a
    # limit of 2 taken in turn within 0.5 s each were given back by the requests (these two
    # backends are not the one the module's handles find)
    mine, other = RayLimits(lease_seconds=2.5), RayLimits(lease_seconds=2.5)
    mine.releases.delay = 60.0
    try:
        for _ in range(5):
            mine.release("along", mine.acquire("along", Limit(2), 1, 0.5))
        assert other.acquire("along", Limit(2), 2, 0.5) is None  # the last one is unsent
    finally:
        other.close()
        mine.close()  # sends it
    token = limits.acquire("along", Limit(2), 2, 0.5)
    assert token is not None
    limits.release("along", token)


def test_a_release_no_request_takes_along_is_sent_soon_or_at_close(limits):
    handle = limits.handle(LimitTable({"flush": 2}))
    with use_limits(handle), concurrency("flush"):
        pass
    # sent within FLUSH_SECONDS: a worker gets both slots long before the lease expires
    ray.get(_run(lt.hold, handle, "flush", 0, 2, 1.0))
    other = RayLimits(lease_seconds=2.5)  # not the backend the handle finds
    other.releases.delay = 60.0
    other.release("flush", other.acquire("flush", Limit(2), 1, 1.0))
    other.close()  # sends it
    with use_limits(handle), concurrency("flush", occupy=2, timeout_seconds=1.0):
        pass


def test_a_slot_given_back_is_taken_again_without_a_round_trip_only_while_there_is_room(
    limits, monkeypatch
):
    # a lease held back, not yet sent, is still counted by the actor: this process may take
    # it again (the same lease) while the actor's last answer said there was room.  The
    # window is 5 ms; widened here so that a loaded machine cannot close it between calls
    flush = ray_backend.FLUSH_SECONDS
    monkeypatch.setattr(ray_backend, "FLUSH_SECONDS", 60.0)
    monkeypatch.setattr(limits.releases, "delay", 60.0)
    roomy = limits.acquire("room", Limit(3), 1, 5)
    limits.release("room", roomy)
    again = limits.acquire("room", Limit(3), 1, 5)
    assert again == roomy
    monkeypatch.setattr(ray_backend, "FLUSH_SECONDS", flush)
    monkeypatch.setattr(limits.releases, "delay", flush)
    limits.release("room", again)
    time.sleep(2 * flush)  # the answer is too old: ask the actor
    fresh = limits.acquire("room", Limit(3), 1, 5)
    assert fresh != roomy
    limits.release("room", fresh)
    full = limits.acquire("full", Limit(1), 1, 5)  # the limit is full: sent at once
    limits.release("full", full)
    assert limits.acquire("full", Limit(1), 1, 5) not in (None, full)
