"""The events file itself: opening it for appending (after repairing a torn tail), and writing to it.

Used by :class:`agentctl.events.log.EventLog`, which opens the file with :func:`open_log_file`
when it is created, and by its writer (:mod:`agentctl.events.writer`), which appends with
:func:`write_all`.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from agentctl.errors import LogError

__all__ = ["open_log_file", "write_all"]


def open_log_file(path: Path) -> int:
    """Open (or create, with its parent directories) the events file to append; its descriptor.

    Raises:
        LogError: the file could not be opened, or its end could not be repaired.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise LogError(f"cannot open event log {path}: {exc}") from exc
    try:
        _repair_tail(fd)
    except OSError as exc:
        os.close(fd)
        raise LogError(f"cannot repair the end of event log {path}: {exc}") from exc
    return fd


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write only part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _repair_tail(fd: int) -> None:
    """Make an existing file end in a newline before we append to it.

    A crash mid-write leaves a torn final line; appending straight after it would glue the
    next event onto it and turn a reportable torn tail into a corrupt middle line. A tail
    that parses gets its newline; one that does not is cut off.
    """
    size = os.lseek(fd, 0, os.SEEK_END)
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    start = size
    while start > 0:
        chunk_start = max(0, start - 65536)
        newline = os.pread(fd, start - chunk_start, chunk_start).rfind(b"\n")
        if newline >= 0:
            start = chunk_start + newline + 1
            break
        start = chunk_start
    tail = os.pread(fd, size - start, start)
    try:
        complete = isinstance(orjson.loads(tail), dict)
    except orjson.JSONDecodeError:
        complete = False
    if complete:
        write_all(fd, b"\n")
    else:
        os.ftruncate(fd, start)
