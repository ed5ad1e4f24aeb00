"""Three hosts on one machine: network namespaces on a bridge, Dask and Ray clusters in
them, and the faults the multi-host tests inject.

Layout (slot ``s`` of 8, so concurrent pytest sessions or xdist workers never share
names or addresses; every address is inside the one private /24 ``10.231.0.0/24``)::

    root namespace: bridge bmh<s>br 10.231.0.<16s+1>/28; pytest, the Dask driver, the faults
      |- veth bmh<s>s  -- netns braid-mh<s>-sched  eth0 .<16s+2>  dask scheduler | ray head (0 CPUs)
      |                                                           + Ray drivers
      |- veth bmh<s>w1 -- netns braid-mh<s>-w1     eth0 .<16s+3>  dask worker   | ray node (1 CPU)
      `- veth bmh<s>w2 -- netns braid-mh<s>-w2     eth0 .<16s+4>  dask worker   | ray node (1 CPU)

Each namespace has ``lo`` and ``eth0`` with a /28 route and no default route: nothing
inside can reach any address outside the slot's /28.  A slot is held with ``flock`` on
``/tmp/braid-multihost/slot-<s>.lock`` for the harness's life; leftovers of a slot
whose owner died (its namespaces, their processes, its bridge) are removed before reuse.

Latency and loss (this kernel has no ``tc netem``): an iptables rule in a worker's
namespace sends every packet arriving on its ``eth0`` to an NFQUEUE queue, and
``braid.testing.netdelay``, started in that namespace, accepts each after the delay or
drops it.  ``Hosts.undelay`` (called by ``heal_network`` and ``down``) removes the rule
and stops the program.

Only processes of this harness's namespaces are signalled (``ip netns pids``): every
process in them was started by it.  Teardown runs from the fixtures' finalizers, from
``atexit`` and on SIGTERM/SIGHUP; every wait is bounded in time.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

SUBNET = "10.231.0"  # the one private /24 this harness uses
PREFIX_LEN = 28  # one /28 of it per slot
SLOTS = 8
LOCK_DIR = Path("/tmp/braid-multihost")
REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
BIN = Path(PYTHON).parent

# Ray: drivers and the head keep 127.0.0.1 as given; worker nodes need the variable set
# to 1 to join a multi-node cluster (they run where the only route is the private /28)
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "PYTHONUNBUFFERED": "1",
}
# the head declares a node dead after ~8 s without health checks (default ~30 s), so
# partitions and frozen nodes resolve within a test's time
RAY_HEAD_ENV = {
    "RAY_health_check_period_ms": "1500",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "5",
    "RAY_health_check_initial_delay_ms": "1000",
}


class NamespacesUnavailable(RuntimeError):
    """Network namespaces cannot be made here (not root, no ``ip``, no netns support)."""


def why_unavailable() -> str | None:
    """Why namespaces cannot be made on this machine, or None if they can."""
    if os.geteuid() != 0:
        return "multi-host tests need root to create network namespaces"
    if shutil.which("ip") is None:
        return "multi-host tests need `ip` (iproute2); ci/install-netns-tools.sh installs it"
    name = f"braid-mh-probe-{os.getpid()}"
    made = run(["ip", "netns", "add", name], check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed here: {made.stderr.strip()}"
    run(["ip", "netns", "del", name], check=False)
    return None


class DelayUnavailable(RuntimeError):
    """Raised by ``Hosts.delay`` when no iptables here takes an NFQUEUE rule in a namespace
    (the latency and loss tests skip, saying so)."""


#: iptables front ends tried in order (both take the NFQUEUE rule in a namespace here)
IPTABLES = ("iptables", "iptables-legacy")
#: the NFQUEUE queue a delayed host's packets go to (queues are per network namespace)
QUEUE = 7


def why_no_delay() -> str | None:
    """Why the latency and loss fault cannot be made here, or None if it may be."""
    if not any(shutil.which(b) for b in IPTABLES):
        return (
            "latency and loss need iptables (NFQUEUE to braid.testing.netdelay: this kernel "
            "has no tc netem); ci/install-netns-tools.sh installs it"
        )
    return None


def run(
    argv: list[str],
    check: bool = True,
    timeout: float = 20,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc


def wait_until(what: str, predicate, timeout: float, step: float = 0.25) -> None:
    """Poll ``predicate`` until true; bounded in time (and so in count)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step)
    raise TimeoutError(f"multihost harness: {what} not within {timeout} s")


