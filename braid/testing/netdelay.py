"""Delay and drop the packets of one NFQUEUE queue: latency and loss without ``tc netem``.

Run as ``python -m braid.testing.netdelay --queue N --delay-ms MS [--loss F]
[--seconds S] [--seed K]`` inside the network namespace whose packets an iptables rule
sends to queue N, e.g. ``iptables -A INPUT -i eth0 -j NFQUEUE --queue-num N
--queue-bypass``.  Contract: every packet the kernel queues is dropped with probability
F (its verdict ``NF_DROP`` is given at once) or accepted ``MS`` milliseconds after it
was queued (``NF_ACCEPT``, in arrival order).  The program prints ``{"event": "ready"}``
once it holds the queue, and on exit, which happens on SIGTERM/SIGINT or after S seconds
(default 600; every run is bounded), it accepts every packet it still holds and prints
``{"event": "stopped", ...}`` with the counts.  Needs root (CAP_NET_ADMIN).  Standard
library only: a raw netlink socket speaking nfnetlink_queue.

How a packet travels::

    eth0 --> INPUT hook --NFQUEUE--> kernel queue N --netlink PACKET msg--> this program
                                                                              | hold MS
    socket <-- rest of INPUT <--NF_ACCEPT (or NF_DROP at once)-- VERDICT msg -'

Should the program die without its verdicts, the kernel drops what it held and, the
queue having no listener, ``--queue-bypass`` lets later packets through undelayed.
"""

from __future__ import annotations

import argparse
import collections
import errno
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time

# netlink (linux/netlink.h)
NETLINK_NETFILTER = 12
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 0x2
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
SO_RCVBUFFORCE = 33
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER

# nfnetlink (linux/netfilter/nfnetlink.h): message type = subsystem << 8 | message
NFNL_SUBSYS_QUEUE = 3
NFNETLINK_V0 = 0

# nfnetlink_queue (linux/netfilter/nfnetlink_queue.h)
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQA_PACKET_HDR = 1  # struct nfqnl_msg_packet_hdr: be32 packet_id, be16 hw_protocol, u8 hook
NFQA_VERDICT_HDR = 2  # struct nfqnl_msg_verdict_hdr: be32 verdict, be32 id
NFQA_CFG_CMD = 1  # struct nfqnl_msg_config_cmd: u8 command, u8 pad, be16 pf
NFQA_CFG_PARAMS = 2  # struct nfqnl_msg_config_params: be32 copy_range, u8 copy_mode
NFQA_CFG_QUEUE_MAXLEN = 3  # be32
NFQA_CFG_MASK = 4  # be32: which flags NFQA_CFG_FLAGS sets
NFQA_CFG_FLAGS = 5  # be32
NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
NFQNL_COPY_PACKET = 2
NFQA_CFG_F_FAIL_OPEN = 0x1  # a full queue accepts (undelayed) instead of dropping

# netfilter verdicts (linux/netfilter.h)
NF_DROP = 0
NF_ACCEPT = 1

COPY_RANGE = 64  # bytes of each packet copied to us: we read only the header attribute
QUEUE_MAXLEN = 8192
RECV_BUFFER = 4 * 2**20

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid (host byte order)
_NFGENMSG = struct.Struct("!BBH")  # family, version, res_id (the queue, big-endian)
_NLATTR = struct.Struct("=HH")  # len, type


class QueueError(OSError):
    """Raised by :class:`PacketQueue` when the kernel refuses a configuration message
    (the queue is held by another program, or nfnetlink_queue is missing)."""


def _attr(kind: int, payload: bytes) -> bytes:
    pad = b"\0" * (-len(payload) % 4)
    return _NLATTR.pack(_NLATTR.size + len(payload), kind) + payload + pad


def _attrs(data: bytes, offset: int) -> dict[int, bytes]:
    found = {}
    while offset + _NLATTR.size <= len(data):
        length, kind = _NLATTR.unpack_from(data, offset)
        if length < _NLATTR.size:
            break
        found[kind & NLA_TYPE_MASK] = data[offset + _NLATTR.size : offset + length]
        offset += (length + 3) & ~3
    return found


def _split(data: bytes) -> list[tuple[int, int, bytes]]:
    """The netlink messages of one datagram: (type, seq, body)."""
    out = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            break
        out.append((kind, seq, data[offset + _NLMSGHDR.size : offset + length]))
        offset += (length + 3) & ~3
    return out


