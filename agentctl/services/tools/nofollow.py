"""Opening workspace paths without following a symlink on the way.

Used by the file tools (:mod:`agentctl.services.tools.fs`) once a path has been checked by
:func:`~agentctl.services.tools.fs.resolve_in_workspace`. The check resolves symlinks; the
open then walks the real path from the workspace root one directory descriptor at a time,
with ``O_NOFOLLOW``, and acts on the last name relative to its directory's descriptor. A
directory swapped for a symlink between the check and the open (by a shell command or a
container racing the tool) is refused instead of followed out of the workspace.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ...errors import ToolError

__all__ = ["SWAPPED", "open_in", "walk"]

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
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
    """``os.open`` of ``name`` in ``dir_fd`` that refuses a symlink in its place."""
    try:
        return os.open(name, flags | os.O_NOFOLLOW | _CLOEXEC, mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _swapped(rel) from None
        raise
