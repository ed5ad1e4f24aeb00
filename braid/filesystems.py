"""Where result records live: a directory on a disk, or any fsspec URL.

Both filesystems speak the few verbs a :class:`braid.results.ResultStore` needs
(``read_path``, ``write_path``, ``exists``, ``delete``, ``listdir``, ``rename``, ``size``,
``modified``), with paths relative to their ``basepath``.  Writes are atomic: the
bytes go to a temporary name beside the target and are renamed over it, so a reader
in another process sees the old record or the new one, never half of one (on object
stores, which have no rename, a single ``put`` is already all-or-nothing).

fsspec is optional: :class:`RemoteFileSystem` imports it when first used and raises
:class:`braid.errors.MissingExtraError` naming what to install when it is missing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from braid import errors

__all__ = ["LocalFileSystem", "RemoteFileSystem", "WritableFileSystem", "resolve_storage"]


class WritableFileSystem:
    """The interface result stores use; :class:`LocalFileSystem` and :class:`RemoteFileSystem`
    implement it."""

    basepath: str

    def read_path(self, path: str) -> bytes:
        """The bytes at ``path``; raises ``FileNotFoundError`` when there is none."""
        raise NotImplementedError

    def read_head(self, path: str, size: int) -> bytes:
        """At most the first ``size`` bytes at ``path``."""
        return self.read_path(path)[:size]

    def write_path(self, path: str, content: bytes) -> str:
        """Write ``content`` at ``path`` atomically, creating folders; returns the full path."""
        raise NotImplementedError

    def exists(self, path: str) -> bool:
        """Whether something is stored at ``path``."""
        raise NotImplementedError

    def delete(self, path: str) -> None:
        """Remove ``path``; a missing one is not an error."""
        raise NotImplementedError

    def rename(self, src: str, dst: str) -> None:
        """Move ``src`` over ``dst`` (atomically where the filesystem can)."""
        raise NotImplementedError

    def listdir(self) -> Iterator[str]:
        """Relative paths of the files directly under ``basepath``."""
        raise NotImplementedError

    def size(self, path: str) -> int:
        """Size in bytes of ``path``."""
        raise NotImplementedError

    def modified(self, path: str) -> float:
        """Last change of ``path`` as a POSIX timestamp."""
        raise NotImplementedError

    def is_local(self) -> bool:
        """Whether only this machine can see this storage (workers on other hosts cannot)."""
        return False


class LocalFileSystem(WritableFileSystem):
    """Files under a directory on this machine's disk (or on a shared mount).

    ``basepath`` is expanded (``~``) and made absolute once, so a copy sent to a worker
    names the same directory; it is created on first write.  ``shared=True`` declares
    the directory to be a mount every worker host sees (NFS and the like), which lets
    it be used from a remote cluster.
    """

    def __init__(self, basepath: str | os.PathLike[str], shared: bool = False) -> None:
        self.basepath = str(Path(basepath).expanduser().absolute())
        self.shared = shared

    def _full(self, path: str) -> Path:
        return Path(self.basepath, path)

    def read_path(self, path: str) -> bytes:
        """The bytes at ``path``; raises ``FileNotFoundError`` when there is none."""
        return self._full(path).read_bytes()

    def read_head(self, path: str, size: int) -> bytes:
        """At most the first ``size`` bytes at ``path``."""
        with open(self._full(path), "rb") as f:
            return f.read(size)

    def write_path(self, path: str, content: bytes) -> str:
        """Write ``content`` to a temporary file beside ``path`` and rename it into place."""
        full = self._full(path)
        full.parent.mkdir(parents=True, exist_ok=True)
        tmp = full.with_name(f".{full.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(content)
            os.replace(tmp, full)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return str(full)

    def exists(self, path: str) -> bool:
        """Whether a file is stored at ``path``."""
        return self._full(path).exists()

    def delete(self, path: str) -> None:
        """Remove ``path``; a missing one is not an error."""
        self._full(path).unlink(missing_ok=True)

    def rename(self, src: str, dst: str) -> None:
        """``os.replace``: atomic on one filesystem."""
        self._full(dst).parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._full(src), self._full(dst))

    def listdir(self) -> Iterator[str]:
        """Names of the files directly under ``basepath`` (none if it does not exist yet)."""
        try:
            entries = list(os.scandir(self.basepath))
        except FileNotFoundError:
            return iter(())
        return (e.name for e in entries if e.is_file())

    def size(self, path: str) -> int:
        """Size in bytes of ``path``."""
        return self._full(path).stat().st_size

    def modified(self, path: str) -> float:
        """Last change of ``path`` as a POSIX timestamp."""
        return self._full(path).stat().st_mtime

    def is_local(self) -> bool:
        """True unless the directory was declared ``shared``."""
        return not self.shared

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocalFileSystem) and other.basepath == self.basepath

    def __hash__(self) -> int:
        return hash(self.basepath)

    def __repr__(self) -> str:
        return f"LocalFileSystem(basepath={self.basepath!r})"


class RemoteFileSystem(WritableFileSystem):
    """Files under an fsspec URL (``s3://bucket/prefix``, ``gcs://…``, ``file://…``,
    ``memory://…``); ``storage_options`` go to fsspec (credentials, endpoints).

    The fsspec filesystem object is made lazily in each process and never pickled, so
    a copy sent to a worker connects there afresh.
    """

    def __init__(self, basepath: str, storage_options: dict[str, Any] | None = None) -> None:
        if "://" not in basepath:
            raise ValueError(
                f"RemoteFileSystem needs a URL such as 's3://bucket/prefix', got {basepath!r}"
            )
        self.basepath = basepath.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self._fs: Any = None
        self._root = ""

    def __getstate__(self) -> dict[str, Any]:
        return {"basepath": self.basepath, "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["basepath"], state["storage_options"])  # type: ignore[misc]

    @property
    def filesystem(self) -> Any:
        """The fsspec filesystem for ``basepath`` (imports fsspec on first use)."""
        if self._fs is None:
            try:
                import fsspec
            except ImportError as exc:
                raise errors.MissingExtraError(
                    f"result storage {self.basepath!r} needs fsspec: pip install fsspec "
                    f"(plus the protocol's package, e.g. s3fs for s3://, gcsfs for gs://)"
                ) from exc
            fs, root = fsspec.core.url_to_fs(self.basepath, **self.storage_options)
            self._fs, self._root = fs, root.rstrip("/")
        return self._fs

    def _full(self, path: str) -> str:
        fs = self.filesystem
        return f"{self._root}/{path}" if path else self._root or fs.root_marker

    def read_path(self, path: str) -> bytes:
        """The bytes at ``path``; raises ``FileNotFoundError`` when there is none."""
        return self.filesystem.cat_file(self._full(path))

    def read_head(self, path: str, size: int) -> bytes:
        """At most the first ``size`` bytes at ``path``."""
        return self.filesystem.cat_file(self._full(path), start=0, end=size)

    def write_path(self, path: str, content: bytes) -> str:
        """Write ``content`` at ``path``: to a temporary name then moved where the
        filesystem has a real rename (``file://``), in a single ``put`` elsewhere."""
        fs, full = self.filesystem, self._full(path)
        parent = full.rsplit("/", 1)[0]
        if parent:
            fs.makedirs(parent, exist_ok=True)
        if "file" in _protocols(fs):
            tmp = f"{parent}/.{full.rsplit('/', 1)[-1]}.{uuid.uuid4().hex}.tmp"
            fs.pipe_file(tmp, content)
            os.replace(tmp, full)
        else:
            fs.pipe_file(full, content)
        return full

    def exists(self, path: str) -> bool:
        """Whether an object is stored at ``path``."""
        return bool(self.filesystem.exists(self._full(path)))

    def delete(self, path: str) -> None:
        """Remove ``path``; a missing one is not an error."""
        try:
            self.filesystem.rm_file(self._full(path))
        except FileNotFoundError:
            pass

    def rename(self, src: str, dst: str) -> None:
        """fsspec ``mv`` (a copy and delete on object stores)."""
        fs = self.filesystem
        if "file" in _protocols(fs):
            os.replace(self._full(src), self._full(dst))
        else:
            fs.mv(self._full(src), self._full(dst))

    def listdir(self) -> Iterator[str]:
        """Names of the files directly under ``basepath``."""
        fs = self.filesystem
        try:
            entries = fs.ls(self._full(""), detail=True)
        except FileNotFoundError:
            return iter(())
        return (
            e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "file"
        )

    def size(self, path: str) -> int:
        """Size in bytes of ``path``."""
        return int(self.filesystem.size(self._full(path)))

    def modified(self, path: str) -> float:
        """Last change of ``path`` as a POSIX timestamp (0 when the store does not say)."""
        try:
            return self.filesystem.modified(self._full(path)).timestamp()
        except (NotImplementedError, AttributeError, OSError, ValueError):
            return 0.0

    def is_local(self) -> bool:
        """``file://`` and ``memory://`` are this machine's (``memory://`` this process's)."""
        scheme = self.basepath.split("://", 1)[0]
        return scheme in ("file", "local", "memory")

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, RemoteFileSystem)
            and other.basepath == self.basepath
            and other.storage_options == self.storage_options
        )

    def __hash__(self) -> int:
        return hash(self.basepath)

    def __repr__(self) -> str:
        return f"RemoteFileSystem(basepath={self.basepath!r})"


def _protocols(fs: Any) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


def resolve_storage(spec: str | os.PathLike[str] | WritableFileSystem) -> WritableFileSystem:
    """The filesystem ``result_storage=``/``key_storage=`` names: a filesystem as is, a URL
    with a scheme as a :class:`RemoteFileSystem`, anything else as a local directory."""
    if isinstance(spec, WritableFileSystem):
        return spec
    if isinstance(spec, str) and "://" in spec:
        return RemoteFileSystem(spec)
    if isinstance(spec, (str, os.PathLike)):
        return LocalFileSystem(spec)
    if all(callable(getattr(spec, m, None)) for m in ("read_path", "write_path", "exists")):
        return spec
    raise TypeError(f"result storage must be a path, a URL or a filesystem, got {spec!r}")
