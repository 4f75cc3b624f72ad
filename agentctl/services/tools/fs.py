"""Built-in file tools: ``fs/read``, ``fs/write``, ``fs/append``, ``fs/list``, ``fs/edit``.

Registered by :func:`~agentctl.services.tools.builtins.default_registry`; run by the work
plane. Every path is relative to ``ctx.workspace`` and confined to it: absolute paths and
``..`` are refused, symlinks are resolved so that one pointing outside is refused too, and
what steers the run is refused as well (:mod:`agentctl.services.tools.protect`); the file is
then opened along the checked path without following symlinks, and only if it is a
regular file of at most ``MAX_FILE_BYTES`` to read (:mod:`agentctl.services.tools.nofollow`). Writers take the path's write lock themselves
when ``ctx.locks`` is set (reentrant, so a caller that already holds it is fine) and give it
back afterwards. A contended lock is waited for, up to
``ctx.lock_wait`` seconds (the plan's ``settings.lock_wait``), before the call fails. File
I/O runs in a worker thread; the lock calls stay on the event loop, where the lock service lives.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import anyio

from ...errors import ToolError
from .fs_recover import append_record, check_append, check_replace, replace_record
from .nofollow import open_in, read_capped, walk
from .protect import protection
from .registry import Recovered, ToolContext, ToolRegistry

__all__ = ["register_fs_tools", "resolve_in_workspace"]


def resolve_in_workspace(ctx: ToolContext, path: str) -> tuple[Path, str]:
    """The real path of ``path`` inside the workspace, and its normalised relative form.

    Raises:
        ToolError: for an absolute path, a ``..`` component, a path whose real
            location (after following symlinks) is outside the workspace, or one that
            steers the run (a run directory, ``.agentctl/``, the plan file).
    """
    if not path or "\x00" in path or not _utf8(path):
        # A lone surrogate (JSON's "\udcff") would reach the disk as a name of bytes that are no UTF-8.
        raise ToolError(f"invalid path {path!r}")
    if PurePosixPath(path).is_absolute() or PureWindowsPath(path).is_absolute() or path.startswith("~"):
        raise ToolError(f"path {path!r} must be relative to the workspace")
    if ".." in PurePosixPath(path.replace("\\", "/")).parts:
        raise ToolError(f"path {path!r} may not contain '..'")
    root = Path(ctx.workspace).resolve()
    try:
        real = (root / path).resolve()
    except RuntimeError:  # a symlink loop
        raise ToolError(f"path {path!r} is a symlink loop") from None
    if not real.is_relative_to(root):
        raise ToolError(f"path {path!r} resolves outside the workspace")
    why = protection(root, real, ctx.protected)
    if why is not None:
        raise ToolError(f"path {path!r} is protected ({why}): agents may not touch what steers the run")
    rel = real.relative_to(root).as_posix()
    return real, rel


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _root(ctx: ToolContext) -> Path:
    return Path(ctx.workspace).resolve()


@asynccontextmanager
async def _write_lock(ctx: ToolContext, rel: str) -> AsyncIterator[None]:
    """Hold the write lock on ``rel`` for the duration, when the run has a lock service."""
    locks = ctx.locks
    if locks is None:
        yield
        return
    result = await locks.acquire(ctx.agent_id, rel, "write", timeout=ctx.lock_wait, by="tool")
    if not getattr(result, "ok", False):
        raise ToolError(f"{rel}: locked by {_holder(result)} (waited {ctx.lock_wait:g}s)")
    try:
        yield
    finally:
        if rel in locks.held_by(ctx.agent_id):  # a shutdown that ended the agent released it already
            locks.release(ctx.agent_id, rel, by="tool")


def _holder(result: Any) -> str:
    holder = getattr(result, "holder", None)
    if holder is None:
        holder = getattr(getattr(result, "conflict", None), "holder", None)
    return str(holder) if holder is not None else "another agent"


def _split(rel: str) -> tuple[list[str], str]:
    """``rel``'s parent directories and last name (``rel`` is never the workspace itself here)."""
    *parent, name = rel.split("/")
    return parent, name


def _atomic_write(root: Path, rel: str, data: bytes) -> None:
    """Replace ``rel`` by rename; a new file gets the umask's mode, an existing one keeps its own."""
    parent, name = _split(rel)
    with walk(root, parent, rel, create=True) as d:
        try:
            st = os.stat(name, dir_fd=d, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise ToolError(f"{rel}: is a directory")
        tmp = f".{name}.{secrets.token_hex(4)}.tmp"
        # 0o666 through the umask, as open() would; mkstemp's 0o600 would stick to every file written.
        fd = open_in(d, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, rel)
        try:
            with os.fdopen(fd, "wb") as f:
                if st is not None and stat.S_ISREG(st.st_mode):
                    os.fchmod(f.fileno(), stat.S_IMODE(st.st_mode))
                f.write(data)
            os.replace(tmp, name, src_dir_fd=d, dst_dir_fd=d)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=d)
            raise


def _read_text(root: Path, rel: str) -> str:
    if rel == ".":
        raise ToolError(f"{rel}: is a directory")
    parent, name = _split(rel)
    try:
        with walk(root, parent, rel) as d, os.fdopen(open_in(d, name, os.O_RDONLY, rel), "rb") as f:
            if stat.S_ISDIR(os.fstat(f.fileno()).st_mode):
                raise ToolError(f"{rel}: is a directory")
            return read_capped(f, rel).decode("utf-8", errors="replace")
    except FileNotFoundError:
        raise ToolError(f"{rel}: no such file") from None


