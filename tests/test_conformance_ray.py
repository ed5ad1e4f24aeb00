"""The conformance suite on RayTaskRunner, against one local Ray started once for this file:
as it comes, and with every run that may share a Ray task sharing one
(``braid.adapters.ray.remotes.PER_CPU = 0``: a map's runs go in batches however few,
every eligible submit waits to join others, and a run whose upstream waits so joins
its upstream's batch, as a chain's links do), so every semantic holds batched too.

The runner finds Ray already initialised, so it uses it and leaves it running: the
file's fixture owns it and shuts it down at the end.
"""

from __future__ import annotations

import logging
import os
import tempfile

import pytest

for _key, _value in (
    ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0"),
    ("RAY_AUTH_MODE", "disabled"),
    ("RAY_USAGE_STATS_ENABLED", "0"),
):
    os.environ.setdefault(_key, _value)

ray = pytest.importorskip("ray")

from braid.adapters.ray import RayTaskRunner, remotes  # noqa: E402
from braid.testing.suite import RunnerConformance  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    temp_dir = tempfile.mkdtemp(prefix="brc", dir="/tmp")  # socket paths must stay short
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
        _temp_dir=temp_dir,
    )
    try:
        yield
    finally:
        ray.shutdown()


class TestRay(RunnerConformance):
    @pytest.fixture
    def runner(self, local_ray):
        return RayTaskRunner()


class TestRayBatched(RunnerConformance):
    @pytest.fixture
    def runner(self, local_ray, monkeypatch):
        monkeypatch.setattr(remotes, "PER_CPU", 0)
        return RayTaskRunner()
