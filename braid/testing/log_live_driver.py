"""A driver for the logging tests: ``python -m braid.testing.log_live_driver RUNNER TOKEN
MODE``, with MODE ``basic``, configures logging (``basicConfig`` at INFO, warnings
captured; MODE ``none`` leaves logging as it is: braid's console shows run records), runs
:func:`braid.testing.log_tasks.log_everything` on RUNNER, whose worker configures its own
logging too, and exits; the test counts each line naming TOKEN in the output.  On Ray,
the worker's output is streamed to the driver (``log_to_driver=True``), so a record the
worker printed itself would show twice.  RUNNER ``dask-inproc`` is Dask with its workers
as threads of this process (``LocalCluster(processes=False)``)."""

from __future__ import annotations

import logging
import sys

from braid import flow
from braid.runners.registry import load_runner_class
from braid.testing import log_tasks as lt


def main() -> None:
    runner_name, token, mode = sys.argv[1:4]
    if mode == "basic":
        logging.basicConfig(level=logging.INFO)
        logging.captureWarnings(True)
    kwargs: dict = {
        "threads": {"max_workers": 1},
        "processes": {"max_workers": 1},
        "dask": {"cluster_kwargs": {"n_workers": 1, "threads_per_worker": 1}},
        "dask-inproc": {"cluster_kwargs": {"n_workers": 1, "processes": False}},
        "ray": {"init_kwargs": {"num_cpus": 1, "log_to_driver": True}},
    }[runner_name]
    runner_class = load_runner_class(runner_name.partition("-")[0])

    @flow(task_runner=runner_class(**kwargs))
    def logs_everything() -> str:
        return lt.log_everything.submit(token).result()

    logs_everything()


if __name__ == "__main__":
    main()