def _append(root: Path, rel: str, data: bytes) -> None:
    parent, name = _split(rel)
    with walk(root, parent, rel, create=True) as d, os.fdopen(
        open_in(d, name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, rel), "ab"
    ) as f:
        f.write(data)


def _list(root: Path, rel: str) -> list[str]:
    target = root / rel
    if not target.exists():
        raise ToolError(f"{rel}: no such directory")
    if not target.is_dir():
        raise ToolError(f"{rel}: not a directory")
    with walk(root, [] if rel == "." else rel.split("/"), rel) as d, os.scandir(d) as entries:
        return sorted(_listed(root, target, e) for e in entries)


def _listed(root: Path, where: Path, entry: os.DirEntry[str]) -> str:
    """An entry's name, with '/' for a directory. A symlink gets it only when it leads to a
    directory inside the workspace: a link out (or a dangling or looping one) looks the same
    whatever it points to, so listing tells nothing about what is outside."""
    if not entry.is_symlink():
        return entry.name + "/" if entry.is_dir(follow_symlinks=False) else entry.name
    try:
        real = (where / entry.name).resolve(strict=True)
    except (OSError, RuntimeError):  # dangling, or a loop
        return entry.name
    return entry.name + "/" if real.is_relative_to(root) and real.is_dir() else entry.name


def _edited(root: Path, rel: str, old: str, new: str) -> tuple[bytes, dict[str, Any]]:
    """The file's new content after the edit, and the record to write ahead of it."""
    text = _read_text(root, rel)
    count = text.count(old) if old else 0
    if count != 1:
        where = "does not occur" if count == 0 else f"occurs {count} times"
        raise ToolError(f"{rel}: the text to replace {where}; it must occur exactly once (0 or N occurrences refused)")
    data = text.replace(old, new, 1).encode("utf-8")
    return data, replace_record(root / rel, data)


async def fs_read(ctx: ToolContext, path: str) -> str:
    """Read a text file from the workspace."""
    _, rel = resolve_in_workspace(ctx, path)
    return await anyio.to_thread.run_sync(_read_text, _root(ctx), rel)


async def fs_write(ctx: ToolContext, path: str, content: str) -> dict[str, Any]:
    """Write a text file in the workspace (replacing it), creating parent directories."""
    return await _store(ctx, path, content, _atomic_write, replace_record)


async def fs_append(ctx: ToolContext, path: str, content: str) -> dict[str, Any]:
    """Append text to a file in the workspace, creating it if missing."""
    return await _store(ctx, path, content, _append, lambda target, _: append_record(target))


async def _store(
    ctx: ToolContext, path: str, content: str, writer: Callable[[Path, str, bytes], None],
    record: Callable[[Path, bytes], Any],
) -> dict[str, Any]:
    """Put ``content`` into a workspace file with ``writer``, under the path's write lock,
    after writing ahead the ``record`` crash resume checks (:mod:`.fs_recover`)."""
    target, rel = resolve_in_workspace(ctx, path)
    if target.is_dir():
        raise ToolError(f"{rel}: is a directory")
    if target.exists() and not target.is_file():
        raise ToolError(f"{rel}: not a regular file; the file tools only open regular files")
    data = content.encode("utf-8")
    async with _write_lock(ctx, rel):
        await ctx.write_ahead(await anyio.to_thread.run_sync(record, target, data))
        await anyio.to_thread.run_sync(writer, _root(ctx), rel, data)
    return {"path": rel, "bytes": len(data)}


async def fs_list(ctx: ToolContext, path: str = ".") -> list[str]:
    """List a workspace directory: sorted names, directories ending with '/'."""
    _, rel = resolve_in_workspace(ctx, path)
    return await anyio.to_thread.run_sync(_list, _root(ctx), rel)


async def fs_edit(ctx: ToolContext, path: str, old: str, new: str) -> dict[str, Any]:
    """Replace a snippet of a workspace file; the snippet must occur exactly once."""
    _, rel = resolve_in_workspace(ctx, path)
    async with _write_lock(ctx, rel):
        root = _root(ctx)
        data, record = await anyio.to_thread.run_sync(_edited, root, rel, old, new)
        await ctx.write_ahead(record)
        await anyio.to_thread.run_sync(_atomic_write, root, rel, data)
    return {"path": rel, "bytes": len(data)}


def _recover_append(ctx: ToolContext, arguments: Mapping[str, Any], record: Any) -> Recovered:
    target, rel = resolve_in_workspace(ctx, str(arguments.get("path")))
    return check_append(target, rel, str(arguments.get("content")).encode("utf-8"), record)


def _recover_replace(ctx: ToolContext, arguments: Mapping[str, Any], record: Any) -> Recovered:
    target, rel = resolve_in_workspace(ctx, str(arguments.get("path")))
    return check_replace(target, rel, record)


def _rerun(ctx: ToolContext, arguments: Mapping[str, Any], record: Any) -> Recovered:
    """A reader has no effect to check: running it again is the answer."""
    return Recovered(False)


def register_fs_tools(registry: ToolRegistry) -> None:
    """Add the ``fs/*`` tools to ``registry``, each with its crash ``recover`` check."""
    registry.tool("fs/read", idempotent=True, recover=_rerun)(fs_read)
    registry.tool("fs/write", idempotent=True, recover=_recover_replace)(fs_write)
    registry.tool("fs/append", recover=_recover_append)(fs_append)
    registry.tool("fs/list", idempotent=True, recover=_rerun)(fs_list)
    registry.tool("fs/edit", recover=_recover_replace)(fs_edit)
