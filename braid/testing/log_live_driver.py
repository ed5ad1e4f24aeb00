"""A driver for the logging tests: ``python -m braid.testing.log_live_driver RUNNER TOKEN``
configures logging (``basicConfig`` at INFO, warnings captured), runs
:func:`braid.testing.log_tasks.log_everything` on RUNNER, whose worker configures its own
logging too, and exits; the test counts each line naming TOKEN in the output.  On Ray,
the worker's output is streamed to the driver (``log_to_driver=True``), so a record the
worker printed itself would show twice."""

from __future__ import annotations

import logging
import sys

from braid import flow
from braid.runners.registry import load_runner_class
from braid.testing import log_tasks as lt


def main() -> None:
    runner_name, token = sys.argv[1], sys.argv[2]
    logging.basicConfig(level=logging.INFO)
    logging.captureWarnings(True)
    kwargs: dict = {
        "threads": {"max_workers": 1},
        "processes": {"max_workers": 1},
        "dask": {"cluster_kwargs": {"n_workers": 1, "threads_per_worker": 1}},
        "ray": {"init_kwargs": {"num_cpus": 1, "log_to_driver": True}},
    }[runner_name]

    @flow(task_runner=load_runner_class(runner_name)(**kwargs))
    def logs_everything() -> str:
        return lt.log_everything.submit(token).result()

    logs_everything()


if __name__ == "__main__":
    main()
