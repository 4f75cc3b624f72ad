"""``validate`` checks what the run will do with a plan: code it imports, tools and grants, reserved ids.

The run and ``validate`` decide grants with one function (``policy.grant_spawn``), so a
spawn ``validate`` refuses is refused by the run with the same words, and the other way round.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import cli, events, of
from typer.testing import CliRunner

from agentctl.cli.main import app


def validate(path: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, ["validate", str(path)])
    return result.exit_code, result.output.strip().splitlines()


STEP_MODULE = """\
from agentctl import actions as act

def worker(ctx):
    return [act.done("ok", "from beside the plan")]
"""
PLUGIN_MODULE = """\
def register(registry):
    @registry.tool("beside/echo")
    def echo(text: str) -> str:
        \"\"\"Echo the text.\"\"\"
        return text
"""


def beside_plan(tmp_path: Path, tag: str) -> Path:
    (tmp_path / f"steps_{tag}.py").write_text(STEP_MODULE)
    (tmp_path / f"tools_{tag}.py").write_text(PLUGIN_MODULE)
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"""\
name: beside
settings: {{plugins: [tools_{tag}]}}
tasks:
  - id: py
    agent: python
    step: steps_{tag}:worker
  - id: caller
    agent: script
    tools: [beside/echo]
    steps: [{{call: {{tool: beside/echo, args: {{text: hi}}}}}}, {{done: ok}}]
""")
    return plan


def test_step_modules_and_plugins_beside_the_plan_import_in_validate(tmp_path: Path) -> None:
    code, lines = validate(beside_plan(tmp_path, "v1"))
    assert code == 0 and lines == [f"{tmp_path / 'plan.yaml'}: ok: plan 'beside', 2 tasks",
                                   "runs code (see docs/security.md):",
                                   "  settings.plugins: imports tools_v1 (its register() adds tools)",
                                   "  task py: imports steps_v1:worker (agent: python)"]


def test_step_modules_and_plugins_beside_the_plan_import_in_a_run(tmp_path: Path) -> None:
    plan = beside_plan(tmp_path, "r1")
    other = tmp_path / "elsewhere"
    other.mkdir()
    proc = cli("run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", str(tmp_path / "run"),
               "--workspace", str(other), cwd=other)
    assert proc.returncode == 0, proc.stderr
    evs = events(tmp_path / "run")
    assert of(evs, "agent/done", "py")[0]["result"] == "from beside the plan"
    assert of(evs, "tool/result", "caller")[0]["ok"]


def test_a_step_that_does_not_import_stops_the_run_naming_file_and_line(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("name: x\ntasks:\n  - id: py\n    agent: python\n    step: no_such_module_here:worker\n")
    proc = cli("run", str(plan), "--no-ui", "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 2
    assert f"{plan}:5: at tasks[0].step: cannot import step module 'no_such_module_here'" in proc.stderr
    assert "<plan>" not in proc.stderr and "Traceback" not in proc.stderr


def test_validate_reports_every_problem_at_once(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("""\
name: many
tasks:
  - id: user
    agent: script
    steps: [{done: ok}]
  - id: a
    agent: script
    tools: [fs/read]
    steps:
      - call: {tool: fs/wirte, args: {path: x, content: y}}
      - call: {tool: fs/write, args: {path: x, content: y}}
      - spawn: {id: plan, steps: [{done: 1}]}
      - spawn: {id: kid, steps: [{done: 1}], tools: [fs/write]}
  - id: p
    agent: python
    step: missing_steps_module:worker
""")
    code, lines = validate(plan)
    assert code == 2
    where = [line.split(": at ")[0].removeprefix("invalid plan: ") + " " + line.split(": at ")[1].split(":")[0]
             for line in lines]
    assert sorted(where) == sorted(f"{plan}:{n} {path}" for n, path in [
        (3, "tasks[0].id"), (10, "tasks[1].steps[0].call.tool"), (11, "tasks[1].steps[1].call.tool"),
        (12, "tasks[1].steps[2].spawn.id"), (13, "tasks[1].steps[3].spawn.tools"), (16, "tasks[2].step")])
    text = "\n".join(lines)
    assert "agent id 'user' is reserved" in text and "agent id 'plan' is reserved" in text
    assert "call of 'fs/wirte': it is not a tool" in text and "call of 'fs/write': 'a' does not hold it" in text
    assert "tools not held by the parent: fs/write" in text


def test_validate_reports_shape_errors_of_every_task_at_once(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("name: x\ntasks:\n  - {id: a, agent: scirpt}\n  - {id: b, agent: script, steps: [{wirte: x}]}\n"
                    "settings: {durability: sometimes}\n")
    code, lines = validate(plan)
    assert code == 2 and [line.split(": at ")[1].split(":")[0] for line in lines] == [
        "tasks[0].agent", "tasks[1].steps[0].wirte", "settings.durability"]


def test_validate_refuses_tools_all_with_the_runs_own_words(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("name: all\ntasks:\n  - id: a\n    agent: script\n    tools: [all]\n    steps: [{done: ok}]\n")
    code, lines = validate(plan)
    assert code == 2 and len(lines) == 1 and f"{plan}:5: at tasks[0].tools:" in lines[0]
    proc = cli("run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 1
    refused = of(events(tmp_path / "run"), "policy/refused")
    assert [r["child_id"] for r in refused] == ["a"]
    assert lines[0].endswith(f"the run would refuse to start 'a' (tools): {refused[0]['error']}")


def test_diff_and_validate_refuse_what_the_runs_ledger_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The plan root gets max_steps 100 from the depth-0 rule; a takes 60 of it, so b's 60 no longer fit.
    plan = tmp_path / "plan.yaml"
    plan.write_text("""\
name: ledger
policy:
  depth:
    0: {budget: {max_steps: 100}}
tasks:
  - {id: a, agent: script, budget: {max_steps: 60}, steps: [{done: ok}]}
  - {id: b, agent: script, budget: {max_steps: 60}, steps: [{done: ok}]}
""")
    code, lines = validate(plan)
    assert code == 2 and len(lines) == 1 and f"{plan}:7: at tasks[1].budget:" in lines[0]
    monkeypatch.chdir(tmp_path)  # no runs here: diff compares with nothing running
    diff = CliRunner().invoke(app, ["diff", str(plan), "-o", "json"])
    rows = {r["task"]: r for r in json.loads(diff.stdout)["tasks"]}
    assert rows["a"]["action"] == "spawn" and rows["a"]["budget"] == {"max_steps": 60}
    assert rows["b"]["action"] == "refused"
    proc = cli("run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 1
    refused = of(events(tmp_path / "run"), "policy/refused")
    assert [(r["child_id"], r["error"]) for r in refused] == [("b", rows["b"]["error"])]
    assert lines[0].endswith(f"(budget): {rows['b']['error']}")
