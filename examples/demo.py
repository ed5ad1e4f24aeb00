"""The demo: one real flow, first on the default thread runner, then on other runners."""

from __future__ import annotations

import sys
import time

from braid import flow, task


@task
def square(x: int) -> int:
    return x * x


@task
def total(values: list[int]) -> int:
    return sum(values)


@flow(log_prints=True)
def sum_of_squares(n: int = 10) -> int:
    squares = square.map(range(n))
    return total.submit(squares).result()


def main() -> int:
    t0 = time.perf_counter()
    result = sum_of_squares(100)
    print(f"threads: sum of squares 0..99 = {result} ({time.perf_counter() - t0:.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
