"""A task's ``supervise:`` on a real ``agentctl run``: edited in the plan file while it runs
(applied to the running agent, which is not restarted), and honoured across ``kill -9`` and
``--resume`` (the restart window counts the restarts made before the crash)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from cli_helpers import ends, events, invoke, of, run_plan, running, save, wait_for

LIVE = """\
name: live
tasks:
  - id: boss
    agent: script
    restart: temporary
    supervise: {{max_restarts: {most}, restart_period: 600}}
    steps:
      - spawn: {{id: w, agent: script, steps: [{{wait: kick}}, {{fail: kicked}}]}}
      - wait: {{kind: never, timeout: 60}}
"""


def _kick(run_dir: Path, cwd: Path) -> None:
    assert invoke("send", "--run", str(run_dir), "--to", "w", "--kind", "kick", "null", cwd=cwd).returncode == 0


def test_an_edit_of_a_running_tasks_supervise_decides_its_next_restart_without_restarting_it(tmp_path: Path) -> None:
    """5 restarts allowed, one made; the edit allows 1: the next failure is one too many.
    Without the edit applied live, boss would restart w again."""
    plan = tmp_path / "plan.yaml"
    save(plan, LIVE.format(most=5))
    run_dir = tmp_path / "run"
    with running("run", str(plan), "--no-ui", "--run-dir", str(run_dir), cwd=tmp_path) as proc:
        wait_for(run_dir, lambda e: of(e, "agent/status", "w"))
        _kick(run_dir, tmp_path)
        wait_for(run_dir, lambda e: of(e, "agent/restarted", "w") and len(of(e, "agent/status", "w")) >= 2)
        # agentctl diff says what the edit will do: supervise boss live, restart nothing.
        edited = tmp_path / "edited.yaml"
        edited.write_text(LIVE.format(most=1))
        diff = invoke("diff", str(edited), "--run", str(run_dir), "-o", "json", cwd=tmp_path)
        assert diff.returncode == 1, diff.stderr
        assert [(r["task"], r["action"], r["supervise"]) for r in json.loads(diff.stdout)["tasks"]] == [
            ("boss", "supervise", {"strategy": "one_for_one", "max_restarts": 1, "restart_period": 600.0})]
        table = invoke("diff", str(edited), "--run", str(run_dir), cwd=tmp_path).stdout
        assert "supervise" in table and "1 in 600.0s" in table
        assert invoke("diff", str(plan), "--run", str(run_dir), cwd=tmp_path).returncode == 0
        save(plan, LIVE.format(most=1))
        evs = wait_for(run_dir, lambda e: of(e, "agent/supervision", "w"))
        flags = {"strategy": "one_for_one", "max_restarts": 1, "restart_period": 600.0}
        for agent in ("boss", "w"):  # w asked nothing: it inherits boss's new intensity
            (changed,) = of(evs, "agent/supervision", agent)
            assert {k: changed[k] for k in flags} == flags
        assert of(evs, "plan/diff") == [] or all(d["changed"] == [] for d in of(evs, "plan/diff"))
        assert invoke("diff", str(plan), "--run", str(run_dir), cwd=tmp_path).returncode == 0  # folded: applied
        _kick(run_dir, tmp_path)
        ends(proc, 1)
    evs = events(run_dir)
    assert len(of(evs, "agent/spawned", "boss")) == 1 and not of(evs, "agent/stopped", "boss")
    assert len(of(evs, "agent/restarted", "w")) == 1
    assert [e["error"] for e in of(evs, "agent/error", "boss")] == [
        "restart intensity exceeded: more than 1 restarts in 600.0s (last offender w)"]


CRASH = """\
name: crash
tasks:
  - id: boss
    agent: script
    restart: temporary
    supervise: {max_restarts: 1, restart_period: 600}
    steps:
      - spawn: {id: w, agent: script, steps: [{append: {path: w.txt, content: "x\\n"}}, {fail: again}]}
      - wait: {kind: never, timeout: 60}
"""


def _resumed_gives_up_after_one_restart(tmp_path: Path) -> None:
    """Resumed to its end: w was restarted once in all, boss then gave up, no append made twice."""
    assert run_plan(tmp_path, resume=True).returncode == 1
    evs = events(tmp_path / "run")
    assert len(of(evs, "agent/restarted", "w")) == 1
    assert [e["error"] for e in of(evs, "agent/error", "boss")] == [
        "restart intensity exceeded: more than 1 restarts in 600.0s (last offender w)"]
    assert (tmp_path / "w.txt").read_text() == "x\n" * 2


def test_a_tasks_max_restarts_1_allows_exactly_one_restart_across_kill_9_and_resume(tmp_path: Path) -> None:
    """w fails on every start; killed right after its restarted self's append, the run is
    resumed: the resumed boss counts that restart, and w's next failure is one too many."""
    (tmp_path / "plan.yaml").write_text(CRASH)
    assert run_plan(tmp_path, fault="kill@tool/result#2").returncode == -signal.SIGKILL
    assert len(of(events(tmp_path / "run"), "agent/restarted", "w")) == 1
    _resumed_gives_up_after_one_restart(tmp_path)


@pytest.mark.slow
def test_a_double_crash_still_allows_exactly_one_restart(tmp_path: Path) -> None:
    """Killed before any restart, then again right after the one restart of the resumed run."""
    (tmp_path / "plan.yaml").write_text(CRASH)
    assert run_plan(tmp_path, fault="kill@tool/result#1").returncode == -signal.SIGKILL
    assert of(events(tmp_path / "run"), "agent/restarted", "w") == []
    assert run_plan(tmp_path, fault="kill@tool/result#1", resume=True).returncode == -signal.SIGKILL
    assert len(of(events(tmp_path / "run"), "agent/restarted", "w")) == 1
    _resumed_gives_up_after_one_restart(tmp_path)
