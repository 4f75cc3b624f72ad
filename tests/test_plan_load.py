"""Loading plans: the example plans, YAML == EDN, normalised steps, policy, and the JSON Schema."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import PLANS

from agentctl.errors import PlanError
from agentctl.plan import FrozenDict, Plan, Step, Task, load_plan, parse_plan, plan_json_schema, thaw
from agentctl.plan.load import parse_edn, parse_yaml
from agentctl.plan.schema import STEP_OPS, TASK
from agentctl.policy import Budget, PolicyRule

BAD = Path(__file__).parent / "bad_plans"


@pytest.mark.parametrize("name", ["hello.yaml", "hello.edn", "locks.yaml"])
def test_example_plan_loads(name: str) -> None:
    plan = load_plan(PLANS / name)
    assert isinstance(plan, Plan)
    assert plan.source == str(PLANS / name)
    assert plan.tasks


def test_hello_yaml_and_edn_load_equal() -> None:
    yaml_plan, edn_plan = load_plan(PLANS / "hello.yaml"), load_plan(PLANS / "hello.edn")
    assert yaml_plan == edn_plan
    assert hash(yaml_plan.tasks) == hash(edn_plan.tasks)
    # Equal despite the YAML side knowing lines and the EDN side not.
    assert yaml_plan.tasks[0].line == 10 and edn_plan.tasks[0].line is None


def test_hello_is_a_two_level_tree_with_a_dependent_reporter() -> None:
    plan = load_plan(PLANS / "hello.yaml")
    greeter, reporter = plan.tasks
    spawn = next(s for s in greeter.steps if s.op == "spawn")
    child = spawn.arg
    assert isinstance(child, Task) and child.id == "greeter-helper" and child.agent == "script"
    assert child.budget == Budget(max_steps=10)
    assert [s.op for s in child.steps] == ["sleep", "append", "sleep", "done"]
    assert Step("wait", {"kind": "done", "timeout": 10.0}) in greeter.steps
    assert reporter.depends_on == ("greeter",)
    assert reporter.steps[-1].arg == {"report": "out/report.txt"}
    assert plan.defaults.tools == ("fs/read", "fs/write", "fs/append")
    assert plan.settings.tool_workers == 4 and plan.settings.llm_workers == 4


def test_locks_plan_shows_a_waiting_lock() -> None:
    plan = load_plan(PLANS / "locks.yaml")
    holder, contender = plan.tasks
    locks = [s.arg for s in contender.steps if s.op == "lock"]
    assert locks == [{"path": "out/shared.txt", "mode": "write", "timeout": 5.0}]
    assert {s.arg["path"] for s in holder.steps if s.op == "lock"} == {"out/shared.txt"}
    assert any(s.op == "unlock" for s in holder.steps)


def test_short_step_forms_expand_to_the_long_form() -> None:
    text = """name: forms
tasks:
  - id: a
    agent: script
    steps:
      - lock: out/a.txt
      - wait: ping
      - send: {to: parent}
      - call: {tool: fs/read}
      - sleep: 1
      - unlock: out/a.txt
      - fail: boom
"""
    steps = parse_plan(text, filename="forms.yaml").tasks[0].steps
    assert [s.arg for s in steps] == [
        {"path": "out/a.txt", "mode": "write", "timeout": 0.0},
        {"kind": "ping", "timeout": None},
        {"to": "parent", "kind": "chat", "body": None},
        {"tool": "fs/read", "args": {}},
        1.0,
        "out/a.txt",
        "boom",
    ]
    assert isinstance(steps[4].arg, float)
    assert [s.line for s in steps] == [6, 7, 8, 9, 10, 11, 12]


def test_spec_key_ignores_line_but_sees_every_spec_change() -> None:
    a = parse_plan("name: x\ntasks:\n  - {id: t, agent: script, steps: [{sleep: 1}]}\n", filename="a.yaml").tasks[0]
    b = parse_plan("name: x\n\n\ntasks:\n  - {id: t, agent: script, steps: [{sleep: 1}]}\n", filename="b.yaml").tasks[0]
    c = parse_plan("name: x\ntasks:\n  - {id: t, agent: script, steps: [{sleep: 2}]}\n", filename="c.yaml").tasks[0]
    assert a.line != b.line
    assert a.spec_key() == b.spec_key() and hash(a.spec_key()) == hash(b.spec_key())
    assert a.spec_key() != c.spec_key()


def test_edn_keywords_become_snake_case_keys_and_string_values() -> None:
    data = parse_edn('{:name "x" :tasks [{:id "t" :agent :python :step "m:f" :depends-on #{"b" "a"}}]}', "x.edn")
    assert data == {"name": "x", "tasks": [{"id": "t", "agent": "python", "step": "m:f", "depends_on": ["a", "b"]}]}


def test_yaml_lines_are_recorded_per_key_path() -> None:
    data, lines = parse_yaml("name: x\ntasks:\n  - id: a\n    agent: script\n", "x.yaml")
    assert data == {"name": "x", "tasks": [{"id": "a", "agent": "script"}]}
    assert lines.get(("name",)) == 1 and lines.get(("tasks", 0)) == 3 and lines.get(("tasks", 0, "agent")) == 4


def test_yaml_merge_keys_are_resolved() -> None:
    text = """name: merge
