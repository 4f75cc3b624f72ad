"""Nothing routed is lost, through the real CLI: more reports than the root's inbox holds, relays between tasks."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import cli, events, invoke, of


def many_tasks(path: Path, n: int) -> Path:
    """A plan of ``n`` one-step script tasks: they all report ``done`` to the root at once."""
    rows = "".join(f"  - {{id: t{i}, agent: script, steps: [{{done: ok}}]}}\n" for i in range(n))
    path.write_text(f"name: many\ntasks:\n{rows}")
    return path


def run_to_the_end(tmp_path: Path, n: int, timeout: float) -> None:
    run_dir = tmp_path / "run"
    plan = many_tasks(tmp_path / "many.yaml", n)
    proc = cli("run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", str(run_dir), "--workspace", str(tmp_path),
               cwd=tmp_path, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    evs = events(run_dir)
    reports = [e for e in of(evs, "agent/message", "plan") if e["kind"] == "done"]
    assert len(reports) == n and all(e["delivered"] for e in reports)
    (root,) = of(evs, "agent/done", "plan")
    assert root["status"] == "ok" and len(root["result"]) == n


def test_300_tasks_finishing_at_once_overflow_no_inbox(tmp_path: Path) -> None:
    run_to_the_end(tmp_path, 300, timeout=60)  # the root's inbox holds 256


@pytest.mark.slow
def test_10000_tasks_finishing_at_once_run_to_exit_0(tmp_path: Path) -> None:
    run_to_the_end(tmp_path, 10_000, timeout=300)


SIBLINGS = """\
name: siblings
tasks:
  - id: teller
    agent: script
    steps: [{send: {to: listener, kind: note, body: hello}}, {done: told}]
  - id: listener
    agent: script
    steps: [{wait: {kind: note, timeout: 20}}, {done: heard}]
"""


def test_a_message_to_a_sibling_task_is_forwarded_by_the_plan_root(tmp_path: Path) -> None:
    plan = tmp_path / "siblings.yaml"
    plan.write_text(SIBLINGS)
    run_dir = tmp_path / "run"
    proc = invoke("run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", str(run_dir), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    evs = events(run_dir)
    (note,) = [e for e in of(evs, "agent/message") if e["kind"] == "note"]
    assert (note["agent_id"], note["via"], note["delivered"]) == ("listener", "plan", True)
    assert [e["result"] for e in of(evs, "agent/done", "listener")] == ["heard"]
