"""The end of ``agentctl run`` says why it failed: one line per failed agent, which call, why.

In-process (Typer's ``CliRunner``): a real run of a plan whose agents fail on a tool's error,
on a step of their own, or not at all in the end (restarted, then fine).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import events, invoke, of

PLAN = """\
name: failures
settings: {secrets: [SWEEP_TOKEN]}
defaults: {restart: temporary, tools: [fs/read]}
tasks:
  - id: reader
    agent: script
    steps: [{call: {tool: fs/read, args: {path: "missing-${SECRET}.txt"}}}, {done: never}]
  - id: quitter
    agent: script
    depends_on: [reader]
    steps: [{fail: "gave up"}]
  - id: fine
    agent: script
    steps: [{done: ok}]
"""


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def test_each_failed_agent_gets_one_line_naming_its_call_and_why_with_secrets_hidden(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWEEP_TOKEN", "hunter2hunter2")
    (tmp_path / "plan.yaml").write_text(PLAN.replace("${SECRET}", "hunter2hunter2"))
    proc = invoke("run", "plan.yaml", "--no-ui", "--no-watch-plan", "--run-dir", "run", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "hunter2hunter2" not in proc.stderr
    evs = events(tmp_path / "run")
    call = of(evs, "tool/result", "reader")[0]
    assert call["ok"] is False and call["error_type"] == "tool_error"
    assert _errors(proc.stderr) == [
        f"error: agent reader: tool fs/read (call {call['call_id']}) failed (tool_error): missing-***.txt: no such file",
    ]
    assert proc.stderr.splitlines()[-1].startswith("run ")  # the run's closing line comes last, as before


def test_a_failing_step_without_a_call_says_where_and_why(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text(PLAN.replace("    depends_on: [reader]\n", "").replace("${SECRET}", "x"))
    proc = invoke("run", "plan.yaml", "--no-ui", "--no-watch-plan", "--run-dir", "run", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    lines = _errors(proc.stderr)
    assert len(lines) == 2, proc.stderr
    assert "error: agent quitter: step failed: ScriptFailed: gave up" in lines
    assert [line.split(":")[1] for line in lines] == [
        f" agent {e['agent_id']}" for e in of(events(tmp_path / "run"), "agent/error")]  # in the order they failed


def test_a_run_that_ends_ok_prints_no_failure_even_after_a_failed_call(tmp_path: Path) -> None:
    """A call that failed but whose agent went on (a tool error is the agent's to handle) is no failure."""
    (tmp_path / "plan.yaml").write_text("""\
name: recovers
defaults: {tools: [fs/read]}
tasks:
  - id: reader
    agent: python
    step: steps:read_twice
""")
    (tmp_path / "steps.py").write_text('''\
from agentctl import actions as act


def read_twice(ctx):
    if ctx.step_no == 1:
        return [act.call_tool("fs/read", {"path": "missing.txt"})]
    return [act.done("ok", None)]
''')
    proc = invoke("run", "plan.yaml", "--no-ui", "--no-watch-plan", "--run-dir", "run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert of(events(tmp_path / "run"), "tool/result")[0]["ok"] is False
    assert _errors(proc.stderr) == []
