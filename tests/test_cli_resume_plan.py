"""``run --resume RUN`` and the plan: the kept version by default, another only on request,
nothing done to a finished run; and a clean stop of a --keep-running run whose tasks are done.

The crashed runs are real processes killed by the fault hook; resumes run in-process.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from cli_helpers import AGENTCTL, GATE, ends, events, of, running, wait_for
from typer.testing import CliRunner

from agentctl.cli.main import app

TWO = """\
name: two
tasks:
  - id: first
    agent: script
    steps: [{write: {path: out/first.txt, content: A}}, {done: a}]
  - id: second
    agent: script
    depends_on: [first]
    steps: [{write: {path: out/second.txt, content: B}}, {done: b}]
"""
OTHER = "name: other\ntasks:\n  - id: x\n    agent: script\n    steps: [{write: {path: out/x.txt, content: X}}, {done: x}]\n"


def agentctl(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def crashed_run(tmp_path: Path) -> tuple[Path, Path]:
    """A run of TWO killed right after its first write; returns (plan file, run dir)."""
    tmp_path.mkdir(exist_ok=True)
    plan = tmp_path / "two.yaml"
    plan.write_text(TWO)
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "AGENTCTL_CRASH_AT_SEQ"}
    env["AGENTCTL_FAULT"] = "kill@tool/result#1"
    proc = subprocess.run([AGENTCTL, "run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", str(run_dir),
                           "--workspace", str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not of(events(run_dir), "run/finished")
    return plan, run_dir


def test_resume_without_a_plan_uses_the_kept_version_and_another_plan_needs_a_flag(tmp_path: Path) -> None:
    plan, run_dir = crashed_run(tmp_path)
    other = tmp_path / "other.yaml"
    other.write_text(OTHER)
    before = len(events(run_dir))
    refused = agentctl("run", str(other), "--no-ui", "--resume", str(run_dir))
    assert refused.exit_code == 2 and "differs from the v1" in refused.stderr and "--apply-plan" in refused.stderr
    assert len(events(run_dir)) == before
    plan.write_text("not: [a plan")  # without PLAN the file is not read: the kept copy is the plan
    resumed = agentctl("run", "--no-ui", "--resume", str(run_dir))
    assert resumed.exit_code == 0, resumed.output
    evs = events(run_dir)
    assert of(evs, "run/resumed") and [e["version"] for e in of(evs, "plan/loaded")] == [1]
    assert (tmp_path / "out" / "second.txt").read_text() == "B" and not (tmp_path / "out" / "x.txt").exists()
    assert (evs[-1]["type"], evs[-1]["status"]) == ("run/finished", "ok")
    # a finished run: said so, nothing appended, whether a plan is given or not
    for args in (["--resume", str(run_dir)], [str(other), "--resume", str(run_dir), "--apply-plan"]):
        again = agentctl("run", "--no-ui", *args)
        assert again.exit_code == 2 and "has finished (completed, ok)" in again.stderr, again.output
    assert events(run_dir) == evs


def test_another_plan_with_apply_plan_and_an_edit_of_the_runs_own_file_are_applied(tmp_path: Path) -> None:
    plan, run_dir = crashed_run(tmp_path)
    other = tmp_path / "other.yaml"
    other.write_text(OTHER)
    resumed = agentctl("run", str(other), "--no-ui", "--no-watch-plan", "--resume", str(run_dir), "--apply-plan")
    assert resumed.exit_code == 0, resumed.output
    evs = events(run_dir)
    assert [e["version"] for e in of(evs, "plan/loaded")] == [1, 2]
    assert of(evs, "plan/diff")[-1]["added"] == ["x"] and (tmp_path / "out" / "x.txt").read_text() == "X"
    plan, run_dir = crashed_run(tmp_path / "edit")
    plan.write_text(TWO.replace("content: B", "content: edited"))
    assert agentctl("run", str(plan), "--no-ui", "--no-watch-plan", "--resume", str(run_dir)).exit_code == 0
    assert (tmp_path / "edit" / "out" / "second.txt").read_text() == "edited"


def test_resume_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for args, text in (
        (["run", "--no-ui"], "missing PLAN"),
        (["run", "--no-ui", "--resume", str(tmp_path / "nowhere")], "--resume"),
        (["run", "--no-ui", "--resume", str(tmp_path), "--run-dir", str(tmp_path)], "give only one"),
    ):
        result = agentctl(*args)
        assert result.exit_code == 2 and text in result.stderr, (args, result.output)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_ctrl_c_of_a_keep_running_run_whose_tasks_all_finished_ok_is_a_clean_stop(tmp_path: Path) -> None:
    plan = tmp_path / "two.yaml"
    plan.write_text(TWO)
    run_dir = tmp_path / "run"
    with running("run", str(plan), "--no-ui", "--no-watch-plan", "--keep-running", "--run-dir", str(run_dir),
                 "--workspace", str(tmp_path), cwd=tmp_path) as proc:
        wait_for(run_dir, lambda e: of(e, "agent/done", "second"))
        ends(proc, 130, signal.SIGINT)
    finished = events(run_dir)[-1]
    assert (finished["type"], finished["reason"], finished["status"]) == ("run/finished", "interrupted", "stopped")


def test_a_run_whose_process_is_alive_is_not_resumed_under_it(tmp_path: Path) -> None:
    plan = tmp_path / "gate.yaml"
    plan.write_text(GATE)
    run_dir = tmp_path / "run"
    with running("run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", str(run_dir), cwd=tmp_path) as proc:
        before = wait_for(run_dir, lambda e: of(e, "agent/status", "gate"))
        second = agentctl("run", "--no-ui", "--resume", str(run_dir))
        assert second.exit_code == 2 and f"still running (pid {proc.pid})" in second.stderr, second.output
        assert events(run_dir) == before
        assert agentctl("send", "--run", str(run_dir), "--to", "gate", "--kind", "open", "go").exit_code == 0
        ends(proc, 0)
