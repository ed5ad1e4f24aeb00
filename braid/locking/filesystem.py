"""Locks as files: for processes on one machine, or hosts that share a mount.

A lock on a key is the file ``<lock_files_directory>/<key>.lock``, created with
``O_CREAT | O_EXCL`` (atomic on local disks and on NFSv3+), holding JSON: the holder,
the host and pid that took it, and when it lapses.  Lock files, not ``fcntl`` locks,
because a lock here belongs to a *holder* (a string) rather than to an open file, so
it survives being checked from another process, and works where ``flock`` does not.

A lock is stale, and the next taker breaks it, when it has lapsed (``hold_timeout``)
or when its holder was a process on this host that no longer runs.  A holder on
another host that died is only noticed through ``hold_timeout``: give one when hosts
share the directory.  Breaking renames the stale file to a unique name first and
checks it moved the file it judged, so two takers never both win.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path

from braid.locking.protocol import poll_until_free

__all__ = ["FileSystemLockManager"]

_POLL_MIN, _POLL_MAX = 0.005, 0.1


class FileSystemLockManager:
    """Lock files under ``lock_files_directory`` (created on first use); ``shared=True``
    declares the directory a mount every worker host sees."""

    def __init__(self, lock_files_directory: str | os.PathLike[str], shared: bool = False) -> None:
        self.lock_files_directory = Path(lock_files_directory).expanduser().absolute()
        self.shared = shared

    def _path(self, key: str) -> Path:
        return self.lock_files_directory / f"{key}.lock"

    def _read(self, path: Path) -> dict | None:
        try:
            return json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            # Being written this instant (create, then write): judge it on the next look.
            return {"holder": None, "torn": True}

    @staticmethod
    def _stale(info: dict) -> bool:
        if info.get("torn"):
            return False
        lapses = info.get("lapses")
        if lapses is not None and time.time() >= lapses:
            return True
        if info.get("host") == socket.gethostname():
            try:
                os.kill(int(info["pid"]), 0)
            except ProcessLookupError:
                return True
            except (PermissionError, KeyError, ValueError, TypeError):
                return False
        return False

    def _break(self, path: Path, judged: dict) -> None:
        moved = path.with_name(f"{path.name}.{uuid.uuid4().hex}.stale")
        try:
            os.rename(path, moved)
        except FileNotFoundError:
            return
        if self._read(moved) == judged:
            moved.unlink(missing_ok=True)
            return
        # Someone broke it first and took the lock anew: put their lock back.
        try:
            os.link(moved, path)
        except OSError:
            pass
        moved.unlink(missing_ok=True)

    def _try_take(self, key: str, holder: str, hold_timeout: float | None) -> bool:
        path = self._path(key)
        info = {
            "holder": holder,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "lapses": None if hold_timeout is None else time.time() + hold_timeout,
            "nonce": uuid.uuid4().hex,
        }
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            current = self._read(path)
            if current is None:
                return False  # released just now: try again at once
            if current.get("holder") == holder:
                return True
            if self._stale(current):
                self._break(path, current)
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
        return True

    def acquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        """Create the lock file for ``holder``, polling (5 ms growing to 100 ms) while
        another holds it; False if not taken within ``acquire_timeout`` seconds."""
        self.lock_files_directory.mkdir(parents=True, exist_ok=True)
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        pause = _POLL_MIN
        while not self._try_take(key, holder, hold_timeout):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if self._path(key).exists():
                time.sleep(pause)
                pause = min(pause * 2, _POLL_MAX)
        return True

    def release_lock(self, key: str, holder: str) -> None:
        """Delete ``holder``'s lock file; ``ValueError`` if ``holder`` does not hold it."""
        path = self._path(key)
        current = self._read(path)
        if current is None or current.get("holder") != holder:
            raise ValueError(f"{holder!r} does not hold the lock on {key!r}")
        path.unlink(missing_ok=True)

    def is_locked(self, key: str) -> bool:
        """Whether a lock file for ``key`` exists and is not stale."""
        current = self._read(self._path(key))
        return current is not None and not self._stale(current)

    def is_lock_holder(self, key: str, holder: str) -> bool:
        """Whether ``holder`` holds an unstale lock on ``key``."""
        current = self._read(self._path(key))
        return current is not None and current.get("holder") == holder and not self._stale(current)

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """Poll until ``key`` is not locked; False if still locked after ``timeout`` s."""
        return poll_until_free(lambda: self.is_locked(key), timeout, _POLL_MIN, _POLL_MAX)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, FileSystemLockManager)
            and other.lock_files_directory == self.lock_files_directory
        )

    def __hash__(self) -> int:
        return hash(self.lock_files_directory)

    def __repr__(self) -> str:
        return f"FileSystemLockManager({str(self.lock_files_directory)!r})"
