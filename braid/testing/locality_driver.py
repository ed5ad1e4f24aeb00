"""A driver that measures what a flow's data costs the driver: run as a script.

``python -m braid.testing.locality_driver RUNNER [ADDRESS]`` runs a flow that maps a
task returning ``--mb`` MB (twice) into a consumer that returns its length, after a
warm-up, and prints one JSON line: the lengths, how much the driver's peak RSS grew,
how many bytes the driver received on its sockets, and how many more than the same
flow with 1 MB results.  The data-locality tests compare those with the payload's size.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import socket
from typing import Any

from braid import TaskRunner, flow
from braid.testing import ray_tasks as rt

_received = [0]


def _count_received() -> None:
    """Count every byte this process receives on its sockets (Dask's comms read with
    ``recv_into``/``recv``, which ``/proc/self/io`` does not count)."""
    plain_recv_into, plain_recv = socket.socket.recv_into, socket.socket.recv

    def recv_into(self: socket.socket, *args: Any, **kwargs: Any) -> int:
        n = plain_recv_into(self, *args, **kwargs)
        _received[0] += n
        return n

    def recv(self: socket.socket, *args: Any, **kwargs: Any) -> bytes:
        data = plain_recv(self, *args, **kwargs)
        _received[0] += len(data)
        return data

    socket.socket.recv_into = recv_into  # type: ignore[method-assign]
    socket.socket.recv = recv  # type: ignore[method-assign]


def _bytes_read() -> int:
    return _received[0]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _runner(kind: str, address: str | None) -> TaskRunner:
    if kind == "dask":
        from braid.adapters.dask import DaskTaskRunner

        if address:
            return DaskTaskRunner(address=address)
        return DaskTaskRunner(
            cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "silence_logs": logging.ERROR}
        )
    from braid.adapters.ray import RayTaskRunner

    return RayTaskRunner(address=address)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runner", choices=["dask", "ray"])
    parser.add_argument("address", nargs="?")
    parser.add_argument("--mb", type=int, default=100)
    args = parser.parse_args()
    _count_received()
    runner = _runner(args.runner, args.address)

    @flow(task_runner=runner)
    def big(n: int) -> Any:
        blobs = rt.blob.map([n, n])
        return rt.size_of.map(blobs).result()

    big(10)  # warm-up: imports, connections, workers
    read = _bytes_read()
    big(2**20)  # the same flow with 1 MB results: what the driver reads anyway
    small_read = _bytes_read() - read
    rss, read = _peak_rss_mb(), _bytes_read()
    lengths = big(args.mb * 2**20)
    print(
        json.dumps(
            {
                "lengths": lengths,
                "rss_grew_mb": _peak_rss_mb() - rss,
                "read_mb": (_bytes_read() - read) / 2**20,
                "extra_read_mb": (_bytes_read() - read - small_read) / 2**20,
            }
        )
    )


if __name__ == "__main__":
    main()
