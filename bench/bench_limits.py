"""Cost of an uncontended concurrency slot, on each backend, as ratios measured in one run.

    .venv/bin/python bench/bench_limits.py [--quick] [--skip processes,dask,ray] [--repeats R]
    .venv/bin/python bench/bench_limits.py --callgrind [--repeats R]   (threads: instructions)

What is compared, each pair measured back to back, alternately, in the same run; the verdict
is on the paired ratio (the median of the per-repeat ratios: drift of a shared machine
between repeats moves both sides of a pair alike), the ratio of the medians printed beside:

- threads / processes (issue 15 target: at most 1.10): a braid flow of N no-op tasks
  tagged ``db`` with ``concurrency_limits={"db": 100000}`` (every task takes and gives
  back a tag slot) against the very same flow without the declaration.  Timed inside
  the flow from the first submit to the last result, after a warm-up batch, so runner
  start-up is not counted.
- Dask / Ray (target: one round trip at most, ratio <= 1.00): one ``concurrency("db")``
  block (acquire + release) from the driver against one plain round trip on the same
  connection: ``Client.get_metadata`` to the scheduler (LocalCluster, 1 worker; and
  Dask's own ``distributed.Semaphore`` acquire + release, the raw engine's way), and a
  call of a no-op async method on a 0-CPU actor (local Ray), without arguments and with
  one argument the size of an acquire's (Ray serializes every argument, so a request
  carrying anything costs more than an empty one).  Two ways: back-to-back (a stream of
  slots from one process: a slot given back is held back a few milliseconds and taken
  again without asking, so most slots cost no round trip at all) and isolated (each
  call ``PAUSE`` after the last, timed alone: nothing held back, so every slot asks).

``--callgrind`` counts instructions instead of time (valgrind's callgrind, every thread):
one threads flow of 100 and one of 1100 tasks, with and without the limit; instructions
per task = the difference / 1000, so start-up and the warm-up batch cancel out.  On a
loaded machine this is the steadier figure, though not an exact one: how the pool's
threads interleave moves it by a few percent, so it is measured ``--repeats`` times
(default 3) and the medians compared.

Prints; no pass/fail.  On a shared machine, look at the load printed first and repeat.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from braid import ProcessPoolTaskRunner, ThreadPoolTaskRunner, flow, task

LIMIT = 100_000  # never reached: every slot is uncontended
TARGETS = {"threads": 1.10, "processes": 1.10, "dask": 1.00, "ray": 1.00}


@task(tags=["db"])
def tagged_noop() -> None:
    return None


def _flow_us(make_runner: Callable[[], object], limited: bool, n: int) -> float:
    """Microseconds per task of one flow run of ``n`` tagged no-op tasks."""

    @flow(
        name="bench-limits",
        task_runner=make_runner(),
        concurrency_limits={"db": LIMIT} if limited else None,
    )
    def body() -> float:
        for f in [tagged_noop.submit() for _ in range(8)]:  # workers up, code paths warm
            f.result()
        start = time.perf_counter()
        for f in [tagged_noop.submit() for _ in range(n)]:
            f.result()
        return (time.perf_counter() - start) / n * 1e6

    return body()


def _alternate(cases: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run each case once per repeat, in turn (after one warm-up each); all the values."""
    for run in cases.values():
        run()
    values: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, run in cases.items():
            values[name].append(run())
    return values


def _row(backend: str, what: str, with_slot: list[float], without: list[float], unit: str) -> None:
    """One printed row; the verdict is on the paired ratio (the median of each repeat's
    with/without, measured back to back, so a machine that slows down or speeds up
    between repeats moves both sides of a pair alike), the ratio of the medians beside."""
    ratio = statistics.median(with_slot) / statistics.median(without)
    paired = statistics.median(a / b for a, b in zip(with_slot, without, strict=True))
    target = TARGETS[backend]
    verdict = "met" if paired <= target else "MISSED"
    print(
        f"{backend:<10} {what:<44} {statistics.median(with_slot):9.1f} "
        f"{statistics.median(without):9.1f} {unit:<4} paired ratio {paired:5.2f} "
        f"(ratio of medians {ratio:5.2f}; target <= {target:.2f}: {verdict})"
    )


def bench_flows(backend: str, make_runner: Callable[[], object], n: int, repeats: int) -> None:
    values = _alternate(
        {
            "limit": lambda: _flow_us(make_runner, True, n),
            "none": lambda: _flow_us(make_runner, False, n),
        },
        repeats,
    )
    _row(backend, "flow, tagged tasks: limit / no limit", values["limit"], values["none"], "us")


def _per_call(fn: Callable[[], object], n: int, clock: Callable[[], float]) -> float:
    start = clock()
    for _ in range(n):
        fn()
    return (clock() - start) / n * 1e6


PAUSE = 0.02  # seconds between isolated calls: longer than a held-back release waits


def _spaced_call(fn: Callable[[], object], n: int) -> float:
    """Microseconds per call of ``fn`` made ``PAUSE`` seconds apart (pauses not counted):
    each slot is then on its own, nothing held back from the one before."""
    total = 0.0
    for _ in range(n):
        time.sleep(PAUSE)
        start = time.perf_counter()
        fn()
        total += time.perf_counter() - start
    return total / n * 1e6


