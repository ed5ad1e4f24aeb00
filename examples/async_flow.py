"""An ``async def`` flow: await async tasks directly, and submit or map them to the runner.

A direct call of an async task returns a coroutine that runs on the flow's own
event loop; ``.submit()`` and ``.map()`` hand the runs to the task runner, whose
worker threads each keep one event loop for async tasks.
"""

from __future__ import annotations

import asyncio

from braid import flow, task


@task
async def fetch_price(item: str) -> int:
    await asyncio.sleep(0.01)
    return {"apple": 3, "pear": 4, "plum": 2, "fig": 7}[item]


@task
async def total(prices: list[int]) -> int:
    await asyncio.sleep(0.01)
    return sum(prices)


@flow
async def shopping(items: list[str]) -> int:
    first = await fetch_price(items[0])
    print(f"awaited directly: {items[0]} costs {first}")

    submitted = fetch_price.submit(items[1])
    print(f"submitted: {items[1]} costs {submitted.result()}")

    mapped = fetch_price.map(items)
    print(f"mapped: {mapped.result()}")

    # futures passed to another task are resolved before it runs
    return await total(mapped)


if __name__ == "__main__":
    grand_total = asyncio.run(shopping(["apple", "pear", "plum", "fig"]))
    print(f"total: {grand_total}")
