"""What steers a run, and so stays out of the agents' reach: run directories, ``.agentctl/``, the plan (and ``.git``).

Called by the file tools (:func:`agentctl.services.tools.fs.resolve_in_workspace`) on every
path, after symlinks are resolved, and by ``docker/run`` to mount these paths read-only
over the workspace. A path inside the workspace is protected when

* one of its components is ``.agentctl`` (any case): the default home of run directories;
* one of its components is ``.git`` (any case): not the run's, but git runs what an agent
  could write there (hooks, ``core.fsmonitor``) as the user, outside any run;
* it is, or is inside, a directory holding ``events.jsonl``: a run directory wherever it
  lives, with its plan versions, checkpoints and control channel;
* it is, or is inside, one of ``ToolContext.protected`` (the plan file, this run's
  directory and control socket, and where the plan's own modules would be imported from:
  :func:`agentctl.plan.code.code_paths`; passed by the CLI);
* it is a file with more than one hard link: another name of it may be any of the above.

The checks run on the real path, so relative paths, absolute paths, ``..`` and symlinks
all end at the same answer.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["RUN_MARKER", "protected_mounts", "protection"]

#: A directory holding this file is a run directory.
RUN_MARKER = "events.jsonl"
_HOME = ".agentctl"
#: A repository's own files: a hook or a config entry (``core.fsmonitor``) written there is a
#: command the user's next ``git status`` runs; a ``.git`` file can point git anywhere.
_GIT = ".git"


def protection(root: Path, real: Path, protected: Iterable[Path]) -> str | None:
    """Why ``real`` (a resolved path inside the resolved workspace ``root``) is out of reach, or None."""
    rel = real.relative_to(root)
    if any(part.casefold() == _HOME for part in rel.parts):
        return f"inside {_HOME}/"
    if any(part.casefold() == _GIT for part in rel.parts):
        return f"inside {_GIT}: git runs commands its config and hooks name"
    for p in protected:
        p = Path(p).resolve()
        if real == p or real.is_relative_to(p):
            return "it steers this run"
    d = real if real.is_dir() else real.parent
    while True:
        if os.path.lexists(d / RUN_MARKER):
            return "inside a run directory"
        if d == root:
            break
        d = d.parent
    try:
        st = os.stat(real)
    except OSError:
        return None
    if not os.path.isdir(real) and st.st_nlink > 1:
        return "a file with more than one hard link"
    return None


def protected_mounts(root: Path, protected: Iterable[Path]) -> list[Path]:
    """The protected paths under the resolved workspace ``root`` that exist: the ones a
    container that mounts the workspace must see read-only. Besides ``.agentctl/`` and
    ``protected``, the workspace is walked (symlinks not followed) for what the file tools
    refuse by name: every ``.git`` (directory or file, any case, with the directory a
    ``gitdir:`` file names when that is inside the workspace) and every run directory."""
    out: list[Path] = []
    for p in (root / _HOME, *protected, *_steering_in(root)):
        real = Path(p).resolve()
        inside = real != root and real.is_relative_to(root)
        if inside and real.exists() and not any(real.is_relative_to(o) for o in out):
            out = [o for o in out if not o.is_relative_to(real)] + [real]
    return out


def _steering_in(root: Path) -> Iterator[Path]:
    """Every ``.git`` and run directory below ``root``, not descending into them (nor into
    ``.agentctl``, which is mounted whole) and not following symlinks."""
    pending = [root]
    while pending:
        d = pending.pop()
        try:
            with os.scandir(d) as it:
                entries = list(it)
        except OSError:
            continue
        if any(e.name == RUN_MARKER for e in entries):
            yield d
            continue
        for e in entries:
            name = e.name.casefold()
            if name == _GIT:
                yield Path(e.path)
                yield from _gitdir_of(Path(e.path))
            elif name != _HOME and e.is_dir(follow_symlinks=False):
                pending.append(Path(e.path))


def _gitdir_of(dot_git: Path) -> Iterator[Path]:
    """The directory a ``.git`` file points git at (``gitdir: PATH``), if it is one."""
    if dot_git.is_symlink() or not dot_git.is_file():
        return
    try:
        with open(dot_git, "rb") as f:
            head = f.read(4096).decode("utf-8", "replace")
    except OSError:
        return
    first = head.splitlines()[0] if head else ""
    if first.startswith("gitdir:"):
        yield dot_git.parent / first.removeprefix("gitdir:").strip()
