"""The seed's ``unmapped``: an iterable argument broadcast to every run instead of zipped."""

from __future__ import annotations

from braid import flow, task, unmapped


@task
def sum_plus(x: int, static_iterable: list[int]) -> int:
    return x + sum(static_iterable)


@flow
def sum_it(numbers: list[int], static_iterable: list[int]) -> list[int]:
    futures = sum_plus.map(numbers, unmapped(static_iterable))
    return futures.result()


if __name__ == "__main__":
    resulting_sum = sum_it([4, 5, 6], [1, 2, 3])
    assert resulting_sum == [10, 11, 12]
    print(f"sums: {resulting_sum}")
