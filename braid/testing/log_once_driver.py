"""A driver for the logging tests: ``python -m braid.testing.log_once_driver RUNNER MODE``
runs a task that logs one line through its run logger; MODE ``basic`` configures logging
first (``logging.basicConfig``), ``none`` leaves it alone.  The tests count the line."""

from __future__ import annotations

import logging
import sys

from braid import flow, get_run_logger, task
from braid.runners.registry import load_runner_class


@task
def say_hello() -> None:
    """Logs one line on the run logger."""
    get_run_logger().info("hello from the worker, once")


def main() -> None:
    runner_name, mode = sys.argv[1], sys.argv[2]
    if mode == "basic":
        logging.basicConfig(level=logging.INFO)
    cls = load_runner_class(runner_name)
    kwargs: dict = {
        "threads": {"max_workers": 1},
        "processes": {"max_workers": 1},
        "dask": {"cluster_kwargs": {"n_workers": 1, "threads_per_worker": 1}},
        "ray": {"init_kwargs": {"num_cpus": 1}},
    }[runner_name]

    @flow(task_runner=cls(**kwargs))
    def logs_once() -> None:
        say_hello.submit().result()

    logs_once()


if __name__ == "__main__":
    main()
