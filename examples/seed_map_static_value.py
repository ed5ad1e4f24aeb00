"""The seed's broadcast of a static value: a non-iterable argument goes to every mapped run."""

from __future__ import annotations

from braid import flow, task


@task
def add_together(x: int, y: int) -> int:
    return x + y


@flow
def sum_it(numbers: list[int], static_value: int) -> list[int]:
    futures = add_together.map(numbers, static_value)
    return futures.result()


if __name__ == "__main__":
    resulting_sum = sum_it([1, 2, 3], 5)
    assert resulting_sum == [6, 7, 8]
    print(f"sums: {resulting_sum}")
