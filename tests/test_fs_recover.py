"""Exactly-once fs tools: the record written ahead and the check resume makes, on real files."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from test_resume_guarantees import resume, start_run, write_plan

from agentctl.events.reader import read_events
from agentctl.services.tools import Recovered, ToolContext, default_registry


def recorded_call(ws: Path, name: str, arguments: dict) -> tuple[object, list]:
    """Run a tool as the work plane would, keeping what it wrote ahead."""
    records: list = []

    async def prepared(record: object) -> None:
        records.append(record)

    ctx = ToolContext(agent_id="a", workspace=ws, run_id="r", prepared=prepared)
    tools = default_registry()
    value = anyio.run(tools.invoke, name, arguments, ctx)
    return value, records


def check(ws: Path, name: str, arguments: dict, record: object) -> Recovered:
    recover = default_registry().get(name).recover
    assert recover is not None
    return recover(ToolContext(agent_id="a", workspace=ws, run_id="r"), arguments, record)


def test_an_append_is_found_applied_not_applied_or_cut_back(tmp_path: Path) -> None:
    target = tmp_path / "log.txt"
    target.write_bytes(b"one\n")
    args = {"path": "log.txt", "content": "two\n"}
    value, [record] = recorded_call(tmp_path, "fs/append", args)
    assert check(tmp_path, "fs/append", args, record) == Recovered(True, value)
    target.write_bytes(b"one\n")  # as if killed before the write
    assert check(tmp_path, "fs/append", args, record) == Recovered(False)
    target.write_bytes(b"one\ntw")  # killed in the middle of it: cut back, run again
    assert check(tmp_path, "fs/append", args, record) == Recovered(False)
    assert target.read_bytes() == b"one\n"
    target.write_bytes(b"ONE\ntwo\n")  # rewritten by something outside the run
    assert check(tmp_path, "fs/append", args, record).applied is None
    # Never wrote ahead: it never touched the file.
    assert check(tmp_path, "fs/append", args, None) == Recovered(False)


def test_an_append_that_created_its_file_is_undone_when_cut_short(tmp_path: Path) -> None:
    args = {"path": "new/log.txt", "content": "first\n"}
    value, [record] = recorded_call(tmp_path, "fs/append", args)
    assert record == {"size": -1, "tail": None}
    assert check(tmp_path, "fs/append", args, record) == Recovered(True, value)
    (tmp_path / "new" / "log.txt").write_bytes(b"fir")
    assert check(tmp_path, "fs/append", args, record) == Recovered(False)
    assert not (tmp_path / "new" / "log.txt").exists()


@pytest.mark.parametrize("name", ["fs/write", "fs/edit"])
def test_a_replacement_is_told_by_the_hash_before_and_after(tmp_path: Path, name: str) -> None:
    target = tmp_path / "f.txt"
    target.write_text("alpha beta\n")
    args = {"path": "f.txt", "content": "gamma\n"} if name == "fs/write" else {"path": "f.txt", "old": "beta", "new": "delta"}
    value, [record] = recorded_call(tmp_path, name, args)
    after = target.read_text()
    assert check(tmp_path, name, args, record) == Recovered(True, value)
    target.write_text("alpha beta\n")
    leftover = tmp_path / ".f.txt.x1y2.tmp"
    leftover.write_text("half")  # what a write killed before its rename leaves
    assert check(tmp_path, name, args, record) == Recovered(False)
    assert not leftover.exists()
    target.write_text("something else\n")
    assert check(tmp_path, name, args, record).applied is None
    assert after != "alpha beta\n"


APPENDS = """\
name: appends
tasks:
  - id: appender
    agent: script
    restart: temporary
    steps:
""" + "".join(f"      - append: {{path: out/log.txt, content: \"line-{n}\\n\"}}\n" for n in range(1, 5)) + """\
      - call: {tool: fs/edit, args: {path: out/log.txt, old: "line-2", new: "LINE-2"}}
      - write: {path: out/w.txt, content: "written\\n"}
"""


@pytest.mark.parametrize("fault", ["kill@tool/prepared#3", "kill@tool/result#3", "kill@tool/prepared#5",
                                   "kill@tool/result#5", "kill@tool/result#6"])
def test_an_fs_call_killed_at_any_point_takes_effect_exactly_once(tmp_path: Path, fault: str) -> None:
    plan = write_plan(tmp_path, APPENDS)
    ws, run_dir, crashed = start_run(tmp_path, plan, env={"AGENTCTL_FAULT": fault})
    assert crashed.returncode == -9
    resumed = resume(plan, run_dir, ws)
    assert resumed.returncode == 0, resumed.stderr
    assert (ws / "out" / "log.txt").read_text() == "line-1\nLINE-2\nline-3\nline-4\n"
    assert (ws / "out" / "w.txt").read_text() == "written\n"
    assert sorted(p.name for p in (ws / "out").iterdir()) == ["log.txt", "w.txt"]
    results = [e["call_id"] for e in read_events(run_dir / "events.jsonl") if e["type"] in ("tool/result", "tool/recovered")
               and (e.get("ok") or e.get("applied"))]
    assert len(results) == len(set(results)) == 6


def test_a_plugin_tool_with_recover_is_not_run_twice(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, "name: notes\nsettings: {plugins: [resume_tools]}\ntasks:\n  - id: a\n    agent: script\n"
                      "    restart: temporary\n    steps:\n" + "".join(
                          f"      - call: {{tool: test/note, args: {{text: n{n}}}}}\n" for n in range(1, 4)))
    ws, run_dir, crashed = start_run(tmp_path, plan, env={"AGENTCTL_FAULT": "kill@tool/result#2"})
    assert crashed.returncode == -9
    assert resume(plan, run_dir, ws).returncode == 0
    assert (ws / "notes.txt").read_text() == "n1\nn2\nn3\n"