def _round_trip_rows(
    backend: str,
    slot: Callable[[], object],
    trips: dict[str, Callable[[], object]],
    n: int,
    repeats: int,
) -> None:
    """Rows for a stream of back-to-back slots and for isolated slots, each against every
    round trip in ``trips`` (label -> call), timed alternately."""
    for how, per_call in (
        ("back-to-back", lambda fn: _per_call(fn, n, time.perf_counter)),
        ("isolated", lambda fn: _spaced_call(fn, max(20, n // 20))),
    ):
        cases = {"slot": lambda per_call=per_call: per_call(slot)}
        for label, trip in trips.items():
            cases[label] = lambda per_call=per_call, trip=trip: per_call(trip)
        values = _alternate(cases, repeats)
        for label in trips:
            _row(backend, f"{how} slot / {label}", values["slot"], values[label], "us")


def bench_dask(n: int, repeats: int) -> None:
    from distributed import Client, LocalCluster, Semaphore

    from braid.concurrency import LimitTable, use_limits
    from braid.concurrency.dask_backend import DaskLimits
    from braid.concurrency.sync import concurrency

    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            dashboard_address="127.0.0.1:0",
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        limits = DaskLimits(client)
        with use_limits(limits.handle(LimitTable({"db": LIMIT}))):

            def slot() -> None:
                with concurrency("db"):
                    pass

            def round_trip() -> None:
                client.get_metadata("braid-bench", default=None)

            own = Semaphore(
                LIMIT, "braid-bench-raw", scheduler_rpc=client.scheduler, loop=client.loop
            )

            def dask_semaphore() -> None:  # Dask's own: acquire, then release
                own.acquire()
                own.release()

            _round_trip_rows(
                "dask",
                slot,
                {"scheduler round trip": round_trip, "distributed.Semaphore": dask_semaphore},
                n,
                repeats,
            )
            own.close()
        limits.close()


def bench_ray(n: int, repeats: int) -> None:
    import ray

    from braid.concurrency import LimitTable, use_limits
    from braid.concurrency.ray_backend import RayLimits
    from braid.concurrency.sync import concurrency

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:

        @ray.remote(num_cpus=0)
        class Echo:
            async def ping(self, request: object = None) -> int:  # async, as a limit's actor
                return 1

        echo = Echo.remote()
        # what an acquire carries: lease id, occupy, timeout, lease time, one release
        request = (f"{'0' * 32}-1000", 1, None, 30.0, [f"{'0' * 32}-999"])
        limits = RayLimits()
        with use_limits(limits.handle(LimitTable({"db": LIMIT}))):

            def slot() -> None:
                with concurrency("db"):
                    pass

            def round_trip() -> None:
                ray.get(echo.ping.remote())

            def round_trip_carrying() -> None:
                ray.get(echo.ping.remote(request))

            _round_trip_rows(
                "ray",
                slot,
                {"empty round trip": round_trip, "round trip, same size": round_trip_carrying},
                n,
                repeats,
            )
        limits.close()
        limits.remove("db")
    finally:
        ray.shutdown()


def _instructions(limited: bool, n: int) -> int:
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "callgrind.out")
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable]
            + [__file__, "--flow", "limit" if limited else "nolimit", "--n", str(n)],
            check=True,
            capture_output=True,
        )
        with open(out) as f:
            return int(re.search(r"^(?:summary|totals): (\d+)", f.read(), re.M).group(1))


def bench_callgrind(repeats: int) -> None:
    """Instructions per task with and without the limit, ``repeats`` times in turn: how
    the pool's threads interleave under valgrind moves a count by a few percent."""
    samples: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(repeats):
        for limited in (True, False):
            per_task = (_instructions(limited, 1100) - _instructions(limited, 100)) / 1000
            samples[limited].append(per_task)
    ratios = sorted(a / b for a, b in zip(samples[True], samples[False], strict=True))
    ratio = statistics.median(samples[True]) / statistics.median(samples[False])
    verdict = "met" if ratio <= TARGETS["threads"] else "MISSED"
    print(
        f"{'threads':<10} {'flow, tagged tasks: limit / no limit':<44} "
        f"{statistics.median(samples[True]):9.0f} {statistics.median(samples[False]):9.0f} "
        f"ins  ratio {ratio:5.2f} (callgrind, median of {repeats}; paired {ratios[0]:.2f}-"
        f"{ratios[-1]:.2f}; target <= {TARGETS['threads']:.2f}: {verdict})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--skip", default="", help="comma-separated: processes,dask,ray")
    parser.add_argument(
        "--repeats", type=int, default=0, help="alternations (default 5, threads 15; quick 3)"
    )
    parser.add_argument("--flow", choices=["limit", "nolimit"], help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=1000, help="tasks of --flow")
    parser.add_argument("--callgrind", action="store_true", help="threads: count instructions")
    args = parser.parse_args()
    if args.flow:
        _flow_us(lambda: ThreadPoolTaskRunner(max_workers=4), args.flow == "limit", args.n)
        return
    if args.callgrind:
        bench_callgrind(args.repeats or 3)
        return
    skip = set(filter(None, args.skip.split(",")))
    scale = 10 if args.quick else 1
    repeats = args.repeats or (3 if args.quick else 5)
    for name, value in (
        ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0"),
        ("RAY_AUTH_MODE", "disabled"),
        ("RAY_USAGE_STATS_ENABLED", "0"),
    ):
        os.environ.setdefault(name, value)
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'':<10} {'':<44} {'with':>9} {'without':>9}")
    threads_repeats = args.repeats or (3 if args.quick else 15)  # a repeat takes 0.3 s
    bench_flows(
        "threads", lambda: ThreadPoolTaskRunner(max_workers=4), 20000 // scale, threads_repeats
    )
    if "processes" not in skip:
        bench_flows(
            "processes", lambda: ProcessPoolTaskRunner(max_workers=4), 2000 // scale, repeats
        )
    if "dask" not in skip:
        bench_dask(2000 // scale, repeats)
    if "ray" not in skip:
        bench_ray(1000 // scale, repeats)


if __name__ == "__main__":
    main()
