"""Opening workspace paths without following a symlink on the way, and only regular files.

Used by the file tools (:mod:`agentctl.services.tools.fs`) once a path has been checked by
:func:`~agentctl.services.tools.fs.resolve_in_workspace`. The check resolves symlinks; the
open then walks the real path from the workspace root one directory descriptor at a time,
with ``O_NOFOLLOW``, and acts on the last name relative to its directory's descriptor. A
directory swapped for a symlink between the check and the open (by a shell command or a
container racing the tool) is refused instead of followed out of the workspace.

Every open is non-blocking and what it opened must be a regular file or a directory: a fifo
would hang the call (and the worker thread it holds) until a peer showed up, and a device or
socket is no file to read. A read takes at most :data:`MAX_FILE_BYTES`, so a huge (or
sparse, or endlessly growing) file is refused instead of filling memory.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ...errors import ToolError

__all__ = ["MAX_FILE_BYTES", "SWAPPED", "open_in", "read_capped", "regular", "walk"]

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
#: The most bytes a file tool reads of one file (as much as a plan file may hold).
MAX_FILE_BYTES = 16 * 1024 * 1024
#: Errors that mean a symlink (or a file) stood where the checked path had a directory.
SWAPPED = (errno.ELOOP, errno.ENOTDIR)


def _swapped(rel: str) -> ToolError:
    return ToolError(f"{rel}: the path changed while in use (a symlink or file took a directory's place); refused")


def _sub(fd: int, name: str, create: bool) -> int:
    try:
        return os.open(name, _DIR, dir_fd=fd)
    except FileNotFoundError:
        if not create:
            raise
    try:
        os.mkdir(name, 0o777, dir_fd=fd)  # the umask applies
    except FileExistsError:
        pass
    return os.open(name, _DIR, dir_fd=fd)


@contextmanager
def walk(root: Path, parts: Sequence[str], rel: str, *, create: bool = False) -> Iterator[int]:
    """A descriptor of the directory ``root/parts``, reached without following symlinks.

    Args:
        root: the resolved workspace.
        parts: the directory's path below ``root``, already checked.
        rel: the path as reported in errors.
        create: make missing directories (their mode follows the umask).

    Raises:
        ToolError: a component is now a symlink or a file.
        FileNotFoundError: a component is missing (and ``create`` is false).
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
    for name in parts:
        try:
            nxt = _sub(fd, name, create)
        except OSError as exc:
            if exc.errno in SWAPPED:
                raise _swapped(rel) from None
            raise
        finally:
            os.close(fd)
        fd = nxt
    try:
        yield fd
    finally:
        os.close(fd)


def open_in(dir_fd: int, name: str, flags: int, rel: str, mode: int = 0o666) -> int:
    """``os.open`` of ``name`` in ``dir_fd`` that refuses a symlink in its place, and
    anything but a regular file or a directory (see :func:`regular`)."""
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC, mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _swapped(rel) from None
        if exc.errno == errno.ENXIO:  # a fifo opened for writing with no reader, or a socket
            raise _not_a_file(rel, os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode) from None
        raise
    return regular(fd, rel, directory=True)


def regular(fd: int, rel: str, *, directory: bool = False) -> int:
    """``fd`` if it is a regular file with one name (or a directory, when allowed); else it
    is closed and refused.

    Raises:
        ToolError: ``fd`` is a fifo, socket or device, or a file with another hard link.
    """
    st = os.fstat(fd)
    mode = st.st_mode
    if stat.S_ISREG(mode) and st.st_nlink > 1:
        # Checked before the open too (tools.protect); this is the answer for what was opened,
        # should a hard link to what steers the run have taken the checked name meanwhile.
        os.close(fd)
        raise ToolError(f"{rel}: a file with more than one hard link; the file tools refuse it")
    if stat.S_ISREG(mode) or (directory and stat.S_ISDIR(mode)):
        return fd
    os.close(fd)
    raise _not_a_file(rel, mode)


def _not_a_file(rel: str, mode: int) -> ToolError:
    kind = "a fifo" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
    return ToolError(f"{rel}: not a regular file ({kind}); the file tools only open regular files")


def read_capped(f: BinaryIO, rel: str) -> bytes:
    """All of ``f``, refused when it holds more than :data:`MAX_FILE_BYTES` (never read past that)."""
    data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ToolError(f"{rel}: larger than {MAX_FILE_BYTES} bytes; the file tools read files of at most that size")
    return data
