"""Exactly-once file tools across crashes: what ``fs/*`` write ahead, and the checks resume makes.

Used by :mod:`agentctl.services.tools.fs`: a writing tool, holding the path's write lock,
computes a record here (:func:`append_record`, :func:`replace_record`), puts it on disk with
:meth:`~agentctl.services.tools.registry.ToolContext.write_ahead`, and only then touches the
file. Crash resume calls the matching check (:func:`check_append`, :func:`check_replace`)
for a call that has no result, before any agent runs again, and learns whether the effect
happened (:class:`~agentctl.services.tools.registry.Recovered`).

Why the answer is exact: the record is taken under the path's write lock, and the lock is
given back only after the effect; another writer of the path writes its own record after
that, and the log is written in order, so when that record is on disk the first call's
result is too. Hence for a call without a result, nobody touched its path between its
record and the crash: the file is either as the record found it (not applied: run it
again) or as the call left it (applied). An append cut short mid-write is cut back to
the recorded size and run again. Anything else (the file changed by something outside
the run) is reported as unknown, and the agent is told the call was interrupted.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, BinaryIO

from .nofollow import read_capped, regular
from .registry import Recovered

__all__ = ["append_record", "check_append", "check_replace", "replace_record"]

#: Bytes before the append point whose hash the record keeps: enough to notice a file
#: rewritten meanwhile, cheap to read.
TAIL = 256


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _open(target: Path) -> BinaryIO:
    """``target`` opened for reading without blocking; refused unless a regular file (a fifo
    put in its place would hang the call)."""
    fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    return os.fdopen(regular(fd, target.name), "rb")


def _file_sha(target: Path) -> str | None:
    try:
        with _open(target) as f:
            return _sha(read_capped(f, target.name))
    except FileNotFoundError:
        return None


def _tail(target: Path, size: int) -> str:
    with _open(target) as f:
        f.seek(max(0, size - TAIL))
        return _sha(f.read(size - max(0, size - TAIL)))


def append_record(target: Path) -> dict[str, Any]:
    """Before an append: the file's size (-1: missing) and a hash of its last bytes."""
    try:
        size = target.stat().st_size
    except FileNotFoundError:
        return {"size": -1, "tail": None}
    return {"size": size, "tail": _tail(target, size)}


def replace_record(target: Path, data: bytes) -> dict[str, Any]:
    """Before the file is replaced by ``data``: its hash now (None: missing) and after."""
    return {"before": _file_sha(target), "after": _sha(data), "bytes": len(data)}


def check_append(target: Path, rel: str, data: bytes, record: Any) -> Recovered:
    """Whether an append of ``data`` recorded as ``record`` took effect (see the module doc)."""
    if not isinstance(record, dict):
        return Recovered(False)  # it never wrote ahead, so it never touched the file
    size = int(record.get("size", -1))
    try:
        now = target.stat().st_size
    except FileNotFoundError:
        return Recovered(False) if size == -1 else Recovered(None)
    start = max(size, 0)
    if size >= 0 and (now < size or _tail(target, size) != record.get("tail")):
        return Recovered(None)
    with _open(target) as f:
        f.seek(start)
        written = f.read(len(data) + 1)
    if written == data:
        return Recovered(True, {"path": rel, "bytes": len(data)})
    if data.startswith(written):
        # Nothing, or part of it (killed mid-write): back to the recorded size, run it again.
        if written:
            os.truncate(target, start)
        if size == -1 and start == 0:
            target.unlink()
        return Recovered(False)
    return Recovered(None)


def check_replace(target: Path, rel: str, record: Any) -> Recovered:
    """Whether a write (or edit) recorded as ``record`` replaced the file (see the module doc)."""
    _drop_temp_files(target)
    if not isinstance(record, dict):
        return Recovered(False)
    now = _file_sha(target)
    if now == record.get("after"):
        return Recovered(True, {"path": rel, "bytes": int(record.get("bytes", 0))})
    if now == record.get("before"):
        return Recovered(False)
    return Recovered(None)


def _drop_temp_files(target: Path) -> None:
    """Remove what a write killed before its rename left (``.NAME.*.tmp``, see ``fs``)."""
    if target.parent.is_dir():
        for tmp in target.parent.glob(f".{_glob_escape(target.name)}.*.tmp"):
            tmp.unlink(missing_ok=True)


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)
