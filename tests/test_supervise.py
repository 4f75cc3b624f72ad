"""Per-agent supervision: a task's (and a spawn's, and a depth's) ``supervise:`` block.

How an agent supervises the children it spawns (strategy, ``max_restarts`` in
``restart_period`` seconds) is granted like a budget: inherited by what it spawns, which may
tighten it and never loosen it. Checked through the policy, the runtime in this process, and
real plans run and validated through the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import events, invoke, of

from agentctl import actions as act
from agentctl.errors import PolicyError
from agentctl.policy import DEFAULT_SUPERVISION, Policy, PolicyRule, Supervision, grant_supervision
from agentctl.runtime import AgentSpec, StepContext, open_runtime

NONE = Supervision()


# ------------------------------------------------------------------ the policy


def test_a_child_inherits_its_parents_supervision_and_may_tighten_it() -> None:
    parent = Supervision("one_for_all", 2, 10.0)
    assert grant_supervision(None, parent, NONE, 2) == parent
    assert grant_supervision(Supervision(max_restarts=0), parent, NONE, 2) == Supervision("one_for_all", 0, 10.0)
    assert grant_supervision(Supervision("rest_for_one", 1, 60), parent, NONE, 2) == Supervision("rest_for_one", 1, 60)


@pytest.mark.parametrize(("asked", "error"), [
    (Supervision(max_restarts=3), "max_restarts 3 exceeds its parent's 2"),
    (Supervision(max_restarts=10**9), "max_restarts 1000000000 exceeds its parent's 2"),
    (Supervision(restart_period=0.001), "restart_period 0.001 is shorter than its parent's 10"),
])
def test_a_child_asking_for_a_looser_intensity_than_its_parent_is_refused(asked: Supervision, error: str) -> None:
    with pytest.raises(PolicyError, match=error) as refused:
        grant_supervision(asked, Supervision("one_for_one", 2, 10.0), NONE, 2)
    assert refused.value.rule == "supervise"


def test_a_depth_rule_caps_what_is_inherited_and_refuses_what_asks_past_it() -> None:
    rule = Supervision("one_for_all", 1, 30.0)
    assert grant_supervision(None, Supervision("one_for_one", 5, 1.0), rule, 3) == Supervision("one_for_all", 1, 30.0)
    with pytest.raises(PolicyError, match="max_restarts 2 exceeds the depth 3 policy's 1"):
        grant_supervision(Supervision(max_restarts=2), Supervision("one_for_one", 5, 1.0), rule, 3)


def test_a_task_neither_inherits_from_nor_is_capped_by_the_plans_root() -> None:
    """A root's children (a plan's tasks) are the plan author's word: the default fills in."""
    assert grant_supervision(None, None, NONE, 1) == DEFAULT_SUPERVISION
    assert grant_supervision(Supervision(max_restarts=50, restart_period=0.5), None, NONE, 1) == Supervision("one_for_one", 50, 0.5)


# ------------------------------------------------------------------ the runtime


def crasher(ctx: StepContext) -> list:
    raise RuntimeError(f"boom in {ctx.agent_id}")


def idle(ctx: StepContext) -> list:
    return []


def spawner(*children: AgentSpec):
    def step(ctx: StepContext) -> list:
        return [act.spawn(c) for c in children] if ctx.reason == "start" else []

    return step


async def settle(rounds: int = 200) -> None:
    import anyio

    for _ in range(rounds):
        await anyio.sleep(0)


@pytest.mark.anyio
async def test_max_restarts_0_gives_up_at_the_first_failure(recorder) -> None:
    sup = AgentSpec("sup", spawner(AgentSpec("w", crasher)), restart="temporary", max_restarts=0)
    async with open_runtime(recorder) as rt:
        rt.spawn(AgentSpec("top", spawner(sup)))
        await settle()
        assert recorder.of_type("agent/restarted") == []
        (gave_up,) = [e for e in recorder.of_type("agent/error") if e["agent_id"] == "sup"]
        assert gave_up["error"] == "restart intensity exceeded: more than 0 restarts in 5.0s (last offender w)"
        assert not rt.is_live("sup") and rt.is_live("top")


