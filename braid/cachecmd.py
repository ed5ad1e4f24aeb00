"""``braid cache``: list and clear the records of a result store.

    braid cache list  [--storage PATH|URL]
    braid cache clear [--storage PATH|URL] (--all | --task NAME | --older-than 2h)

``--storage`` defaults to the default store (``$BRAID_HOME/storage``).  ``list`` prints
one line per record: key, task, size, age and expiry.  ``clear`` takes any mix of
``--task`` and ``--older-than`` (a record must match all given) or ``--all``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from typing import TextIO

from braid.results import ResultRecordMetadata, ResultStore

__all__ = ["main", "parse_age"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> dt.timedelta:
    """``"90s"``, ``"15m"``, ``"2h"``, ``"3d"``, ``"1w"`` (or combinations like ``"1h30m"``)
    as a timedelta; raises ``ValueError`` otherwise."""
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhdw])", text.strip().lower())
    if not parts or "".join(n + u for n, u in parts) != text.strip().lower():
        raise ValueError(f"cannot read age {text!r}: use e.g. 90s, 15m, 2h, 3d, 1w")
    return dt.timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))


def _human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _human_age(delta: dt.timedelta) -> str:
    s = max(0, int(delta.total_seconds()))
    for unit, secs in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= secs:
            return f"{s // secs}{unit}"
    return f"{s}s"


def _entries(store: ResultStore) -> list[tuple[str, ResultRecordMetadata | None, int]]:
    out = []
    meta_fs = store.metadata_storage or store.result_storage
    for key in sorted(store.keys()):
        meta = store.read_metadata(key)
        try:
            size = (
                store.result_storage.size(meta.payload_key or key) if meta else (meta_fs.size(key))
            )
        except OSError:
            size = 0
        out.append((key, meta, size))
    return out


def _list(store: ResultStore, out: TextIO) -> int:
    now = dt.datetime.now(dt.timezone.utc)
    rows = [("KEY", "TASK", "SIZE", "AGE", "EXPIRES")]
    for key, meta, size in _entries(store):
        if meta is None:
            rows.append((key, "?", _human_size(size), "?", "unreadable"))
            continue
        if meta.expiration is None:
            expires = "never"
        elif meta.expiration <= now:
            expires = "expired"
        else:
            expires = "in " + _human_age(meta.expiration - now)
        rows.append(
            (key, meta.task_name or "-", _human_size(size), _human_age(now - meta.created), expires)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")
    out.write(f"{len(rows) - 1} record(s) in {store.result_storage.basepath}\n")
    return 0


def _clear(store: ResultStore, args: argparse.Namespace, out: TextIO) -> int:
    now = dt.datetime.now(dt.timezone.utc)
    older = parse_age(args.older_than) if args.older_than else None
    removed = 0
    for key, meta, _ in _entries(store):
        if not args.all:
            if args.task is not None and (meta is None or meta.task_name != args.task):
                continue
            if older is not None and (meta is None or now - meta.created < older):
                continue
        store.delete(key)
        removed += 1
    out.write(f"removed {removed} record(s) from {store.result_storage.basepath}\n")
    return 0


def main(argv: list[str], out: TextIO | None = None) -> int:
    """Run ``braid cache`` with ``argv`` (the words after ``cache``); returns the exit code
    (0 done, 2 bad usage)."""
    out = out or sys.stdout
    parser = argparse.ArgumentParser(prog="braid cache", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("list", "clear"):
        p = sub.add_parser(name)
        p.add_argument(
            "--storage",
            help="a directory or fsspec URL (default: the default store, $BRAID_HOME/storage)",
        )
    clear = sub.choices["clear"]
    clear.add_argument("--all", action="store_true", help="remove every record")
    clear.add_argument("--task", help="remove the records of this task")
    clear.add_argument("--older-than", help="remove records older than this (2h, 3d, ...)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.command == "clear":
        if not (args.all or args.task or args.older_than):
            out.write(
                "braid cache clear: say what to remove: --all, --task NAME or --older-than AGE\n"
            )
            return 2
        if args.older_than:
            try:
                parse_age(args.older_than)
            except ValueError as exc:
                out.write(f"braid cache clear: {exc}\n")
                return 2
    store = ResultStore(result_storage=args.storage, cache_result_in_memory=False)
    return _list(store, out) if args.command == "list" else _clear(store, args, out)
