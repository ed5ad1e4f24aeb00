"""A Prefect-style flow: submit, map, unmapped, wait_for, allow_failure, futures, states,
hooks, the runtime context and a returned Failed state (written for Prefect 3)."""

from prefect import flow, task, unmapped
from prefect.futures import PrefectFuture, wait
from prefect.runtime import flow_run, task_run
from prefect.states import Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import allow_failure

SEEN = []


@task
def price(item: str, rates: dict) -> float:
    return rates[item]


@task
def check(total: float):
    if total > 500:
        return Failed(message=f"total {total} over budget")
    return Completed(message="within budget")


@task
def explode():
    raise ValueError("no stock")


@task
def report(value, label: str) -> str:
    kind = type(value).__name__
    return f"{label}: {kind} in {task_run.name.split('-')[0]}"


def remember(flw, run, state):
    SEEN.append(state.name)


@flow(task_runner=ThreadPoolTaskRunner(max_workers=3), on_completion=[remember])
def orders_pipeline(items: list[str], factor: int = 2):
    rates = {"a": 10.0, "b": 20.0, "c": 30.0}
    prices = price.map(items, unmapped(rates))
    futures: list[PrefectFuture] = list(prices)
    done, not_done = wait(futures)
    assert not not_done
    total = sum(f.result() for f in prices) * factor
    verdict = check(total, return_state=True)
    assert verdict.is_completed() and verdict.message == "within budget"
    over = check.submit(1000.0)
    over.wait()
    assert over.state.is_failed() and "over budget" in over.state.message
    broken = explode.submit()
    note = report.submit(allow_failure(broken), "explode", wait_for=[prices])
    assert note.result() == "explode: ValueError in report"
    assert flow_run.parameters == {"items": items, "factor": factor}
    assert flow_run.name.startswith("orders_pipeline")
    return total


if __name__ == "__main__":
    print(orders_pipeline(["a", "b", "c"]))
