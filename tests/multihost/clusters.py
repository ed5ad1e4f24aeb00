"""The Dask and Ray clusters the multi-host tests run in the harness's namespaces: a
``dask scheduler`` and two nanny + worker processes, or a Ray head and two ``ray start``
nodes, each started in its host's namespace and healed between tests."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path

from . import harness


# -- Dask ----------------------------------------------------------------------------------
class DaskCluster:
    """``dask scheduler`` in the sched namespace and a nanny + 1-thread worker in each
    worker namespace.  ``worker_ttl`` lets the scheduler drop a frozen worker."""

    PORT = 8786

    def __init__(self, hosts: harness.Hosts, worker_ttl: str = "8s") -> None:
        self.hosts = hosts
        self.address = f"tcp://{hosts.sched.ip}:{self.PORT}"
        self.env = {
            "DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL": worker_ttl,
            "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "3",
        }
        self.nannies: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        self._start_scheduler()
        for h in (self.hosts.w1, self.hosts.w2):
            self._start_worker(h)
        self.wait_workers(2, 90)

    def _start_scheduler(self) -> None:
        h = self.hosts.sched
        self.scheduler = self.hosts.spawn(
            h,
            [
                str(harness.BIN / "dask"),
                "scheduler",
                "--host",
                h.ip,
                "--port",
                str(self.PORT),
                "--no-dashboard",
                "--dashboard-address",
                f"{h.ip}:0",
            ],
            "dask-scheduler.log",
            self.env,
        )

    def _start_worker(self, h: harness.Host) -> None:
        self.nannies[h.role] = self.hosts.spawn(
            h,
            [
                str(harness.BIN / "dask"),
                "worker",
                self.address,
                "--host",
                h.ip,
                "--nthreads",
                "1",
                "--nworkers",
                "1",
                "--no-dashboard",
                "--dashboard-address",
                f"{h.ip}:0",
                "--local-directory",
                str(self.hosts.workdir / f"dask-{h.role}"),
                "--death-timeout",
                "60",
            ],
            f"dask-{h.role}.log",
            self.env,
        )

    def scheduler_info(self) -> dict:
        """What the scheduler says about its workers and tasks, asked from a fresh client."""
        from distributed import Client

        from braid.testing.multihost_drivers import scheduler_summary

        with Client(self.address, timeout=10, set_as_default=False) as c:
            return c.run_on_scheduler(scheduler_summary)

    def wait_workers(self, n: int, timeout: float) -> None:
        def enough() -> bool:
            try:
                return self.scheduler_info()["workers"] >= n
            except Exception:  # noqa: BLE001 - the scheduler may not listen yet
                return False

        harness.wait_until(f"{n} Dask workers", enough, timeout, step=0.5)

    def worker_pid(self, h: harness.Host) -> int:
        """The pid of the worker process (the nanny's child) in ``h``."""
        nanny = self.nannies[h.role]
        children = []
        for pid in self.hosts.pids(h):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"spawn_main" in cmd and b"resource_tracker" not in cmd and pid != nanny.pid:
                children.append(pid)
        if not children:
            raise RuntimeError(f"no Dask worker process in {h.ns}")
        return children[0]

    def heal(self) -> None:
        """Bring the cluster back to a scheduler and two fresh workers."""
        self.hosts.heal_network()
        if self.scheduler.poll() is not None or not self._answers():
            for h in self.hosts.hosts:
                self.hosts.kill_host(h)
            self.start()
            return
        restarted = False
        for h in (self.hosts.w1, self.hosts.w2):
            nanny = self.nannies[h.role]
            if nanny.poll() is not None or getattr(h, "dirty", False):
                self.hosts.kill_host(h)
                self._start_worker(h)
                restarted = True
            h.dirty = False
        if restarted:
            self.wait_workers_exactly(2, 90)

    def _answers(self) -> bool:
        try:
            self.scheduler_info()
            return True
        except Exception:  # noqa: BLE001
            return False

    def wait_workers_exactly(self, n: int, timeout: float) -> None:
        """Wait until the scheduler has ``n`` workers, every one of them alive."""
        harness.wait_until(f"exactly {n} Dask workers", lambda: self._count() == n, timeout, 0.5)

    def _count(self) -> int:
        try:
            return self.scheduler_info()["workers"]
        except Exception:  # noqa: BLE001
            return -1


# -- Ray ------------------------------------------------------------------------------------
class RayCluster:
    """A Ray head (0 CPUs) in the sched namespace and a 1-CPU node in each worker's."""

    PORT = 6379

    def __init__(self, hosts: harness.Hosts) -> None:
        self.hosts = hosts
        self.address = f"{hosts.sched.ip}:{self.PORT}"
        self.temp = {h.role: f"/tmp/bmr{hosts.slot}{h.role}" for h in hosts.hosts}

    def start(self) -> None:
        h = self.hosts.sched
        self._ray_start(
            h,
            ["--head", f"--port={self.PORT}", "--num-cpus=0", "--include-dashboard=false"],
            harness.RAY_HEAD_ENV,
        )
        self._start_nodes([self.hosts.w1, self.hosts.w2])
        self.wait_cpus(2, 90)

    def _start_nodes(self, nodes: list[harness.Host]) -> None:
        """``ray start`` the nodes at once (each takes seconds); raise the first failure."""
        import threading

        failures: list[BaseException] = []

        def start(h: harness.Host) -> None:
            try:
                self._start_node(h)
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                failures.append(exc)

        threads = [
            threading.Thread(target=start, args=(h,), name=f"ray-start-{h.role}") for h in nodes
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        if failures:
            raise failures[0]

    def _ray_start(self, h: harness.Host, extra: list[str], env: dict[str, str]) -> None:
        shutil.rmtree(self.temp[h.role], ignore_errors=True)
        p = self.hosts.spawn(
            h,
            [
                str(harness.BIN / "ray"),
                "start",
                f"--node-ip-address={h.ip}",
                f"--temp-dir={self.temp[h.role]}",
                "--disable-usage-stats",
                "--object-store-memory=400000000",
                *extra,
            ],
            f"ray-{h.role}.log",
            env,
        )
        try:
            code = p.wait(90)  # `ray start` returns once the node's daemons are up
        except subprocess.TimeoutExpired:
            code = None
        if code != 0:
            log = (self.hosts.workdir / f"ray-{h.role}.log").read_text(errors="replace")
            raise RuntimeError(f"`ray start` in {h.ns} failed ({code}): {log[-3000:]}")

    def _start_node(self, h: harness.Host) -> None:
        self._ray_start(
            h,
            [f"--address={self.address}", "--num-cpus=1"],
            {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"},
        )
        h.dirty = False

    def wait_cpus(self, n: int, timeout: float) -> None:
        """Wait until the cluster's alive nodes offer ``n`` CPUs (asked by a driver)."""
        proc = self.hosts.driver(
            self.hosts.sched,
            ["ray", self.address, "wait-cpus", "--n", str(n), "--timeout", str(timeout)],
        )
        try:
            harness.read_event(proc, "cpus", timeout + 30)
        finally:
            harness.stop_driver(proc)

    def worker_pids(self, h: harness.Host) -> list[int]:
        """Ray worker processes (``ray::...``, not the raylet) in ``h``, busy ones first."""
        busy, idle = [], []
        for pid in self.hosts.pids(h):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if cmd.startswith(b"ray::"):
                (idle if cmd.startswith(b"ray::IDLE") else busy).append(pid)
        return busy + idle

    def heal(self) -> None:
        self.hosts.heal_network()
        if not self.hosts.pids(self.hosts.sched) or getattr(self.hosts.sched, "dirty", False):
            for h in self.hosts.hosts:
                self.hosts.kill_host(h)
                h.dirty = False
            self.start()
            return
        broken = [
            h
            for h in (self.hosts.w1, self.hosts.w2)
            if getattr(h, "dirty", False) or not self._raylet_alive(h)
        ]
        for h in broken:
            self.hosts.kill_host(h)
        self._start_nodes(broken)
        self.wait_cpus(2, 90)  # also: every CPU free, nothing left running

    def _raylet_alive(self, h: harness.Host) -> bool:
        for pid in self.hosts.pids(h):
            with contextlib.suppress(OSError):
                if b"raylet" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]:
                    return True
        return False

    def stop(self) -> None:
        for h in self.hosts.hosts:
            self.hosts.kill_host(h)
            shutil.rmtree(self.temp[h.role], ignore_errors=True)
