"""Ray set-ups that cannot work fail fast, by name: a dead address, resources no node has."""

from __future__ import annotations

import os
import time

import pytest

for _key, _value in {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}.items():
    os.environ.setdefault(_key, _value)

pytest.importorskip("ray")

from braid import errors, flow  # noqa: E402
from braid.adapters.ray import RayTaskRunner, remote_options  # noqa: E402
from braid.testing import sample_tasks as st  # noqa: E402


def test_a_dead_address_fails_fast_by_name():
    @flow(task_runner=RayTaskRunner(address="127.0.0.1:1"))
    def nowhere():
        return 1

    start = time.monotonic()
    with pytest.raises(errors.ClusterUnreachable, match="127.0.0.1:1"):
        nowhere()
    assert time.monotonic() - start < 30  # hang guard: Ray alone retried for minutes


def test_a_gpu_no_node_has_is_refused_at_submit():
    @flow(task_runner=RayTaskRunner(init_kwargs={"num_cpus": 1}))
    def wants_a_gpu():
        with remote_options(num_gpus=1):
            return st.inc.submit(1).result(timeout=60)  # hang guard

    with pytest.raises(errors.ConfigurationError, match="GPU"):
        wants_a_gpu()


def test_a_future_from_an_earlier_ray_feeds_a_later_flow():
    """braid shuts down the Ray it started with the flow; a future kept from that flow is
    passed to a run of the next flow (on a new Ray) by its result, not by its dead ref."""
    kept = []

    @flow(task_runner=RayTaskRunner(init_kwargs={"num_cpus": 1}))
    def first():
        read, unread = st.inc.submit(1), st.inc.submit(10)
        kept.extend([read, unread])
        unread.wait()
        return read.result()

    @flow(task_runner=RayTaskRunner(init_kwargs={"num_cpus": 1}))
    def second():
        return [st.inc.submit(f).result(timeout=60) for f in kept]  # hang guard

    assert first() == 2
    assert second() == [3, 12]
