"""Log records of Ray task runs, sent to the driver while the runs go on.

Ray's own way to the driver (``log_to_driver``) streams the lines a worker writes to its
stdout and stderr: text, not records, so the driver's handlers, levels and formats
cannot apply, lines may arrive after the flow returns, repeated lines are folded
("[repeated 5x across cluster]"), and a Ray started with it off (as braid starts one)
shows nothing.  So records travel on a small channel instead: one actor per driver (per
Ray job), on the driver's node, taking no CPU::

    Ray worker (a run's thread)                 channel actor            driver
    ---------------------------                 -------------            ------
    a record made in the run
      RaySink.put -> channel.put.remote(        queue it, wake
        process id, number, bytes)                 the reader    <-----  reader thread:
      (fire and forget: the run goes on)                                  take() (waits
    at the run's end: wait for its puts                                   until records
      (RaySink.flush: none is lost if the                                 come), replay
      worker exits)                                                       them
    runner stop (the flow's end): waits until the reader has replayed every record the
    channel holds (the last runner out stops the reader, whose last take returns them
    all), so a run's records all arrive before its flow returns

Ray may run an async actor's calls out of order, so each worker process numbers its
records and the channel releases them in that order.  A worker finds the channel by
name (its job's), once per process, on its first record; where there is none (a driver
of an older braid) records travel with the run's header.
The actor lives as long as the driver's Ray job; the reader thread runs while a runner
of this process is started.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from typing import Any

import ray

from braid.core.logs import dumps_records, replay

__all__ = ["attach", "detach", "RaySink"]

NAMESPACE = "braid"
#: how long a reader waits in one take() before asking again (stop wakes it sooner)
TAKE_WAIT = 30.0
#: how long a flush waits for the channel: a bound, never reached when Ray is healthy
FLUSH_TIMEOUT = 30.0


class LogChannel:
    """The actor: records put by workers, handed to the driver's reader in order."""

    def __init__(self) -> None:
        self.blobs: list[bytes] = []
        self.count = 0  # records ever released to readers
        self.wake = asyncio.Event()
        self.stopped: set[str] = set()  # readers told to stop
        # Ray may run an async actor's calls out of order: each worker process numbers
        # its records, and a record waits here until those before it came
        self.early: dict[str, dict[int, bytes]] = {}
        self.next: dict[str, int] = {}

    async def put(self, sender: str, seq: int, blob: bytes) -> None:
        early = self.early.setdefault(sender, {})
        early[seq] = blob
        expected = self.next.get(sender, 0)
        while expected in early:
            self.blobs.append(early.pop(expected))
            self.count += 1
            expected += 1
        self.next[sender] = expected
        if not early:
            del self.early[sender]
        self.wake.set()

    async def take(self, reader: str, wait: float) -> tuple[list[bytes], int]:
        """The records put since the last take (waiting up to ``wait`` s for one, unless
        ``reader`` was told to stop), and how many were ever put up to the last of them."""
        if not self.blobs and reader not in self.stopped:
            self.wake.clear()  # no await since the checks: a later put or stop wakes it
            try:
                await asyncio.wait_for(self.wake.wait(), wait)
            except asyncio.TimeoutError:
                pass
        blobs, self.blobs = self.blobs, []
        return blobs, self.count

    async def put_count(self) -> int:
        return self.count

    async def stop(self, reader: str) -> None:
        """End ``reader``'s take() that waits now or comes later."""
        self.stopped.add(reader)
        self.wake.set()


_remote_channel = ray.remote(num_cpus=0, max_restarts=0)(LogChannel)


def _channel_name(job_id: str) -> str:
    return f"braid-logs-{job_id}"