@pytest.mark.anyio
async def test_one_for_all_under_a_task_restarts_all_three_children_when_one_fails(recorder) -> None:
    """max_restarts 1: the first failure restarts the three (the other two stopped first,
    reverse start order); the second is one too many, and the supervisor fails."""
    starts: dict[str, int] = {}

    def fails_on_every_start(ctx: StepContext) -> list:
        starts[ctx.agent_id] = starts.get(ctx.agent_id, 0) + 1
        raise RuntimeError("again")

    kids = [AgentSpec("a", idle), AgentSpec("b", fails_on_every_start), AgentSpec("c", idle)]
    sup = AgentSpec("sup", spawner(*kids), restart="temporary", strategy="one_for_all", max_restarts=1, restart_period=60)
    async with open_runtime(recorder) as rt:
        rt.spawn(AgentSpec("top", spawner(sup)))
        await settle()
        restarted = recorder.of_type("agent/restarted")
        assert [(e["agent_id"], e["offender"], e["strategy"], e["restarts"]) for e in restarted] == [
            ("a", "b", "one_for_all", 1), ("b", "b", "one_for_all", 1), ("c", "b", "one_for_all", 1)]
        assert [e["agent_id"] for e in recorder.of_type("agent/stopped")][:2] == ["c", "a"]
        assert starts == {"b": 2}
        errors = [e["error"] for e in recorder.of_type("agent/error") if e["agent_id"] == "sup"]
        assert errors == ["restart intensity exceeded: more than 1 restarts in 60s (last offender b)"]
        assert not any(rt.is_live(x) for x in ("sup", "a", "b", "c")) and rt.is_live("top")


@pytest.mark.anyio
async def test_a_hostile_agent_cannot_grant_its_child_more_restarts_than_it_has(recorder) -> None:
    """An agent's step (untrusted) asks for a child with a billion restarts and a 1 ms window:
    refused, out loud; a child that asks nothing gets its parent's, and its own child
    asking for more is refused too."""
    results: list = []

    def hostile(ctx: StepContext) -> list:
        results.extend(ctx.results)
        if ctx.reason != "start":
            return []
        return [act.spawn(AgentSpec("greedy", idle, max_restarts=10**9)),
                act.spawn(AgentSpec("quick", idle, restart_period=0.001)),
                act.spawn(AgentSpec("meek", spawner(AgentSpec("greedier", idle, max_restarts=2))))]

    task = AgentSpec("task", hostile, max_restarts=1, restart_period=30)
    async with open_runtime(recorder) as rt:
        rt.spawn(AgentSpec("plan", spawner(task)))
        await settle()
        assert [r.ok for r in results] == [False, False, True]
        refused = {e["child_id"]: e for e in recorder.of_type("policy/refused")}
        assert refused["greedy"]["rule"] == "supervise"
        assert refused["greedy"]["error"] == "max_restarts 1000000000 exceeds its parent's 1"
        assert refused["quick"]["error"] == "restart_period 0.001 is shorter than its parent's 30"
        assert refused["greedier"]["error"] == "max_restarts 2 exceeds its parent's 1"
        spawned = {e["agent_id"]: e["supervise"] for e in recorder.of_type("agent/spawned")}
        assert spawned["task"] == {"strategy": "one_for_one", "max_restarts": 1, "restart_period": 30}
        assert spawned["meek"] == spawned["task"]
        assert set(spawned) == {"plan", "task", "meek"}


@pytest.mark.anyio
async def test_a_depth_policy_caps_agents_below_it(recorder) -> None:
    policy = Policy(rules={2: PolicyRule(supervise=Supervision("rest_for_one", 0, 60.0))})
    async with open_runtime(recorder, policy=policy) as rt:
        rt.spawn(AgentSpec("plan", spawner(AgentSpec("task", spawner(AgentSpec("w", spawner(AgentSpec("x", idle))))))))
        await settle()
        spawned = {e["agent_id"]: e["supervise"] for e in recorder.of_type("agent/spawned")}
        assert spawned["task"] == {"strategy": "one_for_one", "max_restarts": 3, "restart_period": 5.0}
        assert spawned["w"] == spawned["x"] == {"strategy": "rest_for_one", "max_restarts": 0, "restart_period": 60.0}


