"""The seed's multiple task runners: a parent flow on threads runs nested flows on other runners.

A flow has one task runner; tasks that should run elsewhere go in a nested flow
with its own runner.  Each entry of ``NESTED_RUNNERS`` gets such a nested flow.
Tasks print each line with one write (``end=""``) so concurrent lines never interleave.
"""

from __future__ import annotations

import braid
from braid import flow, get_run_context, task

# One nested flow per entry: the seed's Dask nested flow, plus threads, processes, Ray.
NESTED_RUNNERS: dict[str, braid.TaskRunner] = {
    "threads": braid.ThreadPoolTaskRunner(max_workers=2),
    "processes": braid.ProcessPoolTaskRunner(max_workers=2),
    "dask": braid.DaskTaskRunner(cluster_kwargs={"n_workers": 1, "threads_per_worker": 2}),
    "ray": braid.RayTaskRunner(init_kwargs={"num_cpus": 2}),
}


@task
def hello_local(name: str) -> None:
    print(f"Hello {name}!\n", end="")


@flow  # implicitly uses the default task runner, ThreadPoolTaskRunner
def concurrent_nested_flow() -> None:
    marvin = hello_local.submit("marvin")
    ford = hello_local.submit("ford")
    marvin.wait(), ford.wait()


@task
def hello_from(runner_name: str) -> str:
    # returned rather than printed: Ray and Dask workers print to their own consoles
    return f"Hello from {runner_name}!"


@flow
def runner_nested_flow(runner_name: str) -> None:
    runner = get_run_context().task_runner
    print(f"{runner_name} nested flow runs on {type(runner).__name__}")
    print(hello_from.submit(runner_name).result())


@flow(task_runner=braid.ThreadPoolTaskRunner())
def parent_flow() -> None:
    concurrent_nested_flow()
    for runner_name, runner in NESTED_RUNNERS.items():
        nested = runner_nested_flow.with_options(
            name=f"{runner_name}_nested_flow", task_runner=runner
        )
        nested(runner_name)


if __name__ == "__main__":
    parent_flow()
