"""What steers a run is out of the file tools' reach, whatever path, symlink or hard link names it.

A workspace laid out as ``agentctl run`` leaves it: the plan file, ``.agentctl/runs/<id>``
and a run directory of an earlier run under ``runs/``, each with its events, plan versions,
checkpoints and control file. Every file tool, through every name, is refused; files the
run does not steer stay writable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from agentctl.errors import ToolError
from agentctl.services.tools import ToolContext, default_registry
from agentctl.services.tools.docker import workspace_mounts

pytestmark = pytest.mark.anyio

REG = default_registry()
PLAN = "name: p\ntasks: [{id: t, agent: script, steps: [{done: ok}]}]\n"


def _run_dir(d: Path) -> None:
    (d / "checkpoints").mkdir(parents=True)
    (d / "events.jsonl").write_text('{"seq":1,"type":"run/started"}\n')
    (d / "plan.v1.yaml").write_text(PLAN)
    (d / "checkpoints" / "000000001.json").write_text("{}")
    (d / "control.jsonl").write_text("")
    (d / "control.offset").write_text("0")


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "plan.yaml").write_text(PLAN)
    _run_dir(ws / ".agentctl" / "runs" / "r1")
    _run_dir(ws / "runs" / "r0")
    (ws / "planlink").symlink_to(ws / "plan.yaml")
    (ws / "rel-planlink").symlink_to("plan.yaml")
    (ws / "homelink").symlink_to(ws / ".agentctl")
    (ws / "runlink").symlink_to(Path(".agentctl") / "runs" / "r1")
    (ws / "oldrunlink").symlink_to(ws / "runs" / "r0")
    (ws / "eventslink").symlink_to(ws / "runs" / "r0" / "events.jsonl")
    os.link(ws / "plan.yaml", ws / "planhard")
    os.link(ws / "runs" / "r0" / "events.jsonl", ws / "eventshard")
    return ws


def ctx_for(ws: Path) -> ToolContext:
    return ToolContext(agent_id="a1", workspace=ws, run_id="r1",
                       protected=(ws / "plan.yaml", ws / ".agentctl" / "runs" / "r1"))


TARGETS = {
    "plan file": ["plan.yaml", "./plan.yaml", "planlink", "rel-planlink", "planhard", "{ws}/plan.yaml"],
    "plan versions": [".agentctl/runs/r1/plan.v1.yaml", "runs/r0/plan.v1.yaml", "runlink/plan.v1.yaml",
                      "oldrunlink/plan.v1.yaml", "{ws}/.agentctl/runs/r1/plan.v1.yaml", "runs/r0/plan.v2.yaml"],
    "run dirs": [".agentctl", ".agentctl/runs", ".agentctl/runs/r1", "runs/r0", "homelink", "runlink", "oldrunlink",
                 ".agentctl/new.txt", "runs/r0/new.txt", "runlink/new.txt", ".AGENTCTL/runs/x", "homelink/runs/r2/x",
                 "{ws}/.agentctl/runs/r1"],
    "events": [".agentctl/runs/r1/events.jsonl", "runs/r0/events.jsonl", "eventslink", "eventshard",
               "runlink/events.jsonl", "{ws}/runs/r0/events.jsonl"],
    "checkpoints": [".agentctl/runs/r1/checkpoints/000000001.json", "runs/r0/checkpoints/000000001.json",
                    "runlink/checkpoints/000000002.json", "oldrunlink/checkpoints"],
    "control": [".agentctl/runs/r1/control.jsonl", ".agentctl/runs/r1/control.offset", "runs/r0/control.jsonl",
                "runlink/control.jsonl", "runlink/control.sock", "{ws}/.agentctl/runs/r1/control.jsonl"],
}


def _calls(path: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("fs/read", {"path": path}),
        ("fs/write", {"path": path, "content": "name: injected\n"}),
        ("fs/append", {"path": path, "content": "garbage\n"}),
        ("fs/edit", {"path": path, "old": "name: p", "new": "name: injected"}),
        ("fs/list", {"path": path}),
    ]


def _snapshot(root: Path) -> dict[str, Any]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() and not p.is_symlink() else os.readlink(p)
                                       if p.is_symlink() else "dir") for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("what", sorted(TARGETS))
async def test_every_tool_is_refused_on_what_steers_the_run(ws: Path, what: str) -> None:
    ctx = ctx_for(ws)
    before = _snapshot(ws)
    for target in TARGETS[what]:
        path = target.format(ws=ws)
        for tool, args in _calls(path):
            with pytest.raises(ToolError, match="protected|must be relative"):
                await REG.invoke(tool, args, ctx)
    assert _snapshot(ws) == before


async def test_the_refusal_says_why(ws: Path) -> None:
    ctx = ctx_for(ws)
    with pytest.raises(ToolError, match=r"'planlink' is protected \(it steers this run\)"):
        await REG.invoke("fs/write", {"path": "planlink", "content": "x"}, ctx)
    with pytest.raises(ToolError, match=r"inside a run directory"):
        await REG.invoke("fs/append", {"path": "runs/r0/events.jsonl", "content": "x"}, ctx)
    with pytest.raises(ToolError, match=r"inside \.agentctl/"):
        await REG.invoke("fs/read", {"path": "homelink/runs/r1/events.jsonl"}, ctx)
    with pytest.raises(ToolError, match=r"more than one hard link"):
        await REG.invoke("fs/append", {"path": "eventshard", "content": "x"}, ctx)


async def test_what_does_not_steer_the_run_stays_open(ws: Path) -> None:
    ctx = ctx_for(ws)
    await REG.invoke("fs/write", {"path": "plans/next.yaml", "content": PLAN}, ctx)
    await REG.invoke("fs/write", {"path": "notes/events.md", "content": "not a log"}, ctx)
    await REG.invoke("fs/append", {"path": "runs/notes.txt", "content": "beside a run dir"}, ctx)
    assert await REG.invoke("fs/read", {"path": "plans/next.yaml"}, ctx) == PLAN
    listing = await REG.invoke("fs/list", {"path": "."}, ctx)
    assert ".agentctl/" in listing and "plan.yaml" in listing
    assert await REG.invoke("fs/list", {"path": "runs"}, ctx) == ["notes.txt", "r0/"]


def test_containers_see_what_steers_the_run_read_only(ws: Path) -> None:
    ctx = ctx_for(ws)
    args = workspace_mounts(ctx)
    root = ws.resolve()
    assert args == ["-v", f"{root}:/workspace",
                    "-v", f"{root}/.agentctl:/workspace/.agentctl:ro",
                    "-v", f"{root}/plan.yaml:/workspace/plan.yaml:ro",
                    "-v", f"{root}/runs/r0:/workspace/runs/r0:ro"]


async def test_a_control_socket_outside_the_run_directory_is_protected_by_its_path(tmp_path: Path) -> None:
    import socket

    ws = tmp_path
    (ws / "sockets").mkdir()
    path = ws / "sockets" / "r1.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        ctx = ToolContext(agent_id="a1", workspace=ws, run_id="r1", protected=(path,))
        for tool, args in _calls("sockets/r1.sock"):
            with pytest.raises(ToolError, match="protected"):
                await REG.invoke(tool, args, ctx)
        assert path.is_socket()
        await REG.invoke("fs/write", {"path": "sockets/notes.txt", "content": "x"}, ctx)
