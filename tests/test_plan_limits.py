"""Hostile plan files: alias bombs, deep nesting and huge files are refused with file and line.

Each is refused by ``validate`` (exit 2, one line, no traceback) and, saved over the plan
of a live run, leaves the run going: the run logs ``plan/invalid`` and applies the next
valid save. Whether they are refused fast is measured in ``bench/reconcile.py``, not here.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import yaml
from cli_helpers import PLANS, Events, interrupt, of, running, save, wait_for
from typer.testing import CliRunner

from agentctl.cli.main import app
from agentctl.errors import PlanError
from agentctl.plan import load_plan, parse_plan, yaml_reader
from agentctl.plan.limits import ALIAS_FLOOR, MAX_BYTES, MAX_DEPTH
from agentctl.plan.load import parse_yaml


def alias_bomb(levels: int = 9) -> str:
    """The "billion laughs": each level is a list of nine aliases of the one before."""
    text = 'name: bomb\ntasks: []\nsettings: {shell: false}\n'
    text += 'x0: &x0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for i in range(1, levels + 1):
        text += f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 9) + "]\n"
    return text


def deep_yaml(depth: int) -> str:
    """Block sequences nested ``depth`` levels under ``tasks[0].steps[0].done``, on line 7."""
    head = "name: deep\ntasks:\n  - id: a\n    agent: script\n    steps:\n      - done:\n"
    return head + "          " + "- " * depth + "x\n"


def deep_edn(depth: int) -> str:
    return '{:name "deep"\n :tasks [{:id "a" :agent :script :steps [{:done ' + "[" * depth + "]" * depth + "}]}]}\n"


HOSTILE = {
    # name: (text, message fragment, line)
    "bomb.yaml": (alias_bomb(), "YAML aliases expand the plan too far at *x", 9),
    "deep.yaml": (deep_yaml(10_000), f"nested too deeply: more than {MAX_DEPTH} levels", 7),
    "deep.edn": (deep_edn(10_000), f"nested too deeply: more than {MAX_DEPTH} levels", 2),
    "deep900.edn": (deep_edn(900), f"nested too deeply: more than {MAX_DEPTH} levels", 2),
    "flow.yaml": ("name: flow\ntasks: []\nx: " + "[" * 10_000 + "]" * 10_000 + "\n", "YAML syntax error", 3),
    "huge.yaml": ("name: huge\ntasks: []\n# " + "x" * MAX_BYTES + "\n", "plan file too large", None),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_plan_is_refused_with_file_and_line(name: str, tmp_path: Path) -> None:
    text, fragment, line = HOSTILE[name]
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert fragment in info.value.message
    assert (info.value.file, info.value.line) == (str(path), line)


@pytest.mark.parametrize("name", ["bomb.yaml", "deep.yaml", "deep.edn"])
def test_validate_refuses_a_hostile_plan_in_one_line_with_exit_2(name: str, tmp_path: Path) -> None:
    text, fragment, line = HOSTILE[name]
    path = tmp_path / name
    path.write_text(text)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    out = result.output.strip()
    assert len(out.splitlines()) == 1 and fragment in out and f"{path}:{line}:" in out
    assert "Traceback" not in out and "RecursionError" not in out


def test_nesting_up_to_the_limit_is_read() -> None:
    # done: [[[...]]] -- the document's own levels (plan, tasks, task, steps, step) count too.
    plan = parse_plan(deep_yaml(MAX_DEPTH - 5), filename="ok.yaml")
    assert plan.tasks[0].steps[0].op == "done"


def test_aliases_within_the_budget_are_shared_not_refused() -> None:
    # 2,000 tasks that all use one anchored script: aliases add far less than the floor.
    head = "name: shared\nscript: &script [{done: ok}]\ntasks:\n"
    tasks = "".join(f"  - {{id: t{i}, agent: script, steps: *script}}\n" for i in range(2000))
    data, _ = parse_yaml(head + tasks, "shared.yaml")
    assert all(t["steps"] is data["script"] for t in data["tasks"])
    assert len(data["tasks"]) * 2 < ALIAS_FLOOR


@pytest.mark.parametrize("loader", ["libyaml", "pure"])
def test_reader_gives_what_safe_load_gives(loader: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if loader == "pure":
        monkeypatch.setattr(yaml_reader, "LOADER", yaml.SafeLoader)
    text = """\
a: [1, -2, 0x1F, 0o17, 1_000, 3.5, .inf, -.Inf, .nan, 6.02e23]
b: [true, False, yes, no, null, ~, '', "", 2026-12-01, 2026-12-01 14:00:00Z]
c: {'quoted 1': "1", plain: text with spaces, '<<': not a merge}
base: &base {x: 1, y: 2}
merged: {<<: *base, y: 3, z: !!str 4}
many: {<<: [{x: a}, {x: b, w: c}]}
block: |
  two
  lines
"""
    data, lines = parse_yaml(text, "scalars.yaml")
    expected = yaml.safe_load(text)
    assert repr(data) == repr(expected)  # repr: nan != nan
    assert lines.get(("b",)) == 2 and lines.get(("merged", "z")) == 5 and lines.get(("many", "w")) == 6
    for plan in sorted(PLANS.glob("*.yaml")):
        assert parse_yaml(plan.read_text(), plan.name)[0] == yaml.safe_load(plan.read_text())


def refused(count: int, evs: Events) -> bool:
    """Whether the run has logged ``count`` refused saves of its plan (``plan/invalid``)."""
    return len(of(evs, "plan/invalid")) == count


def test_a_hostile_save_over_a_live_plan_leaves_the_run_going(tmp_path: Path) -> None:
    plan = tmp_path / "live.yaml"
    gate = "name: live\ntasks:\n  - id: gate\n    agent: script\n    steps: [{wait: open}]\n"
    save(plan, gate)
    run_dir = tmp_path / "run"
    with running("run", str(plan), "--no-ui", "--keep-running", "--run-dir", str(run_dir), "--workspace",
                 str(tmp_path), cwd=tmp_path) as proc:
        wait_for(run_dir, lambda e: of(e, "agent/status", "gate"))
        for n, (name, (text, fragment, line)) in enumerate(
                (k, HOSTILE[k]) for k in ("bomb.yaml", "deep.yaml", "flow.yaml")):
            save(plan, text)
            evs = wait_for(run_dir, partial(refused, n + 1))
            error = of(evs, "plan/invalid")[-1]["error"]
            assert fragment in error["message"] and error["line"] == line, (name, error)
        # The run took none of it and still applies the next valid save.
        save(plan, gate + "  - id: after\n    agent: script\n    steps: [{done: ok}]\n")
        evs = wait_for(run_dir, lambda e: of(e, "agent/done", "after"))
        assert not of(evs, "agent/stopped") and not of(evs, "agent/error")
        assert [d["added"] for d in of(evs, "plan/diff")] == [["gate"], ["after"]]
        interrupt(proc, run_dir)
