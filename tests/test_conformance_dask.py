"""The conformance suite on DaskTaskRunner, against one LocalCluster (worker processes,
one thread each) started once for this file; each flow run connects by address."""

from __future__ import annotations

import pytest

pytest.importorskip("distributed")


from braid.adapters.dask import DaskTaskRunner  # noqa: E402
from braid.testing.dask_processes import local_cluster  # noqa: E402
from braid.testing.suite import RunnerConformance  # noqa: E402


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    with local_cluster(tmp_path_factory.mktemp("dask")) as cluster:
        yield cluster


class TestDask(RunnerConformance):
    @pytest.fixture
    def runner(self, dask_cluster):
        return DaskTaskRunner(address=dask_cluster.scheduler_address)
