"""Fixtures of the multi-host tests: one Dask and one Ray cluster per session, each on
its own three network namespaces (see ``harness.py``), healed before every test.

Without root, ``ip`` or network namespaces, every test here skips with the reason.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest

from . import clusters, harness


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.multihost)


@pytest.fixture(scope="session")
def dask_session() -> Iterator[clusters.DaskCluster]:
    with _hosts_session() as hosts:
        cluster = clusters.DaskCluster(hosts)
        cluster.start()
        yield cluster


@pytest.fixture(scope="session")
def ray_session() -> Iterator[clusters.RayCluster]:
    with _hosts_session() as hosts:
        cluster = clusters.RayCluster(hosts)
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()


class _hosts_session:
    """The namespaces of one cluster, torn down at the end of the session (or at exit)."""

    def __enter__(self) -> harness.Hosts:
        why = harness.why_unavailable()
        if why is not None:
            pytest.skip(why)
        self.ctx = harness.hosts()
        return self.ctx.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.ctx.__exit__(*exc)


@pytest.fixture
def dask_mh(dask_session: clusters.DaskCluster) -> Iterator[clusters.DaskCluster]:
    """The session's Dask cluster, healed: a scheduler and two fresh, idle workers."""
    dask_session.heal()
    yield dask_session
    dask_session.hosts.heal_network()  # no fault outlives its test


@pytest.fixture
def ray_mh(ray_session: clusters.RayCluster) -> Iterator[clusters.RayCluster]:
    """The session's Ray cluster, healed: a head and two 1-CPU nodes, all CPUs free."""
    ray_session.heal()
    yield ray_session
    ray_session.hosts.heal_network()


@pytest.fixture
def outcome_log():
    """Append a row to ``$BRAID_MULTIHOST_OUTCOMES`` (a JSON line per scenario), if set."""
    path = os.environ.get("BRAID_MULTIHOST_OUTCOMES")

    def log(row: dict) -> None:
        if path:
            with open(path, "a") as f:
                f.write(json.dumps({"t": time.time(), **row}) + "\n")

    return log