# ------------------------------------------------------------------ plans, through the CLI


def _plan(tmp_path: Path, text: str) -> None:
    (tmp_path / "plan.yaml").write_text(text)


ONE_FOR_ALL = """\
name: sup
tasks:
  - id: boss
    agent: script
    restart: temporary
    supervise: {strategy: one_for_all, max_restarts: 1, restart_period: 600}
    steps:
      - spawn: {id: a, agent: script, steps: [{wait: {kind: never, timeout: 30}}]}
      - spawn: {id: b, agent: script, steps: [{append: {path: b.txt, content: "b\\n"}}, {fail: again}]}
      - spawn: {id: c, agent: script, steps: [{wait: {kind: never, timeout: 30}}]}
      - wait: {kind: never, timeout: 30}
"""


def test_a_plans_task_supervises_its_three_children_one_for_all(tmp_path: Path) -> None:
    _plan(tmp_path, ONE_FOR_ALL)
    done = invoke("run", "plan.yaml", "--no-ui", "--no-watch-plan", "--run-dir", "run", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    evs = events(tmp_path / "run")
    assert [(e["agent_id"], e["offender"]) for e in of(evs, "agent/restarted")] == [("a", "b"), ("b", "b"), ("c", "b")]
    assert [e["error"] for e in of(evs, "agent/error", "boss")] == [
        "restart intensity exceeded: more than 1 restarts in 600.0s (last offender b)"]
    assert (tmp_path / "b.txt").read_text() == "b\n" * 2
    spawned = {e["agent_id"]: e["supervise"] for e in of(evs, "agent/spawned")}
    assert spawned["boss"] == spawned["a"] == {"strategy": "one_for_all", "max_restarts": 1, "restart_period": 600.0}
    described = json.loads(invoke("describe", "run", "a", "-o", "json", cwd=tmp_path).stdout)
    assert described["spec"]["supervise"] == spawned["a"]
    assert "one_for_all, 1 restart in 600s" in invoke("describe", "run", "boss", cwd=tmp_path).stdout


@pytest.mark.parametrize(("where", "value", "key", "expected", "got"), [
    ("task", "{max_restarts: -1}", "tasks[0].supervise.max_restarts", "integer >= 0", "integer -1"),
    ("task", "{restart_period: 0}", "tasks[0].supervise.restart_period", "number > 0", "integer 0"),
    ("task", "{strategy: one_for_some}", "tasks[0].supervise.strategy", "one of 'one_for_one'", "string 'one_for_some'"),
    ("task", "{max_restart: 1}", "tasks[0].supervise.max_restart", "one of strategy, max_restarts", "string 'max_restart'"),
    ("policy", "{max_restarts: 1.5}", "policy.depth[2].supervise.max_restarts", "integer >= 0", "number 1.5"),
    ("defaults", "{restart_period: -2}", "defaults.supervise.restart_period", "number > 0", "integer -2"),
])
def test_a_bad_supervise_value_is_one_line_with_where_expected_and_got(
        tmp_path: Path, where: str, value: str, key: str, expected: str, got: str) -> None:
    task = "  - id: t\n    agent: script\n    steps: [{done: ok}]\n"
    text = {
        "task": f"name: x\ntasks:\n{task}    supervise: {value}\n",
        "policy": f"name: x\npolicy:\n  depth:\n    2: {{supervise: {value}}}\ntasks:\n{task}",
        "defaults": f"name: x\ndefaults:\n  supervise: {value}\ntasks:\n{task}",
    }[where]
    _plan(tmp_path, text)
    line = 1 + text.splitlines().index(next(ln for ln in text.splitlines() if "supervise" in ln))
    for command in ("validate", "run"):
        out = invoke(command, "plan.yaml", "--no-ui", "--run-dir", "run", cwd=tmp_path) if command == "run" else \
            invoke(command, "plan.yaml", cwd=tmp_path)
        assert out.returncode == 2, out.stdout
        (message,) = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]
        assert f"plan.yaml:{line}" in message and key in message and expected in message and got in message, message
        assert "Traceback" not in out.stderr


