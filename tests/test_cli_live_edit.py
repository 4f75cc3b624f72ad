"""Live edits of a running plan beyond the basics: finished tasks, dependencies, subtrees."""

from __future__ import annotations

import signal
from pathlib import Path

from cli_helpers import ends, events, interrupt, invoke, of, running, save, wait_for

HEAD = "name: live\ntasks:\n"
QUICK = "  - id: {id}\n    agent: script\n{deps}    steps: [{{write: {{path: out/{id}.txt, content: \"{content}\"}}}}, {{done: {content}}}]\n"
PARENT = """\
  - id: parent
    agent: script
    steps:
      - spawn: {id: child, agent: script, steps: [{wait: never}]}
      - wait: never
"""
GATE = "  - id: gate\n    agent: script\n    steps: [{wait: open}, {done: opened}]\n"


def quick(id: str, content: str, deps: list[str] | None = None) -> str:
    return QUICK.format(id=id, content=content, deps=f"    depends_on: {deps}\n" if deps else "")


def test_edits_rerun_finished_tasks_and_respect_dependencies(tmp_path: Path) -> None:
    plan = tmp_path / "live.yaml"
    save(plan, HEAD + quick("first", "a") + GATE)
    run_dir = tmp_path / "run"
    with running("run", str(plan), "--no-ui", "--keep-running", "--run-dir", str(run_dir), "--workspace", str(tmp_path), cwd=tmp_path) as proc:
        wait_for(run_dir, lambda e: of(e, "agent/done", "first") and of(e, "agent/status", "gate"))
        # a finished task that changed runs again; a dependant of a finished task starts at once,
        # a dependant of a running one waits for it
        save(plan, HEAD + quick("first", "b") + GATE + quick("after-first", "c", ["first"]) + quick("after-gate", "d", ["gate"]))
        evs = wait_for(run_dir, lambda e: len(of(e, "agent/done", "first")) == 2 and of(e, "agent/done", "after-first"))
        diff = of(evs, "plan/diff")[-1]
        assert diff["changed"] == ["first"] and sorted(diff["added"]) == ["after-first", "after-gate"]
        assert not of(evs, "agent/spawned", "after-gate")
        assert (tmp_path / "out" / "first.txt").read_text() == "b"
        assert invoke("send", "--run", str(run_dir), "--to", "gate", "--kind", "open", "null", cwd=tmp_path).returncode == 0
        evs = wait_for(run_dir, lambda e: of(e, "agent/done", "after-gate"))
        types = [(e["type"], e["agent_id"]) for e in evs]
        assert types.index(("agent/done", "gate")) < types.index(("agent/spawned", "after-gate"))
        evs = interrupt(proc, run_dir)
    assert len(of(evs, "plan/diff")) == 2


def test_removing_a_task_stops_its_whole_subtree_and_frees_nothing_else(tmp_path: Path) -> None:
    plan = tmp_path / "live.yaml"
    save(plan, HEAD + PARENT + GATE)
    run_dir = tmp_path / "run"
    with running("run", str(plan), "--no-ui", "--run-dir", str(run_dir), cwd=tmp_path) as proc:
        wait_for(run_dir, lambda e: of(e, "agent/spawned", "child") and of(e, "agent/status", "gate"))
        save(plan, HEAD + GATE)
        evs = wait_for(run_dir, lambda e: of(e, "agent/stopped", "parent") and of(e, "agent/stopped", "child"))
        assert of(evs, "plan/diff")[-1]["removed"] == ["parent"]
        assert not of(evs, "agent/stopped", "gate")
        # an invalid save, then the same valid plan again: nothing to do, no new version
        loaded = len(of(evs, "plan/loaded"))
        save(plan, "name: live\ntasks: [{id: gate}]\n")
        wait_for(run_dir, lambda e: of(e, "plan/invalid"))
        save(plan, HEAD + GATE)
        # a later real edit is applied as the very next version: the same plan added none
        save(plan, HEAD + GATE + quick("marker", "m"))
        wait_for(run_dir, lambda e: of(e, "agent/done", "marker"))
        assert invoke("send", "--run", str(run_dir), "--to", "gate", "--kind", "open", "null", cwd=tmp_path).returncode == 0
        ends(proc, 0)
    evs = events(run_dir)
    assert [e["version"] for e in of(evs, "plan/loaded")][loaded:] == [loaded + 1]
    assert [d["added"] for d in of(evs, "plan/diff")][-1] == ["marker"] and len(of(evs, "plan/diff")) == 3
    assert (evs[-1]["reason"], evs[-1]["status"]) == ("completed", "ok")


def test_fixing_a_failed_task_reruns_it_and_unblocks_its_dependant(tmp_path: Path) -> None:
    plan = tmp_path / "live.yaml"
    broken = "  - id: breaks\n    agent: script\n    restart: temporary\n    steps: [{fail: oops}]\n"
    save(plan, HEAD + broken + quick("after", "x", ["breaks"]))
    run_dir = tmp_path / "run"
    with running("run", str(plan), "--no-ui", "--keep-running", "--run-dir", str(run_dir), "--workspace", str(tmp_path), cwd=tmp_path) as proc:
        wait_for(run_dir, lambda e: of(e, "agent/error", "breaks"))
        save(plan, HEAD + broken.replace("{fail: oops}", "{done: fixed}") + quick("after", "x", ["breaks"]))
        evs = wait_for(run_dir, lambda e: of(e, "agent/done", "after"))
        assert of(evs, "plan/diff")[-1]["changed"] == ["breaks"]
        assert of(evs, "agent/done", "breaks")[0]["result"] == "fixed"
        ends(proc, 130, signal.SIGTERM)
    assert (tmp_path / "out" / "after.txt").read_text() == "x"