def _packet_id(kind: int, body: bytes) -> int | None:
    """The packet id of a queued-packet message, None for any other message."""
    if kind != (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
        return None
    header = _attrs(body, _NFGENMSG.size).get(NFQA_PACKET_HDR)
    return None if header is None else int(struct.unpack_from("!I", header)[0])


class PacketQueue:
    """One nfnetlink_queue queue, bound on a raw netlink socket: packet ids in, verdicts out."""

    def __init__(self, queue: int) -> None:
        self.queue = queue
        self.seq = 0
        self.errors = 0  # error answers to verdicts (a packet the kernel no longer holds)
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECV_BUFFER)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)
        # a full socket buffer must not end the loop: with FAIL_OPEN the kernel accepts
        # the packets it could not hand us
        self.sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
        self.sock.bind((0, 0))

    def _message(self, msg: int, body: bytes, flags: int = NLM_F_REQUEST) -> bytes:
        self.seq += 1
        payload = _NFGENMSG.pack(socket.AF_UNSPEC, NFNETLINK_V0, self.queue) + body
        kind = (NFNL_SUBSYS_QUEUE << 8) | msg
        return _NLMSGHDR.pack(_NLMSGHDR.size + len(payload), kind, flags, self.seq, 0) + payload

    def _configure(self, body: bytes) -> None:
        """Send one config message and wait (5 s at most) for the kernel's answer."""
        self.sock.send(self._message(NFQNL_MSG_CONFIG, body, NLM_F_REQUEST | NLM_F_ACK))
        seq = self.seq
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if not select.select([self.sock], [], [], deadline - time.monotonic())[0]:
                break
            for kind, msg_seq, msg in _split(self.sock.recv(65536)):
                pid = _packet_id(kind, msg)
                if pid is not None:  # queued meanwhile (an unbind's last packets): let it go
                    self.verdicts([(pid, NF_ACCEPT)])
                elif kind == NLMSG_ERROR and msg_seq == seq:
                    (code,) = struct.unpack_from("=i", msg)
                    if code != 0:
                        why = os.strerror(-code)
                        raise QueueError(-code, f"nfnetlink_queue {self.queue}: {why}")
                    return
        raise QueueError(errno.ETIMEDOUT, f"nfnetlink_queue {self.queue}: no answer to config")

    def bind(self) -> None:
        """Hold the queue, copying the first bytes of each packet, full queue fails open."""
        self._configure(_attr(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, 0)))
        self._configure(
            _attr(NFQA_CFG_PARAMS, struct.pack("!IB", COPY_RANGE, NFQNL_COPY_PACKET))
            + _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", QUEUE_MAXLEN))
            + _attr(NFQA_CFG_MASK, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN))
            + _attr(NFQA_CFG_FLAGS, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN))
        )

    def unbind(self) -> None:
        self._configure(_attr(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_UNBIND, 0, 0)))

    def receive(self, most: int = 256) -> list[int]:
        """The ids of packets the kernel queued since the last call (no waiting; ``most``
        datagrams at most, so held packets' verdicts are not kept waiting by a flood)."""
        ids: list[int] = []
        for _ in range(most):
            try:
                data = self.sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return ids
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # messages lost; their packets failed open
                    continue
                raise
            for kind, _seq, msg in _split(data):
                pid = _packet_id(kind, msg)
                if pid is not None:
                    ids.append(pid)
                elif kind == NLMSG_ERROR:
                    self.errors += 1
        return ids

    def verdicts(self, pairs: list[tuple[int, int]]) -> None:
        """Give each (packet id, verdict); one datagram per 64 of them."""
        for start in range(0, len(pairs), 64):
            batch = b"".join(
                self._message(
                    NFQNL_MSG_VERDICT, _attr(NFQA_VERDICT_HDR, struct.pack("!II", verdict, pid))
                )
                for pid, verdict in pairs[start : start + 64]
            )
            self.sock.send(batch)

    def close(self) -> None:
        self.sock.close()


def run(
    queue: int, delay_ms: float, loss: float, seconds: float, seed: int | None
) -> dict[str, int]:
    """Hold queue ``queue`` for ``seconds`` at most (or until SIGTERM/SIGINT), delaying
    or dropping its packets; the counts of what was done."""
    q = PacketQueue(queue)
    try:
        q.bind()
    except BaseException:
        q.close()
        raise
    wake_r, wake_w = socket.socketpair()
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno())
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)  # the wake-up socket ends the wait
    held: collections.deque[tuple[float, int]] = collections.deque()
    counts = {"queued": 0, "accepted": 0, "dropped": 0, "most_held": 0}
    try:
        print(json.dumps({"event": "ready", "queue": queue, "pid": os.getpid()}), flush=True)
        _serve(q, wake_r, held, counts, delay_ms / 1000, loss, random.Random(seed), seconds)
    finally:
        # nothing held stays held: accept the rest now, then let the queue go
        rest = [(pid, NF_ACCEPT) for _, pid in held]
        counts["accepted"] += len(rest)
        try:
            q.verdicts(rest)
            q.unbind()
        finally:
            q.close()
            signal.set_wakeup_fd(-1)
            wake_r.close()
            wake_w.close()
    return {**counts, "verdict_errors": q.errors}


def _serve(
    q: PacketQueue,
    wake: socket.socket,
    held: collections.deque[tuple[float, int]],
    counts: dict[str, int],
    delay: float,
    loss: float,
    rng: random.Random,
    seconds: float,
) -> None:
    """The loop: sleep until a packet arrives or the oldest held one is due, then give
    the verdicts that are due; until ``wake`` is readable or ``seconds`` have passed."""
    end = time.monotonic() + seconds
    while True:
        now = time.monotonic()
        if now >= end:
            return
        until = min(end, held[0][0]) if held else end
        readable = select.select([q.sock, wake], [], [], max(0.0, until - now))[0]
        if wake in readable:
            return
        now = time.monotonic()
        verdicts = []
        for pid in q.receive() if q.sock in readable else []:
            counts["queued"] += 1
            if loss and rng.random() < loss:
                verdicts.append((pid, NF_DROP))
                counts["dropped"] += 1
            else:
                held.append((now + delay, pid))
        counts["most_held"] = max(counts["most_held"], len(held))
        while held and held[0][0] <= now:
            verdicts.append((held.popleft()[1], NF_ACCEPT))
            counts["accepted"] += 1
        q.verdicts(verdicts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m braid.testing.netdelay")
    parser.add_argument("--queue", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, required=True)
    parser.add_argument("--loss", type=float, default=0.0, help="fraction of packets dropped")
    parser.add_argument("--seconds", type=float, default=600, help="exit after this long")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    if not 0 <= args.loss < 1 or args.delay_ms < 0 or args.seconds <= 0:
        parser.error("need 0 <= --loss < 1, --delay-ms >= 0, --seconds > 0")
    counts = run(args.queue, args.delay_ms, args.loss, args.seconds, args.seed)
    print(json.dumps({"event": "stopped", **counts}), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
