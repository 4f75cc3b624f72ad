"""Hostile paths against the fs/* tools: every way out of the workspace, and a symlink race.

Each attempt runs through every file tool; whatever a tool does (refuse, or act inside the
workspace), nothing outside the workspace is read, written or created.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentctl.errors import ToolError
from agentctl.services.tools import ToolContext, default_registry

pytestmark = pytest.mark.anyio

REG = default_registry()
SECRET = "s3cret-outside-the-workspace"


def _links(ws: Path, out: Path) -> None:
    (ws / "dirlink").symlink_to(out)
    (ws / "filelink").symlink_to(out / "key")
    (ws / "rellink").symlink_to(Path("..") / "outside")
    (ws / "dangling").symlink_to(out / "not-yet")
    (ws / "chain1").symlink_to(ws / "chain2")
    (ws / "chain2").symlink_to(out)
    (ws / "rootlink").symlink_to("/")
    (ws / "proclink").symlink_to("/proc/self/cwd")
    (ws / "inner").mkdir()
    (ws / "inner" / "up").symlink_to("../../outside/key")


ATTEMPTS: list[str] = [
    "../outside/key",
    "a/../../outside/key",
    "./../outside/key",
    "inner/./../../outside/key",
    "..\\outside\\key",
    "/etc/passwd",
    "//etc/passwd",
    "/proc/self/root/etc/passwd",
    "~/.bashrc",
    "~root/.bashrc",
    "C:\\Windows\\win.ini",
    "\\\\server\\share\\x",
    "dirlink/key",
    "dirlink/new-file",
    "dirlink",
    "filelink",
    "rellink/key",
    "dangling",
    "chain1/key",
    "rootlink/etc/passwd",
    "proclink/outside-via-cwd",
    "inner/up",
    "dirlink/../outside/key",
    "a\x00b",
    "x" * 5000,
    "/".join(["d"] * 3000),
    "\u2024\u2024/outside/key",  # one-dot leaders, not dots
    "\uff0e\uff0e/outside/key",  # fullwidth full stops
    "dirlink/",
]


def _tools(path: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("fs/read", {"path": path}),
        ("fs/write", {"path": path, "content": "pwned"}),
        ("fs/append", {"path": path, "content": "pwned"}),
        ("fs/edit", {"path": path, "old": SECRET, "new": "pwned"}),
        ("fs/list", {"path": path}),
    ]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_suite_holds_29_attempts() -> None:
    assert len(ATTEMPTS) == 29 and len(set(ATTEMPTS)) == 29


@pytest.mark.parametrize("path", ATTEMPTS, ids=range(len(ATTEMPTS)))
async def test_an_escape_attempt_reads_and_writes_nothing_outside(tmp_path: Path, path: str, monkeypatch) -> None:
    ws, out = tmp_path / "ws", tmp_path / "outside"
    ws.mkdir()
    out.mkdir()
    (out / "key").write_text(SECRET)
    _links(ws, out)
    monkeypatch.chdir(tmp_path)  # where /proc/self/cwd leads
    before = _snapshot(out)
    ctx = ToolContext(agent_id="a1", workspace=ws, run_id="r1")
    for tool, args in _tools(path):
        try:
            value = await REG.invoke(tool, args, ctx)
        except (ToolError, OSError):
            continue
        assert SECRET not in repr(value), (tool, path)
    assert _snapshot(out) == before
    assert sorted(p.name for p in out.iterdir()) == ["key"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside", "ws"]


async def test_a_link_out_is_listed_the_same_whatever_it_points_to(tmp_path: Path) -> None:
    """``fs/list`` followed symlinks to mark directories: a link out showed ``name/`` when
    its target outside was a directory and ``name`` otherwise (a file, nothing). Now every
    link out, dangling or looping link is listed by its name alone, whatever is outside;
    only a link to a directory inside keeps its ``/``."""
    ws, out = tmp_path / "ws", tmp_path / "outside"
    (ws / "inner").mkdir(parents=True)
    out.mkdir()
    (ws / "out").symlink_to(out / "target")
    (ws / "chain").symlink_to("out")
    (ws / "root").symlink_to("/")
    (ws / "toinner").symlink_to("inner")
    (ws / "loop1").symlink_to("loop2")
    (ws / "loop2").symlink_to("loop1")
    ctx = ToolContext(agent_id="a1", workspace=ws, run_id="r1")
    listings = []
    for make in (lambda t: t.mkdir(), lambda t: t.write_text(SECRET), lambda t: None, lambda t: os.mkfifo(t)):
        target = out / "target"
        shutil.rmtree(target, ignore_errors=True)
        target.unlink(missing_ok=True)
        make(target)
        listings.append(await REG.invoke("fs/list", {"path": "."}, ctx))
    assert listings[0] == ["chain", "inner/", "loop1", "loop2", "out", "root", "toinner/"]
    assert all(listing == listings[0] for listing in listings), listings


@pytest.mark.parametrize("path", ["loop1", "loop1/x", "self", "dir/self/x"])
async def test_a_symlink_loop_is_refused_by_every_tool_in_one_line(tmp_path: Path, path: str) -> None:
    (tmp_path / "loop1").symlink_to("loop2")
    (tmp_path / "loop2").symlink_to("loop1")
    (tmp_path / "self").symlink_to("self")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "self").symlink_to("self")
    ctx = ToolContext(agent_id="a1", workspace=tmp_path, run_id="r1")
    for tool, args in _tools(path):
        with pytest.raises(ToolError, match="symlink"):
            await REG.invoke(tool, args, ctx)


async def test_a_path_that_is_no_utf8_is_refused_and_nothing_is_made(tmp_path: Path) -> None:
    """JSON can spell a lone surrogate (``"\\udcff"``); Python would write it to the disk as
    the byte 0xff, a name no UTF-8 reader can show."""
    ctx = ToolContext(agent_id="a1", workspace=tmp_path, run_id="r1")
    for tool, args in _tools("b\udcff") + _tools("d\ud800/x"):
        with pytest.raises(ToolError, match="invalid path"):
            await REG.invoke(tool, args, ctx)
    assert os.listdir(os.fsencode(tmp_path)) == []


async def _race(swap: Callable[[int], None], calls: list[Callable[[], Any]],
                refused: tuple[type[BaseException], ...], forbidden: tuple[str, ...]) -> None:
    """Make ``calls`` in turn while a thread runs ``swap(n)`` for n = 0, 1, 2, ...: no call's
    result may contain a ``forbidden`` text, and the race must really happen, however slowly
    a loaded machine schedules the thread: at least 1,500 calls and until 100 swaps (bounded
    at 150,000 calls, never a hang)."""
    stop = threading.Event()
    swaps = 0

    def racer() -> None:
        nonlocal swaps
        while not stop.is_set():
            swap(swaps)
            swaps += 1

    thread = threading.Thread(target=racer, daemon=True)
    thread.start()
    try:
        i = 0
        while (i < 1500 or swaps <= 100) and i < 150_000:
            i += 1
            try:
                value = await calls[i % len(calls)]()
            except refused:
                continue
            assert not any(text in repr(value) for text in forbidden)
    finally:
        stop.set()
        thread.join()
    assert swaps > 100


async def test_a_symlink_swapped_in_a_loop_never_lets_a_call_through(tmp_path: Path) -> None:
    """A racer flips ``swap`` between a directory inside and one outside while agents read
    and write through it: no read returns the outside file, no write lands outside."""
    ws, out = tmp_path / "ws", tmp_path / "outside"
    (ws / "inside").mkdir(parents=True)
    out.mkdir()
    (ws / "inside" / "f").write_text("inside")
    (out / "f").write_text(SECRET)
    (ws / "swap").symlink_to(ws / "inside")
    tmp = ws / ".swap.tmp"
    targets = (out, ws / "inside")

    def swap(n: int) -> None:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(targets[n % 2])
        os.replace(tmp, ws / "swap")

    ctx = ToolContext(agent_id="a1", workspace=ws, run_id="r1")
    calls: list[Callable[[], Any]] = [
        lambda: REG.invoke("fs/read", {"path": "swap/f"}, ctx),
        lambda: REG.invoke("fs/write", {"path": "swap/new", "content": "pwned"}, ctx),
        lambda: REG.invoke("fs/append", {"path": "swap/f", "content": "+"}, ctx),
    ]
    await _race(swap, calls, (ToolError,), (SECRET,))
    assert sorted(p.name for p in out.iterdir()) == ["f"] and (out / "f").read_text() == SECRET


async def test_a_directory_swapped_for_a_symlink_mid_call_never_lets_a_call_through(tmp_path: Path) -> None:
    """A racer (as a shell command or a container could) moves the real directory ``d`` away
    and puts a symlink to outside in its place, then back, in a loop: a call whose path was
    checked while ``d`` was real must not follow the symlink when it opens the file."""
    ws, out = tmp_path / "ws", tmp_path / "outside"
    (ws / "d").mkdir(parents=True)
    out.mkdir()
    (ws / "d" / "f").write_text("inside")
    (out / "f").write_text(SECRET)
    d, moved = ws / "d", ws / "d.real"

    def swap(n: int) -> None:
        os.rename(d, moved)
        try:
            d.symlink_to(out)
            d.unlink()
        except OSError:  # a write made d anew while it was missing
            pass
        while True:
            try:
                os.rename(moved, d)
                break
            except OSError:
                d.unlink() if d.is_symlink() else shutil.rmtree(d, ignore_errors=True)

    ctx = ToolContext(agent_id="a1", workspace=ws, run_id="r1")
    calls: list[Callable[[], Any]] = [
        lambda: REG.invoke("fs/read", {"path": "d/f"}, ctx),
        lambda: REG.invoke("fs/write", {"path": "d/new", "content": "pwned"}, ctx),
        lambda: REG.invoke("fs/append", {"path": "d/f", "content": "+"}, ctx),
        lambda: REG.invoke("fs/list", {"path": "d"}, ctx),
        lambda: REG.invoke("fs/edit", {"path": "d/f", "old": "inside", "new": "inside"}, ctx),
    ]
    await _race(swap, calls, (ToolError, OSError), (SECRET, "outside"))
    assert sorted(p.name for p in out.iterdir()) == ["f"] and (out / "f").read_text() == SECRET


@pytest.mark.slow
async def test_a_hard_link_swapped_in_for_a_checked_file_is_never_written_through(tmp_path: Path) -> None:
    """A racer (a command, say) turns ``x`` into a hard link to the plan and back into a file
    of its own, in a loop, while agents append to, read and edit ``x``: the check before the
    open may see the plain file, but what was opened is checked again, so the plan never
    changes and no read returns it."""
    ws = tmp_path / "ws"
    ws.mkdir()
    plan = ws / "plan.yaml"
    plan.write_text(f"name: {SECRET}\n")
    x, tmp = ws / "x", ws / ".x.tmp"
    x.write_text("own\n")

    def swap(n: int) -> None:
        tmp.unlink(missing_ok=True)
        if n % 2:
            os.link(plan, tmp)
        else:
            tmp.write_text("own\n")
        os.replace(tmp, x)

    ctx = ToolContext(agent_id="a1", workspace=ws, run_id="r1", protected=(plan,))
    calls: list[Callable[[], Any]] = [
        lambda: REG.invoke("fs/append", {"path": "x", "content": "pwned\n"}, ctx),
        lambda: REG.invoke("fs/read", {"path": "x"}, ctx),
        lambda: REG.invoke("fs/edit", {"path": "x", "old": "own", "new": "own"}, ctx),
    ]
    await _race(swap, calls, (ToolError, OSError), (SECRET,))
    assert plan.read_text() == f"name: {SECRET}\n"
