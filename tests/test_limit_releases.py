"""Releases held back to travel with the next request (braid.concurrency.deferred), with a
recording ``send``: taken along, sent on their own after the delay, or at close."""

from __future__ import annotations

import threading
import time

import pytest

from braid.concurrency.deferred import DeferredReleases

pytestmark = pytest.mark.timeout(30)


class Sent:
    """A ``send`` that records its messages."""

    def __init__(self) -> None:
        self.messages: list[tuple[object, list]] = []
        self.arrived = threading.Event()

    def __call__(self, target: object, tokens: list) -> None:
        self.messages.append((target, list(tokens)))
        self.arrived.set()


def test_releases_travel_with_the_next_request_for_their_key():
    sent = Sent()
    releases = DeferredReleases(sent, 60.0, "braid-limits-test")
    releases.defer("db", "actor", 1)
    releases.defer("db", "actor", 2)
    releases.defer("api", "actor", 3)
    assert releases.take("db", "actor") == [1, 2]
    assert releases.take("db", "actor") == []
    assert sent.messages == []
    assert releases.close() == [("actor", [3])]  # the caller sends what is left
    releases.defer("db", "actor", 4)  # closed: sent at once
    assert sent.messages == [("actor", [4])]


def test_a_release_no_request_takes_is_sent_after_the_delay():
    sent = Sent()
    releases = DeferredReleases(sent, 0.05, "braid-limits-test")
    start = time.monotonic()
    releases.defer("db", "actor", 1)
    assert sent.arrived.wait(5)
    assert time.monotonic() - start >= 0.05
    assert sent.messages == [("actor", [1])]
    assert releases.take("db", "actor") == []
    releases.close()
    assert not [t for t in threading.enumerate() if t.name == "braid-limits-test"]


def test_releases_for_another_target_go_on_their_own_first():
    sent = Sent()
    releases = DeferredReleases(sent, 60.0, "braid-limits-test")
    releases.defer("db", "old actor", 1)
    releases.defer("db", "new actor", 2)  # the name has another target now
    assert sent.messages == [("old actor", [1]), ("new actor", [2])]
    releases.defer("db", "old actor", 3)
    assert releases.take("db", "new actor") == []  # not for this target: sent instead
    assert sent.messages[-1] == ("old actor", [3])
    assert releases.close() == []


def test_one_token_can_be_taken_back():
    sent = Sent()
    releases = DeferredReleases(sent, 60.0, "braid-limits-test")
    releases.defer("db", "actor", 1)
    releases.defer("db", "actor", 2)
    assert releases.take_one("db", "another actor") is None
    assert releases.take_one("db", "actor") == 2
    assert releases.take("db", "actor") == [1]
    assert releases.take_one("db", "actor") is None
    assert releases.close() == [] and sent.messages == []
