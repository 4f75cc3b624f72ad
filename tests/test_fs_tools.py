"""Built-in fs/* and shell/run tools on real temporary directories and real processes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from agentctl.errors import ToolError
from agentctl.services.tools import OUTPUT_CAP, ToolContext, default_registry

try:
    from agentctl.services.locks import LockService
except ImportError:  # pragma: no cover - the lock service is written in parallel
    LockService = None  # type: ignore[assignment,misc]

pytestmark = pytest.mark.anyio

REG = default_registry()


def ctx_for(ws: Path, **kw: Any) -> ToolContext:
    return ToolContext(agent_id="a1", workspace=ws, run_id="r1", **kw)


async def call(ctx: ToolContext, name: str, **args: Any) -> Any:
    return await REG.invoke(name, args, ctx)


async def test_write_read_append_list_edit_round_trip(tmp_path: Path) -> None:
    ctx = ctx_for(tmp_path)
    assert await call(ctx, "fs/write", path="src/app/main.py", content="print('hi')\n") == {
        "path": "src/app/main.py",
        "bytes": 12,
    }
    assert await call(ctx, "fs/read", path="src/app/main.py") == "print('hi')\n"
    assert await call(ctx, "fs/append", path="src/app/main.py", content="x = 1\n") == {"path": "src/app/main.py", "bytes": 6}
    await call(ctx, "fs/edit", path="src/app/main.py", old="'hi'", new="'bye'")
    assert (tmp_path / "src/app/main.py").read_text() == "print('bye')\nx = 1\n"
    await call(ctx, "fs/write", path="README", content="r")
    assert await call(ctx, "fs/list") == ["README", "src/"]
    assert await call(ctx, "fs/list", path="src/app") == ["main.py"]
    # overwriting leaves no temp files behind
    await call(ctx, "fs/write", path="README", content="again")
    assert sorted(os.listdir(tmp_path)) == ["README", "src"]
    assert (tmp_path / "README").read_text() == "again"


@pytest.mark.parametrize(
    "path, message",
    [
        ("../outside.txt", "may not contain '..'"),
        ("a/../../outside.txt", "may not contain '..'"),
        ("/etc/passwd", "must be relative"),
        ("", "invalid path"),
    ],
)
async def test_paths_leaving_the_workspace_are_refused(tmp_path: Path, path: str, message: str) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    ctx = ctx_for(ws)
    for tool, args in (("fs/read", {}), ("fs/write", {"content": "x"})):
        with pytest.raises(ToolError, match=message):
            await call(ctx, tool, path=path, **args)
    assert not (tmp_path / "outside.txt").exists()


async def test_symlink_pointing_outside_is_refused(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key").write_text("s3cret")
    (ws / "link").symlink_to(secret)
    (ws / "filelink").symlink_to(secret / "key")
    ctx = ctx_for(ws)
    with pytest.raises(ToolError, match="outside the workspace"):
        await call(ctx, "fs/read", path="link/key")
    with pytest.raises(ToolError, match="outside the workspace"):
        await call(ctx, "fs/read", path="filelink")
    with pytest.raises(ToolError, match="outside the workspace"):
        await call(ctx, "fs/write", path="link/new", content="x")
    with pytest.raises(ToolError, match="outside the workspace"):
        await call(ctx, "fs/list", path="link")
    assert not (secret / "new").exists()
    # a symlink that stays inside is fine
    (ws / "inner").mkdir()
    (ws / "alias").symlink_to(ws / "inner")
    assert await call(ctx, "fs/write", path="alias/f", content="ok") == {"path": "inner/f", "bytes": 2}


async def test_edit_requires_exactly_one_occurrence(tmp_path: Path) -> None:
    ctx = ctx_for(tmp_path)
    await call(ctx, "fs/write", path="f.txt", content="a b a")
    with pytest.raises(ToolError, match="does not occur"):
        await call(ctx, "fs/edit", path="f.txt", old="zzz", new="y")
    with pytest.raises(ToolError, match="occurs 2 times"):
        await call(ctx, "fs/edit", path="f.txt", old="a", new="y")
    assert (tmp_path / "f.txt").read_text() == "a b a"


async def test_read_and_list_report_missing_paths(tmp_path: Path) -> None:
    ctx = ctx_for(tmp_path)
    with pytest.raises(ToolError, match="no such file"):
        await call(ctx, "fs/read", path="missing.txt")
    with pytest.raises(ToolError, match="no such directory"):
        await call(ctx, "fs/list", path="nodir")


@pytest.mark.skipif(LockService is None, reason="agentctl/services/locks.py not available yet")
async def test_write_takes_and_releases_the_write_lock(tmp_path: Path, recorder: Any) -> None:
    locks = LockService(recorder)
    ctx = ctx_for(tmp_path, locks=locks, lock_wait=0.2)  # the conflict below waits this long
    await call(ctx, "fs/write", path="notes/a.txt", content="x")
    acquired = recorder.of_type("lock/acquired")
    released = recorder.of_type("lock/released")
    assert [(e["agent_id"], e["path"], e["mode"]) for e in acquired] == [("a1", "notes/a.txt", "write")]
    assert [(e["agent_id"], e["path"]) for e in released] == [("a1", "notes/a.txt")]
    assert locks.held_by("a1") == {}

    # the caller already holding the lock is fine (reentrant), and keeps it afterwards
    assert locks.try_acquire("a1", "notes/a.txt", "write").ok
    await call(ctx, "fs/append", path="notes/a.txt", content="y")
    assert locks.held_by("a1") == {"notes/a.txt": "write"}
    locks.release("a1", "notes/a.txt")

    # another agent holding a conflicting lock makes the write fail and leaves the file alone
    assert locks.try_acquire("b2", "notes", "write").ok
    with pytest.raises(ToolError, match="locked by b2"):
        await call(ctx, "fs/write", path="notes/a.txt", content="clobber")
    assert (tmp_path / "notes/a.txt").read_text() == "xy"
    assert locks.held_by("a1") == {}


# ---------------------------------------------------------------- shell


async def test_shell_is_refused_when_disabled(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="disabled"):
        await call(ctx_for(tmp_path), "shell/run", command=f"touch {tmp_path}/ran")
    assert not (tmp_path / "ran").exists()


async def test_shell_runs_in_the_workspace(tmp_path: Path) -> None:
    ctx = ctx_for(tmp_path, shell_enabled=True)
    out = await call(ctx, "shell/run", command="echo hello; pwd; echo oops >&2; exit 3")
    assert out == {
        "exit_code": 3,
        "stdout": f"hello\n{tmp_path.resolve()}\n",
        "stderr": "oops\n",
        "timed_out": False,
    }


async def test_shell_timeout_kills_the_command(tmp_path: Path) -> None:
    ctx = ctx_for(tmp_path, shell_enabled=True)
    out = await call(ctx, "shell/run", command="echo started; sleep 10; echo never", timeout=0.3)
    assert out["timed_out"] is True
    assert out["exit_code"] != 0
    assert out["stdout"] == "started\n"


async def test_shell_output_is_capped(tmp_path: Path) -> None:
    ctx = ctx_for(tmp_path, shell_enabled=True)
    size = OUTPUT_CAP + 1000
    out = await call(ctx, "shell/run", command=f"head -c {size} /dev/zero | tr '\\0' a")
    assert out["exit_code"] == 0
    assert out["stdout"].startswith("a" * OUTPUT_CAP + "\n[output truncated: 1000 more bytes")
    assert out["stderr"] == ""
