"""``-o json`` on validate, diff and replay --summary, and diff's exit codes, in-process.

(``ps -o json`` is in test_cli_runs.py, ``describe -o json`` in test_cli_describe.py.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import PLANS, events, of
from typer.testing import CliRunner

from agentctl.cli.main import app

BAD = Path(__file__).parent / "bad_plans"


def agentctl(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory (the cwd) with one finished run of plans/hello.yaml."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hello.yaml").write_text((PLANS / "hello.yaml").read_text())
    assert agentctl("run", "hello.yaml", "--no-ui", "--no-watch-plan").exit_code == 0
    return tmp_path


def test_validate_json_for_a_good_a_bad_and_a_missing_plan(tmp_path: Path) -> None:
    good = agentctl("validate", str(PLANS / "hello.yaml"), "-o", "json")
    assert good.exit_code == 0
    assert json.loads(good.stdout) == {"file": str(PLANS / "hello.yaml"), "ok": True, "plan": "hello", "tasks": 2, "errors": []}
    bad_file = sorted(BAD.iterdir())[0]
    bad = agentctl("validate", str(bad_file), "-o", "json")
    assert bad.exit_code == 2
    found = json.loads(bad.stdout)
    assert (found["ok"], found["plan"]) == (False, None) and found["errors"][0]["file"] == str(bad_file)
    assert set(found["errors"][0]) == {"message", "file", "line", "path", "expected", "got"}
    missing = agentctl("validate", str(tmp_path / "nope.yaml"), "-o", "json")
    assert missing.exit_code == 2 and json.loads(missing.stdout)["errors"][0]["message"] == "plan file not found"


def test_diff_compares_with_the_newest_run_and_exits_1_on_changes(project: Path) -> None:
    run_dir = next((project / ".agentctl" / "runs").iterdir())
    same = agentctl("diff", "hello.yaml", "-o", "json")
    assert same.exit_code == 0, same.output
    assert json.loads(same.stdout) == {"plan": "hello", "file": "hello.yaml", "run": str(Path(".agentctl/runs") / run_dir.name),
                                       "changes": False, "tasks": []}
    assert agentctl("diff", "hello.yaml").exit_code == 0
    edited = project / "edited.yaml"
    edited.write_text((project / "hello.yaml").read_text().replace("greeter finished; see out/hello.txt", "edited report"))
    changed = agentctl("diff", str(edited), "-o", "json")
    assert changed.exit_code == 1, changed.output
    found = json.loads(changed.stdout)
    assert found["changes"] is True
    assert [(t["task"], t["action"]) for t in found["tasks"]] == [("reporter", "rerun")]
    assert set(found["tasks"][0]) == {"task", "action", "budget", "locks", "error", "supervise"}
    assert agentctl("diff", str(edited)).exit_code == 1
    assert agentctl("diff", str(project / "missing.yaml")).exit_code == 2
    assert agentctl("diff", "hello.yaml", "--run", "no-such-run").exit_code == 2
    # `--run none`, as its help offers: against nothing running, the plan starts from scratch.
    fresh = agentctl("diff", "hello.yaml", "--run", "none", "-o", "json")
    assert fresh.exit_code == 1, fresh.output
    found = json.loads(fresh.stdout)
    assert found["run"] is None
    assert [(t["task"], t["action"]) for t in found["tasks"]] == [("greeter", "spawn"), ("reporter", "wait")]


def test_replay_summary_json_is_one_object_with_the_runs_totals(project: Path) -> None:
    run_dir = next((project / ".agentctl" / "runs").iterdir())
    result = agentctl("replay", str(run_dir), "--summary", "-o", "json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    evs = events(run_dir)
    assert (found["run_id"], found["plan_name"], found["reason"], found["status"]) == (evs[0]["run_id"], "hello", "completed", "ok")
    assert found["tool_calls"] == len(of(evs, "tool/result"))
    assert {a["id"] for a in found["agents"]} == {e["agent_id"] for e in of(evs, "agent/spawned")}
    assert {"by_status", "failures", "duration_ms", "messages", "prompt_tokens", "completion_tokens"} <= set(found)
    refused = agentctl("replay", str(run_dir), "-o", "json")
    assert refused.exit_code == 2 and "--summary" in refused.stderr
