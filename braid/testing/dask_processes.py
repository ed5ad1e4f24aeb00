"""A real Dask cluster made of processes for tests: ``dask scheduler`` and ``dask worker``.

Both listen on 127.0.0.1 only; every process is started here and stopped here (workers
first, then the scheduler; SIGTERM, then SIGKILL after 20 s), and every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from braid import errors

__all__ = ["dask_processes", "local_cluster"]


def local_cluster(
    directory: Path | str,
    *,
    workers: int = 2,
    nthreads: int = 1,
    processes: bool = True,
    **extra: Any,
) -> Any:
    """A quiet ``distributed.LocalCluster`` of ``workers`` worker processes (threads of this
    process with ``processes=False``) with ``nthreads`` threads each, its dashboard on a
    free loopback port and its files in ``directory``; use it as a context manager
    (leaving the block stops every process it started).  ``extra`` goes to
    ``LocalCluster`` as is (e.g. ``resources={"GPU": 1}``)."""
    import logging

    from distributed import LocalCluster

    return LocalCluster(
        n_workers=workers,
        threads_per_worker=nthreads,
        processes=processes,
        dashboard_address="127.0.0.1:0",
        silence_logs=logging.ERROR,
        local_directory=str(directory),
        **extra,
    )


@contextmanager
def dask_processes(
    directory: Path, *, workers: int = 2, nthreads: int = 1, env: Mapping[str, str] | None = None
) -> Iterator[tuple[str, Path]]:
    """Run a ``dask scheduler`` and ``workers`` ``dask worker`` processes on loopback for
    the block, yielding the scheduler's address and its scheduler file.

    Logs go to ``directory/scheduler.log`` and ``directory/worker<i>.log``; ``env`` adds
    to the processes' environment (e.g. ``DASK_...`` settings).  Raises
    :class:`braid.errors.ClusterUnreachable` if the cluster is not up within 60 s.
    """
    from distributed import Client

    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    dask_bin = os.path.join(os.path.dirname(sys.executable), "dask")
    sched_file = directory / "scheduler.json"
    procs: list[subprocess.Popen[bytes]] = []
    with ExitStack() as logs:

        def start(args: list[str], name: str) -> None:
            log = logs.enter_context(open(directory / f"{name}.log", "wb"))  # noqa: SIM115
            procs.append(
                subprocess.Popen(
                    [dask_bin, *args],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=full_env,
                    cwd=directory,
                )
            )

        loopback = ["--host", "127.0.0.1", "--no-dashboard", "--dashboard-address", "127.0.0.1:0"]
        start(
            ["scheduler", *loopback, "--port", "0", "--scheduler-file", str(sched_file)],
            "scheduler",
        )
        try:
            deadline = time.monotonic() + 60
            while not sched_file.exists():
                if time.monotonic() > deadline or procs[0].poll() is not None:
                    raise errors.ClusterUnreachable(
                        "dask scheduler did not start within 60 s; its log: "
                        f"{directory}/scheduler.log"
                    )
                time.sleep(0.1)
            for i in range(workers):
                start(
                    [
                        "worker",
                        "--scheduler-file",
                        str(sched_file),
                        *loopback,
                        "--nthreads",
                        str(nthreads),
                        "--local-directory",
                        str(directory / f"w{i}"),
                    ],
                    f"worker{i}",
                )
            with Client(scheduler_file=str(sched_file), set_as_default=False) as client:
                client.wait_for_workers(workers, timeout=60)
                address = str(client.scheduler.address)
            yield address, sched_file
        finally:
            for group in (procs[1:], procs[:1]):  # workers first, then the scheduler
                for p in group:
                    if p.poll() is None:
                        p.send_signal(signal.SIGTERM)
                for p in group:
                    try:
                        p.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait(timeout=10)
