"""The shared timer thread (braid.core.timers): order, errors, stop."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from braid.core.timers import Timer


def test_items_fire_in_time_order_and_a_failing_one_does_not_stop_the_rest(caplog):
    fired: list[str] = []
    done = threading.Event()

    def fire(item: str) -> None:
        if item == "bad":
            raise RuntimeError("boom")
        fired.append(item)
        if item == "last":
            done.set()

    timer: Timer[str] = Timer(fire, "test-timer")
    now = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="braid.timers"):
        assert timer.add(now + 0.2, "last")
        assert timer.add(now + 0.1, "bad")
        assert timer.add(now + 0.05, "first")
        assert done.wait(10)
    assert timer.stop(5) == []
    assert fired == ["first", "last"]
    assert "boom" in caplog.text


def test_stop_returns_waiting_items_and_refuses_new_ones():
    fired: list[int] = []
    timer: Timer[int] = Timer(fired.append, "test-timer")
    later = time.monotonic() + 3600
    timer.add(later, 1)
    timer.add(later, 2)
    assert sorted(timer.stop(5)) == [1, 2]
    assert timer.add(time.monotonic(), 3) is False
    assert fired == []


@pytest.mark.parametrize("join_timeout", [None, 5.0])
def test_stop_ends_the_thread(join_timeout):
    timer: Timer[int] = Timer(lambda item: None, "test-timer-stop")
    timer.stop(join_timeout)
    assert not any(t.name == "test-timer-stop" for t in threading.enumerate())
