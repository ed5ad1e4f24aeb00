"""A Ray head node started with ``ray start --head`` and stopped by its own temp dir.

For tests and benchmarks that need a Ray cluster to connect to by address: every
process of that Ray carries its temp dir in its command line (or descends from one
that does), so stopping it touches no other Ray on the machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

__all__ = ["ray_processes", "start_head", "stop_scoped"]


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every live process we can see."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat[0] != "Z":
            out[int(entry)] = (int(stat[1]), cmd)
    return out


def ray_processes(temp_dir: str) -> dict[int, str]:
    """The processes of the Ray whose temp dir is ``temp_dir``, with their descendants."""
    procs = _processes()
    family = {pid for pid, (_, cmd) in procs.items() if temp_dir in cmd}
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _) in procs.items():
            if ppid in family and pid not in family:
                family.add(pid)
                grew = True
    return {pid: procs[pid][1] for pid in family}


def _terminate(pids: list[int], timeout: float = 15) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and set(pids) & set(_processes()):
        time.sleep(0.1)


def stop_scoped(temp_dir: str) -> None:
    """Stop only the Ray using ``temp_dir``: raylet, then the rest, then gcs_server."""
    family = ray_processes(temp_dir)
    _terminate([p for p, cmd in family.items() if "/raylet " in cmd])
    _terminate([p for p, cmd in family.items() if "gcs_server" not in cmd])
    _terminate([p for p, cmd in family.items() if "gcs_server" in cmd])
    for pid in set(family) & set(_processes()):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def start_head(
    temp_dir: str,
    *,
    num_cpus: int = 2,
    env: Mapping[str, str] | None = None,
    extra: tuple[str, ...] = (),
    timeout: float = 120,
) -> str:
    """Start a head node on 127.0.0.1 using ``temp_dir`` (keep it short) and return its
    address; raises ``RuntimeError`` with Ray's output if ``ray start`` fails."""
    ray_exe = str(Path(sys.executable).parent / "ray")
    proc = subprocess.run(
        [
            ray_exe,
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            "--port=0",
            f"--num-cpus={num_cpus}",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={temp_dir}",
            *extra,
        ],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        stop_scoped(temp_dir)
        raise RuntimeError(f"ray start --head failed:\n{proc.stderr[-4000:]}")
    return Path(temp_dir, "ray_current_cluster").read_text().strip()
