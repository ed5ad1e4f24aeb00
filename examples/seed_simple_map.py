"""The seed's simple mapping: one ``square_num`` run per element, then one task over them all.

``print_nums`` is called directly with the list of futures; braid replaces each
future with its result before the task runs.
"""

from __future__ import annotations

from braid import flow, task


@task
def print_nums(nums: list[int]) -> None:
    for n in nums:
        print(n)


@task
def square_num(num: int) -> int:
    return num**2


@flow
def map_flow(nums: list[int]) -> None:
    squared_nums = square_num.map(nums)
    print_nums(squared_nums)


if __name__ == "__main__":
    map_flow([1, 2, 3, 5, 8, 13])
