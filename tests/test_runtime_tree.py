"""The supervisor tree: spawning, stopping, supervision strategies and intensity."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

from agentctl import actions as act
from agentctl.runtime import AgentSpec, Runtime, StepContext, open_runtime
from agentctl.runtime.spec import Strategy
from agentctl.services.bus import Topology

pytestmark = pytest.mark.anyio


def idle(ctx: StepContext) -> list:
    return []


def finisher(result: Any = None):
    def step(ctx: StepContext) -> list:
        return [act.done("ok", result)]

    return step


def crasher(ctx: StepContext) -> list:
    raise RuntimeError(f"boom in {ctx.agent_id}")


def spawner(*children: AgentSpec):
    def step(ctx: StepContext) -> list:
        if ctx.reason == "start":
            return [act.spawn(c) for c in children]
        return []

    return step


def children(rt: Runtime, agent_id: str) -> list[str]:
    """The children of a live agent (failing the test if it is not live)."""
    info = rt.info(agent_id)
    assert info is not None, f"{agent_id} is not live"
    return list(info["children"])


async def settle() -> None:
    for _ in range(50):
        await anyio.sleep(0)


async def test_spawned_children_are_one_level_deeper(recorder) -> None:
    async with open_runtime(recorder) as rt:
        grand = AgentSpec("grand", idle)
        child = AgentSpec("child", spawner(grand))
        rt.spawn(AgentSpec("root", spawner(child)))
        await settle()
        spawned = {e["agent_id"]: e for e in recorder.of_type("agent/spawned")}
        assert [spawned[a]["depth"] for a in ("root", "child", "grand")] == [0, 1, 2]
        assert spawned["grand"]["parent_id"] == "child"
        assert children(rt, "child") == ["grand"]


async def test_stop_takes_down_the_subtree_children_first(recorder) -> None:
    async with open_runtime(recorder) as rt:
        kids = [AgentSpec(f"k{i}", spawner(AgentSpec(f"g{i}", idle))) for i in range(3)]
        rt.spawn(AgentSpec("root", spawner(*kids)))
        await settle()
        assert rt.stop("root")
        order = [e["agent_id"] for e in recorder.of_type("agent/stopped")]
        # Reverse start order, each child's subtree before the child, the root last.
        assert order == ["g2", "k2", "g1", "k1", "g0", "k0", "root"]
        assert rt.live() == []


async def test_no_task_is_left_after_the_runtime_returns(recorder) -> None:
    async def slow_step(ctx: StepContext) -> list:
        await anyio.sleep(0)
        return [act.sleep(30)]

    before = len(asyncio.all_tasks())
    async with open_runtime(recorder) as rt:
        for i in range(20):
            rt.spawn(AgentSpec(f"a{i}", slow_step, budget=None))
        await settle()
        assert rt.statistics().tasks == 20
    assert len(asyncio.all_tasks()) == before
    assert len(recorder.of_type("agent/stopped")) == 20
    assert {e["reason"] for e in recorder.of_type("agent/stopped")} == {"shutdown"}


async def test_done_reports_to_the_parent_with_a_message(recorder) -> None:
    seen: list = []

    def parent(ctx: StepContext) -> list:
        seen.extend(ctx.messages)
        if ctx.reason == "start":
            return [act.spawn(AgentSpec("kid", finisher({"n": 1})))]
        return []

    async with open_runtime(recorder) as rt:
        rt.spawn(AgentSpec("p", parent))
        await settle()
    assert [(m.sender, m.kind, m.body) for m in seen] == [("kid", "done", {"status": "ok", "result": {"n": 1}})]
    done = recorder.of_type("agent/done")[0]
    assert done["agent_id"] == "kid" and done["status"] == "ok" and done["result"] == {"n": 1}


async def test_results_of_previous_actions_reach_the_next_step(recorder) -> None:
    got: list = []

    def step(ctx: StepContext) -> list:
        if ctx.reason == "start":
            return [act.send("nobody", "x"), act.acquire_lock("a.txt")]
        got.extend(ctx.results)
        return [act.done()]

    async with open_runtime(recorder) as rt:
        rt.spawn(AgentSpec("solo", step))
        await rt.wait("solo")
    assert [r.ok for r in got] == [False, True]
    assert got[0].error == "unknown_target"


async def test_a_crashing_step_is_an_error_event_not_a_runtime_crash(recorder) -> None:
    async with open_runtime(recorder) as rt:
        rt.spawn(AgentSpec("bad", crasher, restart="temporary"))
        rt.spawn(AgentSpec("good", finisher()))
        exit_bad = await rt.wait("bad")
        exit_good = await rt.wait("good")
    assert exit_bad.outcome == "failed" and exit_good.outcome == "done"
    error = recorder.of_type("agent/error")[0]
    assert error["agent_id"] == "bad" and error["where"] == "step" and error["error_type"] == "RuntimeError"


async def test_an_unknown_action_is_an_agent_error(recorder) -> None:
    def odd(ctx: StepContext) -> list[Any]:
        return ["not an action"]

    async with open_runtime(recorder) as rt:
        rt.spawn(AgentSpec("odd", odd, restart="temporary"))
        await rt.wait("odd")
    assert recorder.of_type("agent/error")[0]["where"] == "action"


def flaky_once(failures: dict[str, int]):
    def step(ctx: StepContext) -> list:
        if failures.get(ctx.agent_id, 0) > 0:
            failures[ctx.agent_id] -= 1
            raise RuntimeError("flaky")
        return []

    return step


@pytest.mark.parametrize(
    ("strategy", "restarted"),
    [("one_for_one", ["b"]), ("one_for_all", ["a", "b", "c"]), ("rest_for_one", ["b", "c"])],
)
async def test_restart_strategies_restart_the_right_children(recorder, strategy: Strategy, restarted: list[str]) -> None:
    failures = {"b": 1}
    kids = [AgentSpec(x, flaky_once(failures)) for x in "abc"]
    async with open_runtime(recorder) as rt:
        rt.spawn(AgentSpec("sup", spawner(*kids), strategy=strategy))
        await settle()
        assert sorted(e["agent_id"] for e in recorder.of_type("agent/restarted")) == restarted
        assert all(e["offender"] == "b" for e in recorder.of_type("agent/restarted"))
        stopped = [e["agent_id"] for e in recorder.of_type("agent/stopped")]
        assert stopped == [x for x in reversed(restarted) if x != "b"]
        assert children(rt, "sup") == ["a", "b", "c"]


async def test_restart_types_decide_who_comes_back(recorder) -> None:
    runs = []

    def finishes_twice(ctx: StepContext) -> list:
        runs.append(ctx.agent_id)
        return [act.done()] if len(runs) <= 2 else []

    kids = [
        AgentSpec("perm", finishes_twice, restart="permanent"),
        AgentSpec("trans", finisher(), restart="transient"),
        AgentSpec("temp", crasher, restart="temporary"),
    ]
    async with open_runtime(recorder) as rt:
        rt.spawn(AgentSpec("sup", spawner(*kids), max_restarts=1000, restart_period=60))
        await settle()
        restarted = [e["agent_id"] for e in recorder.of_type("agent/restarted")]
    # permanent comes back even after a normal done; transient does not; temporary not after a crash.
    assert restarted == ["perm", "perm"]


async def test_restart_intensity_escalates_to_the_grandparent(recorder) -> None:
    worker = AgentSpec("worker", crasher)  # transient: restarted after each crash
    mid = AgentSpec("mid", spawner(worker), max_restarts=2, restart_period=60, restart="temporary")
    async with open_runtime(recorder) as rt:
        rt.spawn(AgentSpec("top", spawner(mid)))
        await settle()
        assert len(recorder.of_type("agent/restarted")) == 2
        errors = recorder.of_type("agent/error")
        assert errors[-1]["agent_id"] == "mid" and errors[-1]["where"] == "supervision"
        assert errors[-1]["error_type"] == "RestartIntensity"  # the kind, not the message again
        assert errors[-1]["error"] == "restart intensity exceeded: more than 2 restarts in 60s (last offender worker)"
        assert not rt.is_live("mid") and rt.is_live("top")


async def test_siblings_talk_only_when_topology_allows(recorder) -> None:
    def talker(to: str):
        def step(ctx: StepContext) -> list:
            if ctx.reason == "start":
                return [act.send(to, "hi")]
            return []

        return step

    async with open_runtime(recorder) as rt:
        rt.spawn(AgentSpec("p", spawner(
            AgentSpec("x", idle),
            AgentSpec("shy", talker("x"), topology=Topology(allow_peer=False, peer_via_parent=False)),
            AgentSpec("open", talker("x"), topology=Topology(allow_peer=True)),
        )))
        await settle()
    denied = recorder.of_type("bus/denied")
    assert [(e["from"], e["to"], e["reason"]) for e in denied] == [("shy", "x", "topology")]
    delivered = [e for e in recorder.of_type("agent/message") if e["delivered"]]
    assert ("open", "x") in [(e["from"], e["agent_id"]) for e in delivered]