def test_validate_reports_a_scripted_spawn_asking_for_more_restarts_than_its_task(tmp_path: Path) -> None:
    _plan(tmp_path, """\
name: x
tasks:
  - id: boss
    agent: script
    supervise: {max_restarts: 1}
    steps:
      - spawn:
          id: w
          agent: script
          supervise: {max_restarts: 5}
          steps: [{done: ok}]
""")
    out = invoke("validate", "plan.yaml", cwd=tmp_path)
    assert out.returncode == 2
    assert "plan.yaml:10" in out.stderr + out.stdout
    assert "tasks[0].steps[0].spawn.supervise" in out.stderr + out.stdout
    assert "max_restarts 5 exceeds its parent's 1" in out.stderr + out.stdout


def test_the_schema_describes_supervise_for_tasks_spawns_defaults_and_depths(tmp_path: Path) -> None:
    schema = json.loads(invoke("schema", cwd=tmp_path).stdout)
    task = schema["properties"]["tasks"]["items"]["properties"]
    rule = schema["properties"]["policy"]["properties"]["depth"]["patternProperties"]["^[0-9]+$"]["properties"]
    for block in (task["supervise"], rule["supervise"], schema["properties"]["defaults"]["properties"]["supervise"]):
        props = block["properties"]
        assert props["strategy"]["enum"] == ["one_for_one", "one_for_all", "rest_for_one"]
        assert props["max_restarts"]["minimum"] == 0 and props["restart_period"]["exclusiveMinimum"] == 0
        assert block["additionalProperties"] is False
    spawn = next(v for v in schema["$defs"]["steps"]["items"]["oneOf"] if "spawn" in v["properties"])
    assert "supervise" in spawn["properties"]["spawn"]["properties"]


QUICK = """\
name: quick
tasks:
  - id: boss
    agent: script
    restart: temporary
    budget: {max_steps: 40}
    supervise: {max_restarts: 1, restart_period: 0.001}
    steps:
      - spawn: {id: w, agent: script, steps: [{append: {path: w.txt, content: "x\\n"}}, {fail: again}]}
      - wait: {kind: done, timeout: 30}
"""


def test_a_1ms_restart_period_restarts_a_failing_child_only_as_far_as_its_budget_goes(tmp_path: Path) -> None:
    """One restart per millisecond is what was asked for: a child failing at once is restarted
    again and again, unless two failures fall within 1 ms (the supervisor gives up). Either
    way the run ends: a restart does not renew the child's budget (half of boss's 40 steps,
    two a start), so it runs out after at most 9 restarts."""
    _plan(tmp_path, QUICK)
    done = invoke("run", "plan.yaml", "--no-ui", "--no-watch-plan", "--run-dir", "run", cwd=tmp_path)
    evs = events(tmp_path / "run")
    restarts = len(of(evs, "agent/restarted", "w"))
    assert 1 <= restarts <= 9
    assert (tmp_path / "w.txt").read_text() == "x\n" * (restarts + 1)
    gave_up = [e["error"] for e in of(evs, "agent/error", "boss")]
    ran_out = [e["reason"] for e in of(evs, "agent/done", "w")]
    assert (gave_up, ran_out) in (([], ["max_steps"]), (
        ["restart intensity exceeded: more than 1 restarts in 0.001s (last offender w)"], []))
    assert done.returncode == (0 if ran_out else 1)


DEFAULTED = """\
name: d
defaults:
  supervise: {max_restarts: 0, restart_period: 60}
tasks:
  - id: boss
    agent: script
    restart: temporary
    steps:
      - spawn: {id: w, agent: script, steps: [{fail: again}]}
      - wait: {kind: never, timeout: 30}
  - id: lenient
    agent: script
    supervise: {max_restarts: 4}
    steps: [{done: ok}]
"""


def test_defaults_supervise_is_every_tasks_unless_it_says_otherwise(tmp_path: Path) -> None:
    _plan(tmp_path, DEFAULTED)
    assert invoke("run", "plan.yaml", "--no-ui", "--no-watch-plan", "--run-dir", "run", cwd=tmp_path).returncode == 1
    evs = events(tmp_path / "run")
    spawned = {e["agent_id"]: e["supervise"] for e in of(evs, "agent/spawned")}
    assert spawned["boss"] == spawned["w"] == {"strategy": "one_for_one", "max_restarts": 0, "restart_period": 60.0}
    assert spawned["lenient"] == {"strategy": "one_for_one", "max_restarts": 4, "restart_period": 60.0}
    assert of(evs, "agent/restarted") == []
    assert [e["error"] for e in of(evs, "agent/error", "boss")] == [
        "restart intensity exceeded: more than 0 restarts in 60.0s (last offender w)"]


