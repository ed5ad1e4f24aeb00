"""Persisted results: records of task return values stored by key, read back by any process.

A record is one file named by its key (the cache key, or a ``result_storage_key``):
a first line ``braid-record 1``, a line of JSON metadata (key, storage key, expiration,
serializer, task name, creation time, payload length and digest), then the payload
the serializer wrote.  It is written to a temporary name and renamed into place, so a
reader in another process never sees half a record; a record that cannot be read,
decoded or checked is a miss with a :class:`braid.errors.CorruptRecordWarning`,
never a crash and never a wrong value; an expired record is never served.

With ``metadata_storage`` (a cache policy's ``key_storage``) the metadata file lives
there, naming the key under which the bare payload sits in ``result_storage``.

The default storage is ``$BRAID_HOME/storage`` (``BRAID_HOME`` defaults to
``~/.braid``), created on first write.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from braid import errors
from braid.filesystems import LocalFileSystem, WritableFileSystem, resolve_storage
from braid.serializers import Serializer, describe, resolve_serializer, serializer_for_record

__all__ = [
    "ResultRecord",
    "ResultRecordMetadata",
    "ResultStore",
    "braid_home",
    "default_storage_path",
    "store_is_local_only",
    "check_store_for_remote",
]

MAGIC = b"braid-record 1\n"
_HEAD_READ = 64 * 1024
_MEMORY_CACHE_SIZE = 1000


def braid_home() -> Path:
    """``$BRAID_HOME``, or ``~/.braid``: where braid keeps its default store and locks."""
    return Path(os.environ.get("BRAID_HOME") or "~/.braid").expanduser()


def default_storage_path() -> Path:
    """The default result storage directory, ``<braid home>/storage``."""
    return braid_home() / "storage"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class ResultRecordMetadata:
    """What a record says about its value: ``storage_key``, ``expiration`` (aware datetime
    or None), ``serializer``, ``task_name``, ``created``, and the payload's size."""

    __slots__ = (
        "storage_key",
        "expiration",
        "serializer",
        "task_name",
        "created",
        "payload_size",
        "payload_digest",
        "payload_key",
    )

    def __init__(
        self,
        storage_key: str,
        serializer: dict[str, str],
        expiration: dt.datetime | None = None,
        task_name: str | None = None,
        created: dt.datetime | None = None,
        payload_size: int = 0,
        payload_digest: str = "",
        payload_key: str | None = None,
    ) -> None:
        self.storage_key, self.serializer, self.expiration = storage_key, serializer, expiration
        self.task_name, self.created = task_name, created or _now()
        self.payload_size, self.payload_digest = payload_size, payload_digest
        self.payload_key = payload_key

    def is_expired(self, now: dt.datetime | None = None) -> bool:
        """Whether the record's expiration has passed."""
        return self.expiration is not None and (now or _now()) >= self.expiration

    def to_json(self) -> bytes:
        """The metadata line of a record file."""
        return json.dumps(
            {
                "storage_key": self.storage_key,
                "serializer": self.serializer,
                "expiration": self.expiration.isoformat() if self.expiration else None,
                "task_name": self.task_name,
                "created": self.created.isoformat(),
                "payload_size": self.payload_size,
                "payload_digest": self.payload_digest,
                "payload_key": self.payload_key,
            }
        ).encode()

    @classmethod
    def from_json(cls, blob: bytes) -> ResultRecordMetadata:
        """Parse a metadata line; raises ``ValueError``/``KeyError`` when malformed."""
        d = json.loads(blob)
        exp = d.get("expiration")
        return cls(
            storage_key=d["storage_key"],
            serializer=d["serializer"],
            expiration=dt.datetime.fromisoformat(exp) if exp else None,
            task_name=d.get("task_name"),
            created=dt.datetime.fromisoformat(d["created"]),
            payload_size=int(d["payload_size"]),
            payload_digest=d["payload_digest"],
            payload_key=d.get("payload_key"),
        )

    def __repr__(self) -> str:
        return (
            f"ResultRecordMetadata(storage_key={self.storage_key!r}, "
            f"expiration={self.expiration!r}, serializer={self.serializer!r})"
        )