# -- the driver's side -------------------------------------------------------------------
class _Reader:
    """The driver's thread that replays what the channel receives."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.name = uuid.uuid4().hex
        self.replayed = -1  # the channel's count up to which records were replayed
        self.cond = threading.Condition()
        self.stopping = False  # stop() was called
        self.ended = False  # the thread has taken its last records
        self.thread = threading.Thread(target=self._read, name="braid-ray-logs", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        wait = 0.0  # the first take learns at once how many records earlier readers had
        last = False
        while not last:
            last = self.stopping  # a take begun after stop() returns all there is, then ends
            try:
                blobs, count = ray.get(self.channel.take.remote(self.name, wait))
            except Exception:  # noqa: BLE001 - Ray going away: nothing more will come
                break
            _replay_blobs(blobs)
            wait = TAKE_WAIT
            with self.cond:
                self.replayed = max(self.replayed, count)
                self.cond.notify_all()
        with self.cond:
            self.ended = True
            self.cond.notify_all()

    def flush(self, timeout: float = FLUSH_TIMEOUT) -> None:
        """Return once every record the channel holds now has been replayed here (or
        ``timeout`` seconds passed)."""
        deadline = time.monotonic() + timeout
        try:
            target = ray.get(self.channel.put_count.remote(), timeout=timeout)
        except Exception:  # noqa: BLE001 - Ray going away: nothing to wait for
            return
        with self.cond:
            left = max(0.0, deadline - time.monotonic())
            self.cond.wait_for(lambda: self.replayed >= target or self.ended, left)

    def stop(self, timeout: float = FLUSH_TIMEOUT) -> None:
        """Stop reading, once every record the channel holds now has been replayed (the
        take that stop() ends returns all of them), waiting at most ``timeout`` seconds."""
        self.stopping = True
        try:
            self.channel.stop.remote(self.name)
        except Exception:  # noqa: BLE001 - Ray gone: the take has ended already
            pass
        self.thread.join(timeout)


def _replay_blobs(blobs: list[bytes]) -> None:
    from braid.core.serialization import loads

    for blob in blobs:
        try:
            replay(loads(blob))
        except Exception:  # noqa: BLE001 - a record that will not load here is dropped
            pass


def _on_driver() -> bool:
    return getattr(ray.get_runtime_context().worker, "mode", None) == ray.SCRIPT_MODE


_lock = threading.Lock()
_users = 0
_reader: _Reader | None = None
#: (job id, handle): held for the job's life, since Ray ends an actor nobody holds,
#: and workers keep the handle they looked up
_held: tuple[str, Any] | None = None


def attach() -> None:
    """A runner of this driver started: make sure the channel and its reader run (on a
    Ray worker, where nested runners start, records already go to the driver's)."""
    global _users, _reader, _held
    if not _on_driver():
        return
    with _lock:
        _users += 1
        if _reader is not None:
            return
        job = ray.get_runtime_context().get_job_id()
        if _held is None or _held[0] != job:
            try:
                from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

                here = ray.get_runtime_context().get_node_id()
                channel = _remote_channel.options(
                    name=_channel_name(job),
                    namespace=NAMESPACE,
                    get_if_exists=True,
                    # on the driver's node, never elsewhere: a channel on a node that
                    # freezes would stall every flush of the driver's records
                    scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False),
                ).remote()
            except Exception:  # noqa: BLE001 - records then travel with each run's header
                return
            _held = (job, channel)
        _reader = _Reader(_held[1])


def detach(timeout: float = FLUSH_TIMEOUT) -> None:
    """A runner of this driver stops: every record its runs made has been replayed when
    this returns, or ``timeout`` seconds passed (a runner abandoning its runs does not
    wait long on a loaded or failing Ray); the last runner out stops the reader."""
    global _users, _reader
    if not _on_driver():
        return
    with _lock:
        _users -= 1
        reader = _reader
        last = _users <= 0
        if last:
            _users, _reader = 0, None
    if reader is None:
        return
    if last:
        reader.stop(timeout)
    else:
        reader.flush(timeout)


# -- a worker's side ---------------------------------------------------------------------
_channels: dict[str, Any] = {}  # by job id: the handle, or None where there is no channel


def _channel_here() -> tuple[str, Any]:
    """The job whose task runs here and its channel (looked up once per job), or None."""
    job = ray.get_runtime_context().get_job_id()
    if job not in _channels:
        try:
            handle = ray.get_actor(_channel_name(job), namespace=NAMESPACE)
        except Exception:  # noqa: BLE001 - no channel: records go with the header
            handle = None
        if len(_channels) > 64:
            _channels.clear()
        _channels[job] = handle
    return job, _channels[job]


#: this worker process, to the channel: its records are numbered in the order made,
#: from 0 for each channel (job) it sends to
_SENDER = uuid.uuid4().hex
_seq_lock = threading.Lock()
_seqs: dict[str, int] = {}


class RaySink:
    """A run's records: put on the driver's channel as they are made, or kept for the
    run's header where the driver has no channel."""

    def __init__(self) -> None:
        self.kept: list[logging.LogRecord] = []
        self._channel: Any = False  # unknown until the first record
        self._job = ""
        self._sent: list[Any] = []  # refs of this run's puts
        self._where: str | None = None

    def put(self, record: logging.LogRecord) -> None:
        if self._channel is False:
            self._job, self._channel = _channel_here()
            node = ray.get_runtime_context().get_node_id()[:8]
            self._where = f"ray node {node} / pid {os.getpid()}"
        record.worker = self._where
        if self._channel is None:
            self.kept.append(record)
            return
        blob = dumps_records([record])
        with _seq_lock:  # numbered and sent together: a number is never skipped
            seq = _seqs.get(self._job, 0)
            self._sent.append(self._channel.put.remote(_SENDER, seq, blob))
            _seqs[self._job] = seq + 1

    def flush(self) -> None:
        sent, self._sent = self._sent, []
        if sent:
            ray.wait(sent, num_returns=len(sent), timeout=FLUSH_TIMEOUT)