def test_a_live_edit_changes_the_supervision_of_the_tasks_it_touches_and_no_other() -> None:
    from agentctl.plan.load import parse_plan
    from agentctl.reconcile.live import supervision_changes

    old = parse_plan(DEFAULTED, filename="p.yaml")
    assert supervision_changes(old, old) == {}
    looser = parse_plan(DEFAULTED.replace("max_restarts: 0,", "max_restarts: 2,"), filename="p.yaml")
    assert supervision_changes(old, looser) == {"boss": Supervision(max_restarts=2, restart_period=60.0)}
    mine = parse_plan(DEFAULTED.replace("{max_restarts: 4}", "{strategy: rest_for_one}"), filename="p.yaml")
    assert supervision_changes(old, mine) == {"lenient": Supervision("rest_for_one", 0, 60.0)}
    assert old.tasks[1].spec_key() == mine.tasks[1].spec_key()  # so the reconcile restarts nothing


@pytest.mark.anyio
async def test_a_hostile_model_cannot_ask_agent_spawn_for_restarts(recorder, tmp_path: Path) -> None:
    """The model asks for a child with a million restarts, two ways: the bridge tool has no
    such argument, so both calls come back to it as errors and spawn nothing; the child it
    then spawns plainly gets its parent's supervision (1 restart in 30 s), no more."""
    from agentctl.agents.llm import LLMAgentConfig, llm_child_spec, llm_step
    from agentctl.plan.model import Task
    from agentctl.services.llm.base import ChatReply, ChatRequest, ToolCall
    from agentctl.services.llm.scripted import ScriptedProvider
    from agentctl.services.tools import default_registry
    from agentctl.services.workers import LocalWorkPlane

    def call(args: dict, id: str) -> ToolCall:
        return ToolCall(id=id, name="agent/spawn", arguments=args)

    greedy = {"max_restarts": 10**6, "restart_period": 0.001}

    def answer(request: ChatRequest) -> object:
        if "agent 'w'" in request.messages[0]["content"]:
            return "w done"
        last = request.messages[-1]
        if last["role"] == "user" and "Child agent w finished" in last["content"]:
            return "all done"
        if last["role"] == "tool":
            return ChatReply("", (call({"id": "w", "instructions": "work"}, "s3"),))
        return ChatReply("", (call({"id": "g1", "instructions": "work", "supervise": greedy}, "s1"),
                              call({"id": "g2", "instructions": "work", **greedy}, "s2")))

    provider = ScriptedProvider(answer)
    boss = AgentSpec("boss", llm_step(Task(id="boss", agent="llm", instructions="delegate"), LLMAgentConfig()),
                     kind="llm", tools=frozenset({"agent/spawn"}), max_restarts=1, restart_period=30)
    tools = default_registry()
    plane = LocalWorkPlane(recorder, tools=tools, providers={"p": provider}, default_provider="p")
    async with open_runtime(recorder, tools=tools, plane=plane, workspace=tmp_path,
                            llm_child=llm_child_spec) as rt:
        rt.spawn(AgentSpec("plan", spawner(boss)))
        exit = await rt.wait("boss")
    assert exit.status == "ok"
    asked = [r for r in provider.requests if "agent 'boss'" in r.messages[0]["content"]][1]
    fed = [m["content"] for m in asked.messages if m["role"] == "tool"]
    assert fed == [f"error: agent/spawn: arguments.{name}: unknown argument (allowed: budget, id, instructions, model, tools)"
                   for name in ("supervise", "max_restarts")]
    spawned = {e["agent_id"]: e["supervise"] for e in recorder.of_type("agent/spawned")}
    assert "g1" not in spawned and "g2" not in spawned
    assert spawned["w"] == spawned["boss"] == {"strategy": "one_for_one", "max_restarts": 1, "restart_period": 30}
