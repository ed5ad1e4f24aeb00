"""While flow runs are in progress, the garbage collector's first threshold is raised."""

from __future__ import annotations

import gc
import threading

import pytest

from braid import ThreadPoolTaskRunner, errors, flow
from braid.core import collector
from braid.testing import sample_tasks as st


@flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
def thresholds_seen():
    inner = nested_threshold()
    return gc.get_threshold(), inner, st.inc.submit(1).result()


@flow
def nested_threshold():
    return gc.get_threshold()[0]


@pytest.fixture
def thresholds():
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


def test_a_flow_run_raises_the_first_threshold_and_puts_it_back(thresholds, monkeypatch):
    monkeypatch.delenv(collector.ENV, raising=False)
    seen, inner, value = thresholds_seen()
    assert seen == (collector.DEFAULT_THRESHOLD, 10, 10)
    assert inner == collector.DEFAULT_THRESHOLD and value == 2
    assert gc.get_threshold() == (700, 10, 10)


def test_the_threshold_comes_from_the_environment_and_0_leaves_it(thresholds, monkeypatch):
    monkeypatch.setenv(collector.ENV, "2500")
    assert thresholds_seen()[0] == (2500, 10, 10)
    monkeypatch.setenv(collector.ENV, "0")
    assert thresholds_seen()[0] == (700, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


@pytest.mark.parametrize("text", ["lots", "-1", "1.5"])
def test_a_bad_threshold_fails_the_flow_call_by_name(thresholds, monkeypatch, text):
    monkeypatch.setenv(collector.ENV, text)
    with pytest.raises(errors.ConfigurationError, match=f"BRAID_GC_THRESHOLD.*{text}"):
        thresholds_seen()
    monkeypatch.delenv(collector.ENV)
    assert thresholds_seen()[0][0] == collector.DEFAULT_THRESHOLD  # nothing left counted
    assert gc.get_threshold() == (700, 10, 10)


def test_a_higher_threshold_and_one_changed_during_the_run_are_kept(thresholds, monkeypatch):
    monkeypatch.delenv(collector.ENV, raising=False)
    gc.set_threshold(50_000, 10, 10)
    assert thresholds_seen()[0] == (50_000, 10, 10)
    gc.set_threshold(700, 10, 10)

    @flow
    def changes_it():
        gc.set_threshold(1234, 10, 10)

    changes_it()
    assert gc.get_threshold() == (1234, 10, 10)  # the user's own setting stays


def test_concurrent_flow_runs_put_it_back_after_the_last_one(thresholds, monkeypatch):
    monkeypatch.delenv(collector.ENV, raising=False)
    first_in = threading.Event()
    release = threading.Event()
    seen: list[int] = []

    @flow
    def holds():
        first_in.set()
        release.wait(30)
        seen.append(gc.get_threshold()[0])

    t = threading.Thread(target=holds)
    t.start()
    assert first_in.wait(30)
    assert thresholds_seen()[0][0] == collector.DEFAULT_THRESHOLD
    assert gc.get_threshold()[0] == collector.DEFAULT_THRESHOLD  # the other still runs
    release.set()
    t.join(30)
    assert seen == [collector.DEFAULT_THRESHOLD]
    assert gc.get_threshold() == (700, 10, 10)


class _WontStart(ThreadPoolTaskRunner):
    def start(self) -> None:
        raise RuntimeError("this runner cannot start")


@flow(task_runner=_WontStart(max_workers=1))
def on_a_runner_that_wont_start():
    return 1


def test_a_flow_whose_runner_fails_to_start_puts_it_back(thresholds, monkeypatch):
    monkeypatch.delenv(collector.ENV, raising=False)
    with pytest.raises(RuntimeError, match="cannot start"):
        on_a_runner_that_wont_start()
    assert gc.get_threshold() == (700, 10, 10)
    assert thresholds_seen()[0][0] == collector.DEFAULT_THRESHOLD  # nothing left counted
    assert gc.get_threshold() == (700, 10, 10)
