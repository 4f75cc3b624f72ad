"""Actions carried out by the runtime: parallel batches, ticks, locks, budgets and policy."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from agentctl import actions as act
from agentctl.policy import Budget, Policy, PolicyRule
from agentctl.runtime import AgentSpec, StepContext, open_runtime
from agentctl.services.tools import ToolRegistry
from agentctl.services.workers import LocalWorkPlane

pytestmark = pytest.mark.anyio


def make_registry() -> ToolRegistry:
    reg = ToolRegistry()

    @reg.tool("test/nap", description="Sleep a little, then echo.")
    async def nap(seconds: float, tag: str) -> str:
        await anyio.sleep(seconds)
        return tag

    @reg.tool("test/echo", description="Echo.")
    def echo(tag: str) -> str:
        return tag

    return reg


def runtime_options(recorder, tmp_path: Path, **kw):
    reg = make_registry()
    return dict(tools=reg, plane=LocalWorkPlane(recorder, tools=reg), workspace=tmp_path, **kw)


def script(*batches):
    """A step that returns the given action batches one per step, then finishes."""

    def step(ctx: StepContext) -> list:
        ctx.state.setdefault("seen", []).append(ctx.results)
        i = ctx.step_no - 1
        return list(batches[i]) if i < len(batches) else [act.done("ok", ctx.state["seen"])]

    return step


async def test_parallel_runs_members_concurrently_and_answers_in_order(recorder, tmp_path) -> None:
    batch = act.parallel([act.call_tool("test/nap", {"seconds": 0.2, "tag": "slow"}),
                          act.call_tool("test/nap", {"seconds": 0.01, "tag": "fast"})])
    async with open_runtime(recorder, **runtime_options(recorder, tmp_path)) as rt:
        rt.spawn(AgentSpec("p", script([batch])))
        exit = await rt.wait("p")
    result = exit.result[1][0]
    assert [r.value for r in result.value] == ["slow", "fast"]
    kinds = [(e["type"], e.get("result")) for e in recorder.events if e["type"].startswith("tool/")]
    # Both calls were requested before either finished, and the fast one finished first.
    assert [k for k, _ in kinds] == ["tool/requested", "tool/requested", "tool/result", "tool/result"]
    assert [r for k, r in kinds if k == "tool/result"] == ["fast", "slow"]


async def test_a_message_ends_every_wake_on_message_sleep_of_a_batch(recorder, tmp_path) -> None:
    """Two sleeps that a message ends, in one batch beside a call: a message that comes
    while both wait ends both (they used to share one wake field, so the first slept on)."""
    batch = act.parallel([act.sleep(60, wake_on_message=True), act.sleep(60, wake_on_message=True),
                          act.call_tool("test/echo", {"tag": "x"})])
    with anyio.fail_after(30):
        async with open_runtime(recorder, **runtime_options(recorder, tmp_path)) as rt:
            rt.spawn(AgentSpec("p", script([batch])))
            while (rt.info("p") or {}).get("status") != "waiting":
                await anyio.sleep(0.01)
            await anyio.sleep(0.1)  # the second sleep waits too by now (if not, it sees the message at once)
            assert rt.send("user", "p", "ping").ok
            exit = await rt.wait("p")
    assert [(r.ok, r.value) for r in exit.result[1][0].value] == [(True, "message"), (True, "message"), (True, "x")]


async def test_ticks_wake_an_idle_agent(recorder, tmp_path) -> None:
    def ticker(ctx: StepContext) -> list:
        if ctx.reason == "tick":
            ctx.state["ticks"] = ctx.state.get("ticks", 0) + 1
            if ctx.state["ticks"] == 3:
                return [act.done("ok", ctx.state["ticks"])]
        return []

    async with open_runtime(recorder, **runtime_options(recorder, tmp_path)) as rt:
        rt.spawn(AgentSpec("t", ticker, budget=Budget(tick_ms=10)))
        exit = await rt.wait("t")
    assert exit.result == 3


async def test_locks_conflict_and_are_freed_when_the_holder_crashes(recorder, tmp_path) -> None:
    def holder(ctx: StepContext) -> list:
        if ctx.reason == "start":
            return [act.acquire_lock("src")]
        raise RuntimeError("crash while holding src")

    async with open_runtime(recorder, **runtime_options(recorder, tmp_path)) as rt:
        rt.spawn(AgentSpec("h", holder, restart="temporary"))
        await rt.wait("h")
        rt.spawn(AgentSpec("w", script([act.acquire_lock("src/a.py")])))
        exit = await rt.wait("w")
    assert exit.result[1][0].ok
    released = recorder.of_type("lock/released")
    assert released[0]["agent_id"] == "h" and released[0]["reason"] == "holder_ended"


async def test_a_waiting_lock_is_granted_once_the_holder_releases(recorder, tmp_path) -> None:
    opts = runtime_options(recorder, tmp_path)
    async with open_runtime(recorder, **opts) as rt:
        rt.spawn(AgentSpec("a", script([act.acquire_lock("f")], [act.sleep(0.05)], [act.release_lock("f")])))
        rt.spawn(AgentSpec("b", script([act.acquire_lock("f", timeout=5)])))
        exit = await rt.wait("b")
    assert exit.result[1][0].ok
    types = [(e["type"], e["agent_id"]) for e in recorder.events if e["type"].startswith("lock/")]
    assert types.index(("lock/released", "a")) < types.index(("lock/acquired", "b"))
    assert ("lock/conflict", "b") in types


@pytest.mark.parametrize(
    ("budget", "batches", "reason"),
    [
        (Budget(max_steps=3), [[act.send("nobody")]] * 10, "max_steps"),
        (Budget(max_seconds=0.05), [[act.sleep(5)]], "max_seconds"),
    ],
)
async def test_running_out_of_budget_ends_the_agent(recorder, tmp_path, budget, batches, reason) -> None:
    async with open_runtime(recorder, **runtime_options(recorder, tmp_path)) as rt:
        rt.spawn(AgentSpec("b", script(*batches), budget=budget))
        exit = await rt.wait("b")
    assert exit.status == "budget_exceeded"
    assert recorder.of_type("agent/done")[0]["reason"] == reason


async def test_max_tool_calls_refuses_the_extra_call(recorder, tmp_path) -> None:
    calls = [[act.call_tool("test/echo", {"tag": str(i)})] for i in range(3)]
    async with open_runtime(recorder, **runtime_options(recorder, tmp_path)) as rt:
        rt.spawn(AgentSpec("b", script(*calls), budget=Budget(max_tool_calls=2)))
        exit = await rt.wait("b")
    oks = [seen[0].ok for seen in exit.result[1:]]
    assert oks == [True, True, False]
    assert len(recorder.of_type("tool/requested")) == 2


async def test_the_ledger_reserves_and_refunds_child_budgets(recorder, tmp_path) -> None:
    left: list = []

    def parent(ctx: StepContext) -> list:
        left.append(ctx.budget_left.max_steps)
        if ctx.reason == "start":
            return [act.spawn(AgentSpec("kid", script([act.send("parent", "x")]), budget=Budget(max_steps=10)))]
        if any(m.kind == "done" for m in ctx.messages):
            return [act.done()]
        return []

    async with open_runtime(recorder, **runtime_options(recorder, tmp_path)) as rt:
        rt.spawn(AgentSpec("p", parent, budget=Budget(max_steps=20)))
        await rt.wait("p")
    # start: 20-1; after spawning: 10 reserved; at the done message the kid's 2 steps are charged.
    assert left[0] == 19
    assert left[1] == 20 - 2 - 10
    assert left[-1] == 20 - len(left) - 2


@pytest.mark.parametrize(
    ("child", "rule"),
    [
        (AgentSpec("c", lambda ctx: [], tools=frozenset({"test/echo", "test/nap"})), "tools"),
        (AgentSpec("c", lambda ctx: [], budget=Budget(max_steps=50)), "budget"),
        (AgentSpec("c", lambda ctx: [], model="big"), "model"),
    ],
)
async def test_policy_refuses_children_beyond_the_parent(recorder, tmp_path, child, rule) -> None:
    policy = Policy(rules={1: PolicyRule(models=("small",))}, model_rank=("big", "small"))
    async with open_runtime(recorder, policy=policy, **runtime_options(recorder, tmp_path)) as rt:
        rt.spawn(AgentSpec("p", script([act.spawn(child)]), tools=frozenset({"test/echo"}),
                           budget=Budget(max_steps=20), model="small"))
        exit = await rt.wait("p")
    result = exit.result[1][0]
    assert not result.ok and result.error == "policy_refused"
    refused = recorder.of_type("policy/refused")
    assert refused[0]["rule"] == rule and refused[0]["child_id"] == "c"
    assert not [e for e in recorder.of_type("agent/spawned") if e["agent_id"] == "c"]


async def test_a_child_inherits_from_the_policy(recorder, tmp_path) -> None:
    policy = Policy(rules={1: PolicyRule(models=("small",), tools=frozenset({"test/echo"}), budget=Budget(max_steps=5))})
    async with open_runtime(recorder, policy=policy, **runtime_options(recorder, tmp_path)) as rt:
        rt.spawn(AgentSpec("p", script([act.spawn(AgentSpec("c", lambda ctx: [act.done()]))])))
        await rt.wait("p")
    spawned = {e["agent_id"]: e for e in recorder.of_type("agent/spawned")}
    assert spawned["c"]["model"] == "small" and spawned["c"]["tools"] == ["test/echo"]
    assert spawned["c"]["budget"]["max_steps"] == 5


async def test_max_children_is_enforced(recorder, tmp_path) -> None:
    kids = [act.spawn(AgentSpec(f"k{i}", lambda ctx: [])) for i in range(3)]
    async with open_runtime(recorder, **runtime_options(recorder, tmp_path)) as rt:
        rt.spawn(AgentSpec("p", script(kids), budget=Budget(max_children=2)))
        exit = await rt.wait("p")
    assert [r.ok for r in exit.result[1]] == [True, True, False]
    assert recorder.of_type("policy/refused")[0]["rule"] == "max_children"


async def test_an_llm_call_that_may_not_fit_the_tokens_left_is_refused_before_it_is_sent(recorder, tmp_path) -> None:
    from agentctl.services.llm.scripted import ScriptedProvider

    reg = make_registry()
    provider = ScriptedProvider(["one two three four five"] * 10)
    plane = LocalWorkPlane(recorder, tools=reg, providers={"scripted": provider}, default_provider="scripted")
    ask = [act.call_llm([{"role": "user", "content": "count to five please"}])]
    async with open_runtime(recorder, tools=reg, plane=plane, workspace=tmp_path) as rt:
        rt.spawn(AgentSpec("talker", script(*[ask] * 3), budget=Budget(max_tokens=20)))
        exit = await rt.wait("talker")
    # The prompt alone may take more than 20 tokens: no call is made, each is refused.
    assert recorder.of_type("llm/requested") == []
    refused = [r for batch in exit.result for r in batch]
    assert [(r.ok, r.error) for r in refused] == [(False, "budget_exceeded")] * 3
    assert "the prompt may take up to" in refused[0].value