class ResultRecord:
    """A stored result: ``metadata`` and the deserialized ``result``."""

    __slots__ = ("metadata", "result")

    def __init__(self, metadata: ResultRecordMetadata, result: Any) -> None:
        self.metadata, self.result = metadata, result

    @property
    def key(self) -> str:
        """The key the record is stored under."""
        return self.metadata.storage_key

    def __repr__(self) -> str:
        return f"ResultRecord(key={self.key!r})"


def _digest(payload: bytes) -> str:
    return hashlib.blake2b(payload, digest_size=16).hexdigest()


def _split(blob: bytes) -> tuple[ResultRecordMetadata, bytes]:
    if not blob.startswith(MAGIC):
        raise ValueError("not a braid record")
    head, sep, payload = blob[len(MAGIC) :].partition(b"\n")
    if not sep:
        raise ValueError("truncated record")
    return ResultRecordMetadata.from_json(head), payload


class ResultStore:
    """Writes and reads :class:`ResultRecord` s by key in ``result_storage``.

    ``result_storage`` is a directory path, a URL (``s3://…``, ``memory://…``), or a
    filesystem from :mod:`braid.filesystems`; None means the default directory.
    ``serializer`` is ``"pickle"`` (cloudpickle), ``"json"`` or a serializer object.
    ``lock_manager`` backs ``SERIALIZABLE`` isolation.  With ``cache_result_in_memory``
    a bounded per-process memory cache serves repeated reads (never expired ones).
    A store pickles to its configuration alone, so workers get a cold copy.
    """

    def __init__(
        self,
        result_storage: Any = None,
        metadata_storage: Any = None,
        lock_manager: Any = None,
        serializer: str | Serializer | None = "pickle",
        cache_result_in_memory: bool = True,
    ) -> None:
        self._storage_spec = result_storage
        self.metadata_storage = (
            None if metadata_storage is None else resolve_storage(metadata_storage)
        )
        self.lock_manager = lock_manager
        self.serializer = resolve_serializer(serializer)
        self.cache_result_in_memory = cache_result_in_memory
        self._storage: WritableFileSystem | None = (
            None if result_storage is None else resolve_storage(result_storage)
        )
        self._memory: OrderedDict[str, ResultRecord] = OrderedDict()
        self._memory_lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_memory"] = None
        state["_memory_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._memory = OrderedDict()
        self._memory_lock = threading.Lock()

    @property
    def result_storage(self) -> WritableFileSystem:
        """The filesystem results go to (the default directory when none was given)."""
        if self._storage is None:
            self._storage = LocalFileSystem(default_storage_path())
        return self._storage

    def _meta_fs(self) -> WritableFileSystem:
        return self.metadata_storage or self.result_storage

    def with_options(self, **changes: Any) -> ResultStore:
        """A copy of this store with some constructor arguments replaced."""
        kwargs = {
            "result_storage": self._storage if self._storage is not None else self._storage_spec,
            "metadata_storage": self.metadata_storage,
            "lock_manager": self.lock_manager,
            "serializer": self.serializer,
            "cache_result_in_memory": self.cache_result_in_memory,
        }
        kwargs.update(changes)
        return ResultStore(**kwargs)

    # -- writing --------------------------------------------------------------------------
    def create_result_record(
        self,
        obj: Any,
        key: str,
        expiration: dt.datetime | None = None,
        task_name: str | None = None,
    ) -> tuple[ResultRecord, bytes]:
        """Serialize ``obj`` into a record for ``key``; returns the record and the bytes of
        its file.  Raises whatever the serializer raises for a value it cannot handle."""
        payload = self.serializer.dumps(obj)
        meta = ResultRecordMetadata(
            storage_key=key,
            serializer=describe(self.serializer),
            expiration=expiration,
            task_name=task_name,
            payload_size=len(payload),
            payload_digest=_digest(payload),
            payload_key=key if self.metadata_storage is not None else None,
        )
        return ResultRecord(meta, obj), MAGIC + meta.to_json() + b"\n" + payload

    def write(
        self,
        key: str,
        obj: Any,
        expiration: dt.datetime | None = None,
        holder: str | None = None,
        task_name: str | None = None,
    ) -> ResultRecord:
        """Store ``obj`` under ``key`` (replacing any record there) and return the record."""
        record, blob = self.create_result_record(obj, key, expiration, task_name)
        self._write_blob(key, blob)
        self._remember(record)
        return record

    def _write_blob(self, key: str, blob: bytes, staged_as: str | None = None) -> None:
        if self.metadata_storage is None:
            self.result_storage.write_path(staged_as or key, blob)
            return
        meta, payload = _split(blob)
        self.result_storage.write_path(staged_as or key, payload)
        head = MAGIC + meta.to_json() + b"\n"
        self.metadata_storage.write_path(staged_as or key, head)

    def stage(
        self,
        key: str,
        obj: Any,
        expiration: dt.datetime | None = None,
        task_name: str | None = None,
    ) -> str:
        """Write ``obj``'s record under a hidden name beside ``key`` without publishing it;
        returns that name for :meth:`promote` (commit) or :meth:`discard` (rollback)."""
        import uuid

        staged = f".staged-{uuid.uuid4().hex}-{key}"
        _, blob = self.create_result_record(obj, key, expiration, task_name)
        self._write_blob(key, blob, staged_as=staged)
        return staged

    def promote(self, staged: str, key: str) -> None:
        """Publish a staged record under ``key`` (a rename: atomic on one disk)."""
        self.result_storage.rename(staged, key)
        if self.metadata_storage is not None:
            self.metadata_storage.rename(staged, key)
        with self._memory_lock:
            self._memory.pop(key, None)

    def discard(self, staged: str) -> None:
        """Delete a staged record that will not be published."""
        self.result_storage.delete(staged)
        if self.metadata_storage is not None:
            self.metadata_storage.delete(staged)

    def _remember(self, record: ResultRecord) -> None:
        if not self.cache_result_in_memory:
            return
        with self._memory_lock:
            self._memory[record.key] = record
            self._memory.move_to_end(record.key)
            while len(self._memory) > _MEMORY_CACHE_SIZE:
                self._memory.popitem(last=False)

    # -- reading --------------------------------------------------------------------------
    def read_metadata(self, key: str) -> ResultRecordMetadata | None:
        """The metadata of the record at ``key``; None when absent or unreadable."""
        fs = self._meta_fs()
        try:
            head = fs.read_head(key, _HEAD_READ)
            if not head.startswith(MAGIC):
                raise ValueError("not a braid record")
            line = head[len(MAGIC) :].partition(b"\n")[0]
            return ResultRecordMetadata.from_json(line)
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 - unreadable is a miss
            _warn_corrupt(fs, key, exc)
            return None

    def read_fresh(self, key: str) -> ResultRecord | None:
        """The unexpired record at ``key``, or None (absent, expired, or unreadable: the
        last with a :class:`~braid.errors.CorruptRecordWarning`)."""
        now = _now()
        with self._memory_lock:
            hit = self._memory.get(key)
        if hit is not None:
            # the copy in memory stands for the stored record only while that exists (a
            # record cleared by `braid cache clear` must not be served from memory)
            if not hit.metadata.is_expired(now) and self._meta_fs().exists(key):
                return hit
            with self._memory_lock:
                self._memory.pop(key, None)
        fs = self._meta_fs()
        try:
            if self.metadata_storage is None:
                meta, payload = _split(fs.read_path(key))
            else:
                meta = self.read_metadata(key)
                if meta is None:
                    return None
                if meta.is_expired(now):
                    return None
                payload = self.result_storage.read_path(meta.payload_key or key)
            if meta.is_expired(now):
                return None
            if len(payload) != meta.payload_size or _digest(payload) != meta.payload_digest:
                raise ValueError("payload does not match its recorded size and digest")
            value = serializer_for_record(meta.serializer).loads(payload)
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 - a record we cannot trust is a miss
            _warn_corrupt(fs, key, exc)
            return None
        record = ResultRecord(meta, value)
        self._remember(record)
        return record

    def read(self, key: str, holder: str | None = None) -> ResultRecord:
        """The unexpired record at ``key``; raises :class:`~braid.errors.ResultNotFound`
        when there is none that can be read."""
        record = self.read_fresh(key)
        if record is None:
            raise errors.ResultNotFound(
                f"no readable, unexpired result record at {key!r} in {self.result_storage!r}"
            )
        return record

    def exists(self, key: str) -> bool:
        """Whether an unexpired record with readable metadata is stored at ``key``."""
        with self._memory_lock:
            hit = self._memory.get(key)
        if hit is not None and not hit.metadata.is_expired():
            return True
        meta = self.read_metadata(key)
        return meta is not None and not meta.is_expired()

    def delete(self, key: str) -> None:
        """Remove the record at ``key`` (and its payload); missing is not an error."""
        meta = self.read_metadata(key) if self.metadata_storage is not None else None
        self._meta_fs().delete(key)
        if meta is not None:
            self.result_storage.delete(meta.payload_key or key)
        with self._memory_lock:
            self._memory.pop(key, None)

    def keys(self) -> Iterator[str]:
        """The keys of the records stored (hidden and temporary files left out)."""
        return (name for name in self._meta_fs().listdir() if not name.startswith("."))

    # -- locks ----------------------------------------------------------------------------
    def supports_isolation_level(self, level: Any) -> bool:
        """Whether this store can give ``level`` (``SERIALIZABLE`` needs a lock manager)."""
        return str(getattr(level, "value", level)) != "SERIALIZABLE" or (
            self.lock_manager is not None
        )

    def acquire_lock(self, key: str, holder: str, timeout: float | None = None) -> bool:
        """Take the lock on ``key`` through the lock manager."""
        return self._locks().acquire_lock(key, holder, acquire_timeout=timeout)

    def release_lock(self, key: str, holder: str) -> None:
        """Release ``holder``'s lock on ``key``."""
        self._locks().release_lock(key, holder)

    def is_locked(self, key: str) -> bool:
        """Whether ``key`` is locked (False without a lock manager)."""
        return self.lock_manager is not None and self.lock_manager.is_locked(key)

    def _locks(self) -> Any:
        if self.lock_manager is None:
            raise errors.ConfigurationError(
                "SERIALIZABLE isolation needs a lock manager: "
                "cache_policy.configure(lock_manager=FileSystemLockManager(...)) or "
                "ResultStore(lock_manager=...)"
            )
        return self.lock_manager

    def __repr__(self) -> str:
        return f"ResultStore(result_storage={self.result_storage!r})"


def _warn_corrupt(fs: Any, key: str, exc: BaseException) -> None:
    warnings.warn(
        errors.CorruptRecordWarning(
            f"result record {key!r} in {fs!r} cannot be read ({type(exc).__name__}: {exc}); "
            f"treating it as a cache miss"
        ),
        stacklevel=3,
    )


def store_is_local_only(store: ResultStore) -> bool:
    """Whether workers on another host could not use ``store``: its storage (or metadata
    storage) is on this machine's disk or in memory, or its lock manager lives in this
    process or on this disk."""
    fss = [store.result_storage] + ([store.metadata_storage] if store.metadata_storage else [])
    if any(fs.is_local() for fs in fss):
        return True
    lm = store.lock_manager
    if lm is None:
        return False
    if type(lm).__name__ == "MemoryLockManager":
        return True
    if type(lm).__name__ == "FileSystemLockManager":
        return not getattr(lm, "shared", False)
    return False


def check_store_for_remote(store: ResultStore, where: str = "a remote cluster") -> None:
    """Raise :class:`~braid.errors.LocalStoreOnRemoteCluster` if ``store`` cannot be shared
    with workers on other hosts; call at flow start when the runner's workers may run
    on other hosts."""
    if store_is_local_only(store):
        raise errors.LocalStoreOnRemoteCluster(
            f"{store!r} (lock manager {store.lock_manager!r}) lives on this machine, but "
            f"tasks run on {where}: workers elsewhere would neither see nor share its "
            f"records.  Use result_storage='s3://…' (any fsspec URL every worker reaches), "
            f"a LocalFileSystem(path, shared=True) on a mount every host shares, and a "
            f"DaskLockManager/RayLockManager for SERIALIZABLE isolation"
        )
