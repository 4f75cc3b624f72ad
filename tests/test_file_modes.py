"""File modes the fs tools leave, and runs on read-only directories: one line, exit 2, no traceback."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentctl.cli.main import app
from agentctl.services.tools import ToolContext, default_registry

REG = default_registry()
PLAN = "name: p\ntasks: [{id: t, agent: script, steps: [{write: {path: out.txt, content: hi}}]}]\n"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.anyio
@pytest.mark.usefixtures("umask")
async def test_new_files_follow_the_umask_and_existing_ones_keep_their_mode(tmp_path: Path) -> None:
    ctx = ToolContext(agent_id="a", workspace=tmp_path, run_id="r")
    await REG.invoke("fs/write", {"path": "new/file.txt", "content": "x"}, ctx)
    await REG.invoke("fs/append", {"path": "log.txt", "content": "x"}, ctx)
    assert mode(tmp_path / "new" / "file.txt") == 0o644 and mode(tmp_path / "log.txt") == 0o644
    assert mode(tmp_path / "new") == 0o755
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\necho old\n")
    script.chmod(0o755)
    await REG.invoke("fs/write", {"path": "run.sh", "content": "#!/bin/sh\necho new\n"}, ctx)
    assert mode(script) == 0o755
    await REG.invoke("fs/edit", {"path": "run.sh", "old": "new", "new": "edited"}, ctx)
    assert mode(script) == 0o755 and script.read_text() == "#!/bin/sh\necho edited\n"
    private = tmp_path / "private.txt"
    private.write_text("p")
    private.chmod(0o600)
    await REG.invoke("fs/write", {"path": "private.txt", "content": "q"}, ctx)
    assert mode(private) == 0o600
    os.umask(0o077)
    await REG.invoke("fs/write", {"path": "tight.txt", "content": "x"}, ctx)
    assert mode(tmp_path / "tight.txt") == 0o600
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody can write in: a read-only tmpfs as root (who ignores modes), else mode 0555."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0:
        ro.chmod(0o555)
        yield ro
        ro.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True).returncode:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        yield ro
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)


def _run(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(app, ["run", *args, "--no-ui", "--no-watch-plan"])
    return result.exit_code, result.output


@pytest.mark.parametrize("where", ["cwd", "run-dir", "workspace"])
def test_a_read_only_directory_is_one_line_and_exit_2(tmp_path: Path, read_only: Path, monkeypatch, where: str) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    ok_dir = tmp_path / "rw"
    ok_dir.mkdir()
    args = {
        "cwd": ([str(plan)], read_only),
        "run-dir": ([str(plan), "--run-dir", str(read_only / "run")], ok_dir),
        "workspace": ([str(plan), "--workspace", str(read_only), "--run-dir", str(ok_dir / "run")], ok_dir),
    }[where]
    code, output = _run(*args, monkeypatch)
    assert code == 2, output
    assert "Traceback" not in output and "Error" not in output.replace("error:", "")
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot write in" in lines[0] and str(read_only) in lines[0].replace("\n", "")
    assert not (ok_dir / "run" / "events.jsonl").exists()
