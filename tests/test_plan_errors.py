"""Broken plans give precise errors: the message, the 1-based line and the key path.

Each file in ``tests/bad_plans/`` has one row in ``EXPECTED`` (a file without a row
fails ``test_every_bad_plan_has_an_expectation``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agentctl.errors import PlanError
from agentctl.plan import load_plan, parse_plan

BAD = Path(__file__).parent / "bad_plans"

# file: (message fragment, line, key path)
EXPECTED: dict[str, tuple[str, int | None, str | None]] = {
    "syntax_error.yaml": ("YAML syntax error: while parsing a flow sequence", 6, None),
    "syntax_error.edn": ("EDN syntax error: unexpected '}'", 4, None),
    "empty.yaml": ("plan file is empty", 1, None),
    "unsupported.json": ("unsupported plan file extension '.json'; supported: .yaml, .yml, .edn", None, None),
    "unknown_top_key.yaml": ("unknown key 'task' (did you mean 'tasks'?)", 2, "task"),
    "unknown_task_key.yaml": ("unknown key 'depends' (did you mean 'depends_on'?)", 8, "tasks[1].depends"),
    "unknown_key.edn": ("unknown key 'dependson' (did you mean 'depends_on'?)", None, "tasks[1].dependson"),
    "wrong_type.yaml": ("wrong type (expected integer >= 1, got string 'ten')", 7, "tasks[0].budget.max_steps"),
    "missing_id.yaml": ("missing required key 'id'", 6, "tasks[1]"),
    "duplicate_ids.yaml": ("duplicate task id 'a', already used by tasks[0] (line 3)", 9, "tasks[2].id"),
    "duplicate_key.yaml": ("duplicate key 'id' (first at line 3)", 6, "tasks[0].id"),
    "cycle.yaml": ("dependency cycle: a -> b -> c -> a", 8, "tasks[1].depends_on[1]"),
    "unknown_dependency.yaml": ("depends_on names unknown task 'greter' (did you mean 'greeter'?)", 10,
                                "tasks[1].depends_on[1]"),
    "bad_step_op.yaml": ("unknown step op 'wirte' (did you mean 'write'?)", 7, "tasks[0].steps[1].wirte"),
    "bad_nested_spawn.yaml": ("missing required key 'content'", 10, "tasks[0].steps[0].spawn.steps[1].write"),
    "python_step_without_colon.yaml": ("invalid value (expected 'module:function', got string 'mypkg.steps.calc')",
                                       5, "tasks[0].step"),
    "negative_budget.yaml": ("value out of range (expected integer >= 0, got integer -1)", 8,
                             "tasks[0].budget.max_tool_calls"),
    "negative_sleep.yaml": ("value out of range (expected number >= 0, got number -0.5)", 6,
                            "tasks[0].steps[0].sleep"),
    "bad_durability.yaml": ("unknown value 'sometimes' (expected one of 'none', 'batch', 'always'", 3,
                            "settings.durability"),
    "bad_lock_mode.yaml": ("unknown value 'exclusive' (expected one of 'read', 'write'", 6,
                           "tasks[0].steps[0].lock.mode"),
    "bad_on_interrupted.yaml": ("unknown value 'again' (expected one of 'fail', 'retry'", 5, "tasks[0].on_interrupted"),
    "bad_agent_kind.yaml": ("unknown value 'scirpt' (did you mean 'script'?)", 4, "tasks[0].agent"),
    "llm_without_instructions.yaml": ("missing required key 'instructions': agent 'llm' needs it", 3, "tasks[0]"),
    "steps_on_python_task.yaml": ("'steps' only applies to agent 'script', this task is agent 'python'", 6,
                                  "tasks[0].steps"),
    "two_keys_in_step.yaml": ("a step is a mapping with exactly one key, the op (expected {op: argument}, "
                              "got mapping with keys 'write', 'path', 'content')", 6, "tasks[0].steps[0]"),
    "bad_policy_depth.yaml": ("invalid depth (expected integer >= 0, got string 'one')", 6, "policy.depth.one"),
    "unknown_provider.yaml": ("unknown provider 'lcoal' in model 'lcoal/qwen3:8b' (expected <provider>/<model>, "
                              "provider one of: local, cloud, got 'lcoal/qwen3:8b')", 9, "tasks[0].model"),
    "model_without_provider.yaml": ("model 'small' names no provider", 5, "policy.model_rank[1]"),
}


def test_every_bad_plan_has_an_expectation() -> None:
    assert sorted(p.name for p in BAD.iterdir()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_plan_names_message_line_and_path(name: str) -> None:
    fragment, line, path = EXPECTED[name]
    file = BAD / name
    with pytest.raises(PlanError) as info:
        load_plan(file)
    err = info.value
    assert fragment in str(err)
    assert err.line == line
    assert err.path == path
    assert err.file == str(file)
    # The one-line rendering leads with file:line so editors and terminals can jump there.
    assert str(err).startswith(f"{file}:{line}: " if line is not None else f"{file}: ")


def test_error_to_dict_carries_expected_and_got() -> None:
    with pytest.raises(PlanError) as info:
        load_plan(BAD / "wrong_type.yaml")
    d = info.value.to_dict()
    assert d["expected"] == "integer >= 1"
    assert d["got"] == "string 'ten'"
    assert d["message"] == "wrong type"


def test_missing_file_is_a_plan_error(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="cannot read plan file"):
        load_plan(tmp_path / "nope.yaml")


def test_boolean_is_not_an_integer() -> None:
    text = "name: x\ntasks:\n  - id: a\n    agent: script\n    budget: {max_steps: true}\n    steps: [{done: 1}]\n"
    with pytest.raises(PlanError) as info:
        parse_plan(text, filename="p.yaml")
    assert info.value.got == "boolean true"
    assert info.value.line == 5


def test_edn_with_two_top_level_forms_is_refused() -> None:
    with pytest.raises(PlanError, match="exactly one map, found 2"):
        parse_plan('{:name "a" :tasks []} {:name "b"}', filename="p.edn")


def test_top_level_list_is_refused() -> None:
    with pytest.raises(PlanError) as info:
        parse_plan("- id: a\n", filename="p.yaml")
    assert info.value.got == "list"
    assert info.value.expected == "mapping"


def test_self_dependency_is_a_cycle() -> None:
    text = "name: x\ntasks:\n  - id: a\n    agent: script\n    depends_on: [a]\n    steps: [{done: 1}]\n"
    with pytest.raises(PlanError, match="dependency cycle: a -> a") as info:
        parse_plan(text, filename="p.yaml")
    assert info.value.line == 5


def test_spawned_child_may_not_reuse_a_task_id() -> None:
    text = """name: x
tasks:
  - id: a
    agent: script
    steps:
      - spawn: {id: b, steps: [{done: 1}]}
  - id: b
    agent: script
    steps: [{done: 1}]
"""
    with pytest.raises(PlanError, match="spawned child id 'b' is already a task id") as info:
        parse_plan(text, filename="p.yaml")
    assert info.value.path == "tasks[0].steps[0].spawn.id"
    assert info.value.line == 6


def test_spawned_child_must_be_a_script() -> None:
    text = "name: x\ntasks:\n  - id: a\n    agent: script\n    steps:\n      - spawn: {id: b, agent: llm, steps: []}\n"
    with pytest.raises(PlanError, match="unknown value 'llm'") as info:
        parse_plan(text, filename="p.yaml")
    assert info.value.path == "tasks[0].steps[0].spawn.agent"


def test_first_error_in_file_order_wins() -> None:
    text = "name: x\ntasks:\n  - id: a\n    agent: script\n    budget: {max_steps: 0}\n    steps: [{sleep: -1}]\n"
    with pytest.raises(PlanError) as info:
        parse_plan(text, filename="p.yaml")
    assert info.value.path == "tasks[0].budget.max_steps"
