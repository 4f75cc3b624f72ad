"""Every live edit of ``defaults``, ``policy`` and ``settings`` is applied or refused out loud.

``defaults`` and the depth policy apply to agents spawned after the edit (``plan/loaded``
names what changed); a ``settings`` edit is refused whole with ``plan/refused`` naming the
field and its line, and the run goes on. ``agentctl diff --run`` predicts a refusal in the
words the run then uses.
"""

from __future__ import annotations

import json
from pathlib import Path

from cli_helpers import interrupt, of, running, save, wait_for
from typer.testing import CliRunner

from agentctl.cli.main import app

GATE = "  - id: gate\n    agent: script\n    steps: [{wait: open}]\n"


def task(tid: str, extra: str = "") -> str:
    return f"  - id: {tid}\n    agent: script\n{extra}    steps: [{{done: ok}}]\n"


def plan_text(*tasks: str, max_steps: int = 50, policy: str = "", settings: str = "") -> str:
    return (f"name: live\ndefaults:\n  budget: {{max_steps: {max_steps}}}\n{policy}{settings}tasks:\n"
            + GATE + "".join(tasks))


def test_defaults_policy_and_settings_edits_are_applied_or_refused_out_loud(tmp_path: Path) -> None:
    plan = tmp_path / "live.yaml"
    save(plan, plan_text())
    run_dir = tmp_path / "run"
    with running("run", str(plan), "--no-ui", "--keep-running", "--run-dir", str(run_dir), "--workspace",
                 str(tmp_path), cwd=tmp_path) as proc:
        wait_for(run_dir, lambda e: of(e, "agent/status", "gate"))
        # defaults: the next spawn gets the new budget; the running gate keeps its own.
        save(plan, plan_text(task("a"), max_steps=7))
        evs = wait_for(run_dir, lambda e: of(e, "agent/done", "a"))
        assert of(evs, "agent/spawned", "a")[0]["budget"]["max_steps"] == 7
        assert of(evs, "plan/loaded")[-1]["changed"] == ["tasks", "defaults"]
        assert of(evs, "agent/spawned", "gate")[0]["budget"]["max_steps"] == 50 and not of(evs, "agent/stopped")

        # policy: diff predicts the refusal; the run refuses it in the same words.
        policy = "policy:\n  depth:\n    1: {tools: [fs/read]}\n"
        edited = plan_text(task("a"), task("b", "    tools: [fs/write]\n"), max_steps=7, policy=policy)
        (tmp_path / "next.yaml").write_text(edited)
        runner = CliRunner()
        diff = runner.invoke(app, ["diff", str(tmp_path / "next.yaml"), "--run", str(run_dir), "-o", "json"])
        row = next(r for r in json.loads(diff.stdout)["tasks"] if r["task"] == "b")
        table = runner.invoke(app, ["diff", str(tmp_path / "next.yaml"), "--run", str(run_dir)], env={"COLUMNS": "400"})
        save(plan, edited)
        evs = wait_for(run_dir, lambda e: of(e, "policy/refused"))
        refusal = of(evs, "policy/refused")[0]
        assert refusal["child_id"] == "b" and refusal["error"] == "tools not allowed at depth 1: fs/write"
        assert (row["action"], row["error"], diff.exit_code) == ("refused", refusal["error"], 1)
        assert f"refused: {refusal['error']}" in table.stdout
        assert of(evs, "plan/loaded")[-1]["changed"] == ["tasks", "policy"]

        # settings: refused whole, with the field and its line; the new task is not started.
        settings = "settings:\n  llm_workers: 2\n"
        save(plan, plan_text(task("a"), task("c"), max_steps=7, policy=policy, settings=settings))
        evs = wait_for(run_dir, lambda e: of(e, "plan/refused"))
        refused = of(evs, "plan/refused")[0]
        assert refused["fields"] == ["settings.llm_workers"]
        assert (refused["error"]["path"], refused["error"]["line"]) == ("settings.llm_workers", 8)
        assert "restart it to apply" in refused["error"]["message"]
        loaded = len(of(evs, "plan/loaded"))

        # The run goes on: the next save without the settings change is applied.
        save(plan, plan_text(task("a"), task("d"), max_steps=7, policy=policy))
        evs = wait_for(run_dir, lambda e: of(e, "agent/done", "d"))
        assert not of(evs, "agent/spawned", "c") and len(of(evs, "plan/loaded")) == loaded + 1

        # A python task whose step does not import is an invalid save, with its line.
        broken = "  - id: py\n    agent: python\n    step: no_such_steps_module:run\n"
        save(plan, plan_text(task("a"), task("d"), broken, max_steps=7, policy=policy))
        evs = wait_for(run_dir, lambda e: of(e, "plan/invalid"))
        error = of(evs, "plan/invalid")[0]["error"]
        assert (error["path"], error["line"]) == ("tasks[3].step", 19), error
        assert not of(evs, "agent/spawned", "py") and not of(evs, "agent/error")
        interrupt(proc, run_dir)


def test_which_fields_a_running_run_cannot_change() -> None:
    from agentctl.plan import parse_plan
    from agentctl.reconcile.live import changed_sections, fixed_changes

    base = "name: x\ntasks: [{id: a, agent: script, steps: [{done: ok}]}]\n"
    old = parse_plan(base, filename="x.yaml")

    def edit(extra: str) -> tuple[list[str], list[str]]:
        new = parse_plan(base + extra, filename="x.yaml")
        return changed_sections(old, new), fixed_changes(old, new)

    assert edit("defaults: {model: m, budget: {max_steps: 3}}\n") == (["defaults"], [])
    assert edit("defaults: {provider: scripted, model: m}\n") == (["defaults"], ["defaults.provider"])
    assert edit("policy: {model_rank: [a, b]}\n") == (["policy"], [])
    assert edit("policy: {conflicts: arbiter}\n") == (["policy"], ["policy.conflicts"])
    assert edit("settings: {inbox_size: 8, durability: always}\n") == (
        ["settings"], ["settings.durability", "settings.inbox_size"])
    assert edit("mcp: {calc: {command: [python, -c, pass]}}\n") == (["mcp"], ["mcp"])