class Host:
    """One namespace: its name, address and the root-side end of its veth."""

    def __init__(self, role: str, ns: str, ip: str, veth: str) -> None:
        self.role, self.ns, self.ip, self.veth = role, ns, ip, veth

    def __repr__(self) -> str:
        return f"<Host {self.role} {self.ns} {self.ip}>"


class Hosts:
    """The bridge and three namespaces of one slot; faults on them."""

    def __init__(self) -> None:
        LOCK_DIR.mkdir(exist_ok=True)
        self.slot, self._lock = self._take_slot()
        s = self.slot
        base = 16 * s
        self.tag = f"bmh{s}"
        self.bridge = f"{self.tag}br"
        self.gateway = f"{SUBNET}.{base + 1}"
        self.sched = Host("sched", f"braid-mh{s}-sched", f"{SUBNET}.{base + 2}", f"{self.tag}s")
        self.w1 = Host("w1", f"braid-mh{s}-w1", f"{SUBNET}.{base + 3}", f"{self.tag}w1")
        self.w2 = Host("w2", f"braid-mh{s}-w2", f"{SUBNET}.{base + 4}", f"{self.tag}w2")
        self.hosts = [self.sched, self.w1, self.w2]
        self.workdir = Path(tempfile.mkdtemp(prefix=f"bmh{s}", dir="/tmp"))
        self._procs: list[subprocess.Popen[bytes]] = []
        # host role -> (netdelay process, the iptables that took the rule or None yet)
        self._delays: dict[str, tuple[subprocess.Popen[str], str | None]] = {}
        self.delay_counts: dict[str, dict] = {}  # what each undone delay did
        self._up = False

    # -- slots ---------------------------------------------------------------------
    @staticmethod
    def _take_slot() -> tuple[int, int]:
        for s in range(SLOTS):
            fd = os.open(LOCK_DIR / f"slot-{s}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            return s, fd
        raise NamespacesUnavailable(f"all {SLOTS} multihost slots are in use")

    # -- up and down -----------------------------------------------------------------
    def up(self) -> None:
        self._clear_leftovers()
        self._up = True
        run(["ip", "link", "add", self.bridge, "type", "bridge"])
        run(["ip", "addr", "add", f"{self.gateway}/{PREFIX_LEN}", "dev", self.bridge])
        run(["ip", "link", "set", self.bridge, "up"])
        for h in self.hosts:
            run(["ip", "netns", "add", h.ns])
            run(["ip", "link", "add", h.veth, "type", "veth", "peer", "name", f"{h.veth}p"])
            run(["ip", "link", "set", f"{h.veth}p", "netns", h.ns])
            run(["ip", "link", "set", h.veth, "master", self.bridge])
            run(["ip", "link", "set", h.veth, "up"])
            inside = ["ip", "netns", "exec", h.ns]
            run([*inside, "ip", "link", "set", f"{h.veth}p", "name", "eth0"])
            run([*inside, "ip", "addr", "add", f"{h.ip}/{PREFIX_LEN}", "dev", "eth0"])
            run([*inside, "ip", "link", "set", "eth0", "up"])
            run([*inside, "ip", "link", "set", "lo", "up"])
            for key in ("all", "default"):
                run(
                    [*inside, "sysctl", "-q", "-w", f"net.ipv6.conf.{key}.disable_ipv6=1"],
                    check=False,
                )

    def _clear_leftovers(self) -> None:
        """Remove what an earlier owner of this slot left (it died without tearing down)."""
        for h in self.hosts:
            if run(["ip", "netns", "pids", h.ns], check=False).returncode == 0:
                self._kill_namespace(h.ns)
                run(["ip", "netns", "del", h.ns], check=False)
            run(["ip", "link", "del", h.veth], check=False)
        run(["ip", "link", "del", self.bridge], check=False)

    def down(self) -> None:
        """Kill every process of the namespaces, delete them, the veths and the bridge."""
        if not self._up:
            return
        self._up = False
        for h in self.hosts:
            self.undelay(h)
            self.thaw(h)
            self._kill_namespace(h.ns)
        for p in self._procs:
            with contextlib.suppress(Exception):
                p.wait(timeout=2)
        for h in self.hosts:
            run(["ip", "netns", "del", h.ns], check=False)
            run(["ip", "link", "del", h.veth], check=False)
        run(["ip", "link", "del", self.bridge], check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def release(self) -> None:
        self.down()
        with contextlib.suppress(OSError):
            os.close(self._lock)

    # -- processes -------------------------------------------------------------------
    def spawn(
        self,
        host: Host,
        argv: list[str],
        log: str,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside ``host``'s namespace, output to ``log`` in the workdir."""
        full_env = {**os.environ, **RAY_ENV, **(env or {})}
        out = open(self.workdir / log, "ab")  # noqa: SIM115 - the child keeps it
        p = subprocess.Popen(
            ["ip", "netns", "exec", host.ns, *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=REPO,
            start_new_session=True,
        )
        out.close()
        self._procs.append(p)
        return p

    def pids(self, host: Host) -> list[int]:
        """Every process in ``host``'s namespace (all started by this harness)."""
        out = run(["ip", "netns", "pids", host.ns], check=False).stdout
        return [int(x) for x in out.split()]

    def _kill_namespace(self, ns: str) -> None:
        for _ in range(5):  # bounded: children forked meanwhile are caught next round
            out = run(["ip", "netns", "pids", ns], check=False).stdout
            pids = [int(x) for x in out.split()]
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)

    def signal_pids(self, pids: list[int], sig: int) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    # -- faults ------------------------------------------------------------------------
    def kill_host(self, host: Host) -> list[int]:
        """SIGKILL every process of the host: the node died.  Returns the pids."""
        pids = self.pids(host)
        self.signal_pids(pids, signal.SIGKILL)
        return pids

    def link_down(self, host: Host) -> None:
        run(["ip", "link", "set", host.veth, "down"])

    def link_up(self, host: Host) -> None:
        run(["ip", "link", "set", host.veth, "up"], check=False)

    def freeze(self, host: Host) -> list[int]:
        """SIGSTOP every process of the host: connections stay open, nothing answers."""
        pids = self.pids(host)
        self.signal_pids(pids, signal.SIGSTOP)
        return pids

    def thaw(self, host: Host) -> None:
        self.signal_pids(self.pids(host), signal.SIGCONT)

    def delay(self, host: Host, ms: float, loss: float = 0.0, seconds: float = 300) -> None:
        """Hold every packet arriving at ``host`` ``ms`` ms and drop a ``loss`` fraction
        of them, for ``seconds`` at most; undone by ``undelay`` (and so by
        ``heal_network`` and ``down``).  Raises DelayUnavailable if no iptables takes the
        NFQUEUE rule."""
        if host.role in self._delays:
            raise RuntimeError(f"{host} is already delayed")
        argv = [
            *("ip", "netns", "exec", host.ns, PYTHON, "-m", "braid.testing.netdelay"),
            *("--queue", str(QUEUE), "--delay-ms", str(ms), "--loss", str(loss)),
            *("--seconds", str(seconds)),
        ]
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=REPO,
            start_new_session=True,
        )
        self._delays[host.role] = (proc, None)  # from here on, undelay stops it
        try:
            read_event(proc, "ready", 15)  # it holds the queue before packets go there
            refused = []
            for binary in IPTABLES:
                if shutil.which(binary) is None:
                    continue
                added = run(["ip", "netns", "exec", host.ns, binary, *_rule("-A")], check=False)
                if added.returncode == 0:
                    self._delays[host.role] = (proc, binary)
                    return
                refused.append(f"{binary}: {added.stderr.strip()}")
            raise DelayUnavailable(f"no iptables takes an NFQUEUE rule here: {refused}")
        except BaseException:
            self.undelay(host)
            raise

    def undelay(self, host: Host) -> dict | None:
        """Remove ``host``'s delay, if any: the rule first (packets flow undelayed), then
        the program (it accepts what it holds).  What it did (``delay_counts``)."""
        entry = self._delays.pop(host.role, None)
        if entry is None:
            return None
        proc, binary = entry
        if binary is not None:
            run(["ip", "netns", "exec", host.ns, binary, *_rule("-D")], check=False)
        counts: dict = {}
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(Exception):
                counts = read_event(proc, "stopped", 10)
        code = stop_driver(proc, 5)
        counts["exit"] = code
        self.delay_counts[host.role] = counts
        return counts

    def heal_network(self) -> None:
        for h in self.hosts:
            self.undelay(h)
            self.thaw(h)
            self.link_up(h)

    def connect_ms(self, host: Host, tries: int = 5) -> float:
        """The median time, in ms, of a TCP connection attempt from here to a closed port
        of ``host`` (refused after one round trip); each attempt bounded to 5 s."""
        times = []
        for _ in range(tries):
            start = time.monotonic()
            with socket.socket() as s, contextlib.suppress(OSError):
                s.settimeout(5)
                s.connect((host.ip, 9))  # discard: nothing listens there
            times.append((time.monotonic() - start) * 1000)
        return sorted(times)[len(times) // 2]

    # -- drivers inside a namespace ---------------------------------------------------------
    def driver(
        self,
        host: Host | None,
        args: list[str],
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[str]:
        """Start ``python -m braid.testing.multihost_drivers ARGS`` (in ``host``'s
        namespace, or this one for None), reading its JSON lines from stdout."""
        argv = [PYTHON, "-m", "braid.testing.multihost_drivers", *args]
        if host is not None:
            argv = ["ip", "netns", "exec", host.ns, *argv]
        return subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **RAY_ENV, **(env or {})},
            cwd=REPO,
            start_new_session=True,
        )


def _rule(action: str) -> list[str]:
    """The iptables arguments that add (``-A``) or delete (``-D``) the NFQUEUE rule."""
    return [
        *("-w", "5", action, "INPUT", "-i", "eth0", "-j", "NFQUEUE"),
        *("--queue-num", str(QUEUE), "--queue-bypass"),
    ]


def read_event(proc: subprocess.Popen[str], kind: str, timeout: float) -> dict:
    """Read the driver's JSON lines until one with ``event == kind``; bounded in time."""
    import selectors

    deadline = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"driver: no {kind!r} event within {timeout} s")
            if not sel.select(left):
                continue
            line = proc.stdout.readline()
            if not line:
                err = proc.stderr.read() if proc.stderr else ""
                raise RuntimeError(f"driver exited ({proc.wait(5)}) before {kind!r}: {err[-3000:]}")
            line = line.strip()
            if line.startswith("{"):
                event = json.loads(line)
                if event.get("event") == kind:
                    return event
    finally:
        sel.close()


def stop_driver(proc: subprocess.Popen[str], grace: float = 10) -> int | None:
    """Wait ``grace`` s for a driver to exit, then kill its process group; its exit code
    (None when it had to be killed)."""
    try:
        return proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
        return None
    finally:
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


# -- one set of hosts per process, torn down whatever happens ---------------------------------
_live: list[Hosts] = []


def _teardown_all() -> None:
    while _live:
        with contextlib.suppress(Exception):
            _live.pop().release()


def _on_signal(signum, frame) -> None:  # noqa: ARG001
    _teardown_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


atexit.register(_teardown_all)
for _sig in (signal.SIGTERM, signal.SIGHUP):
    with contextlib.suppress(ValueError):  # not the main thread
        if signal.getsignal(_sig) in (signal.SIG_DFL, None):
            signal.signal(_sig, _on_signal)


@contextlib.contextmanager
def hosts() -> Iterator[Hosts]:
    """Make the bridge and namespaces of a free slot; tear them down on the way out."""
    why = why_unavailable()
    if why is not None:
        raise NamespacesUnavailable(why)
    h = Hosts()
    _live.append(h)
    try:
        h.up()
        yield h
    finally:
        if h in _live:
            _live.remove(h)
        h.release()