tasks:
  - &base {id: a, agent: script, steps: [{done: 1}]}
  - <<: *base
    id: b
"""
    plan = parse_plan(text, filename="m.yaml")
    assert [t.id for t in plan.tasks] == ["a", "b"]
    assert plan.tasks[1].steps == plan.tasks[0].steps


def test_policy_becomes_a_runtime_policy() -> None:
    text = """name: p
policy:
  model_rank: [big, medium, small]
  depth:
    1: {models: [medium, small], tools: [fs/read], budget: {max_steps: 20}}
    0: {models: [big]}
tasks: []
"""
    plan = parse_plan(text, filename="p.yaml")
    assert plan.policy is not None
    policy = plan.policy.to_policy()
    assert policy.model_rank == ("big", "medium", "small")
    assert policy.rule_for(0) == PolicyRule(models=("big",))
    assert policy.rule_for(3) == PolicyRule(("medium", "small"), frozenset({"fs/read"}), Budget(max_steps=20))
    edn = parse_plan('{:name "p" :policy {:model-rank [:big :medium :small] :depth {0 {:models ["big"]} '
                     '1 {:models [:medium :small] :tools ["fs/read"] :budget {:max-steps 20}}}} :tasks []}',
                     filename="p.edn")
    assert edn == plan


def test_settings_and_defaults_are_filled() -> None:
    text = "name: s\nsettings: {shell: true, restart_period: 2}\ndefaults: {restart: permanent, model: m}\ntasks: []\n"
    plan = parse_plan(text, filename="s.yaml")
    assert plan.settings.shell is True and plan.settings.restart_period == 2.0
    assert isinstance(plan.settings.restart_period, float)
    assert plan.defaults.restart == "permanent" and plan.defaults.model == "m"


def test_task_with_topology_and_python_step() -> None:
    text = "name: t\ntasks:\n  - {id: p, agent: python, step: 'pkg.mod:step', topology: {allow_peer: true}}\n"
    task = parse_plan(text, filename="t.yaml").tasks[0]
    assert task.step == "pkg.mod:step"
    assert task.topology == {"allow_peer": True}
    assert isinstance(task.topology, FrozenDict)


def test_thaw_gives_plain_json_data() -> None:
    plan = load_plan(PLANS / "hello.yaml")
    assert json.dumps(thaw(plan.tasks[1].steps[-1].arg)) == '{"report": "out/report.txt"}'


def test_unsupported_extension_is_refused_by_parse_plan_too() -> None:
    with pytest.raises(PlanError, match=r"supported: \.yaml, \.yml, \.edn"):
        parse_plan("name: x", filename="plan.toml")


# -- the JSON Schema ------------------------------------------------------------------


def _validate(schema: dict[str, Any], value: Any, root: dict[str, Any]) -> bool:
    """A tiny checker for the JSON Schema subset the plan schema uses."""
    if "$ref" in schema:
        return _validate(root["$defs"][schema["$ref"].rsplit("/", 1)[1]], value, root)
    if "oneOf" in schema:
        return sum(_validate(s, value, root) for s in schema["oneOf"]) == 1
    kind = schema.get("type")
    checks = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
    }
    if kind and not checks[kind](value):
        return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    if "pattern" in schema and not re.search(schema["pattern"], value):
        return False
    if "minimum" in schema and value < schema["minimum"]:
        return False
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        return False
    if kind == "array":
        return all(_validate(schema.get("items", {}), v, root) for v in value)
    if kind == "object":
        props, patterns = schema.get("properties", {}), schema.get("patternProperties", {})
        if any(k not in value for k in schema.get("required", [])):
            return False
        for k, v in value.items():
            k = str(k)
            sub = props[k] if k in props else next((s for p, s in patterns.items() if re.search(p, k)), None)
            if sub is None:
                if schema.get("additionalProperties", True) is False:
                    return False
            elif not _validate(sub, v, root):
                return False
    return True


def test_schema_is_json_and_lists_the_task_keys() -> None:
    schema = json.loads(json.dumps(plan_json_schema()))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    task = schema["properties"]["tasks"]["items"]
    assert set(task["properties"]) == set(TASK.names) >= {"id", "agent", "depends_on", "steps", "step", "budget"}
    assert task["required"] == ["id", "agent"]
    assert task["additionalProperties"] is False
    ops = [next(iter(v["properties"])) for v in schema["$defs"]["steps"]["items"]["oneOf"]]
    assert ops == list(STEP_OPS)


@pytest.mark.parametrize("name", ["hello.yaml", "locks.yaml"])
def test_schema_accepts_the_example_plans(name: str) -> None:
    data, _ = parse_yaml((PLANS / name).read_text(), name)
    schema = plan_json_schema()
    assert _validate(schema, data, schema)


@pytest.mark.parametrize("name", ["unknown_task_key.yaml", "wrong_type.yaml", "bad_step_op.yaml",
                                  "bad_nested_spawn.yaml", "negative_budget.yaml", "python_step_without_colon.yaml"])
def test_schema_rejects_what_the_validator_rejects(name: str) -> None:
    data, _ = parse_yaml((BAD / name).read_text(), name)
    schema = plan_json_schema()
    assert not _validate(schema, data, schema)
