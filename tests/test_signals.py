"""Runtime signals, relays, reserved ids and unread mail: nothing routed is silently lost."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from agentctl import actions as act
from agentctl.events.log import EventLog
from agentctl.runtime import AgentSpec, StepContext, open_runtime
from agentctl.services.bus import Topology

pytestmark = pytest.mark.anyio


def tree_node(fanout: int, levels: int):
    """Spawns ``fanout`` children (``levels`` deep below it), finishes once each reported done."""

    def step(ctx: StepContext) -> list:
        if ctx.reason == "start":
            if levels == 0:
                return [act.done("ok", 1)]
            ctx.state["left"] = fanout
            return [act.spawn(AgentSpec(f"{ctx.agent_id}.{i}", tree_node(fanout, levels - 1))) for i in range(fanout)]
        for msg in ctx.messages:
            if msg.kind == "done":
                ctx.state["left"] -= 1
                ctx.state["sum"] = ctx.state.get("sum", 0) + msg.body["result"]
        if ctx.state["left"] == 0:
            return [act.done("ok", ctx.state["sum"] + 1)]
        return []

    return step


async def test_a_1110_agent_tree_with_inbox_size_1_hears_every_report() -> None:
    seen: list[dict[str, Any]] = []
    log = EventLog(None, "signals")
    log.subscribe(seen.append)
    async with open_runtime(log.emit, inbox_size=1) as rt:
        rt.spawn(AgentSpec("r", tree_node(10, 3)))
        with anyio.fail_after(60):
            exit = await rt.wait("r")
    assert (exit.outcome, exit.status) == ("done", "ok")
    assert exit.result == 1 + 10 + 100 + 1000  # every descendant counted itself, via its parent's report
    reports = [e for e in seen if e["type"] == "agent/message" and e["kind"] == "done"]
    assert len(reports) == 1110
    assert all(e["delivered"] and e["signal"] for e in reports)
    assert rt.bus.statistics().inbox_full == 0


async def test_chat_keeps_its_bound_while_signals_pass_a_full_inbox(recorder) -> None:
    async with open_runtime(recorder, inbox_size=1) as rt:
        rt.spawn(AgentSpec("p", lambda c: [act.spawn(AgentSpec("c", lambda c: []))] if c.reason == "start" else [act.sleep(60)]))
        await anyio.sleep(0.05)
        assert rt.send("user", "p", "chat", 1).ok  # p sleeps: its inbox stays full
        assert rt.send("user", "p", "chat", 2).status == "inbox_full"
        assert rt.stop("c")
        assert rt.signal("user", "p", "reconcile").ok
        inbox = rt.bus.inbox("p")
        assert inbox is not None and len(inbox) == 3  # one chat message and two signals
    kinds = [(e["kind"], e["delivered"], e["signal"]) for e in recorder.of_type("agent/message")]
    assert kinds == [("chat", True, False), ("chat", False, False), ("stopped", True, True), ("reconcile", True, True)]


async def test_a_parent_hears_of_a_child_stopped_by_someone_else_but_not_of_its_own_stop(recorder) -> None:
    heard: list[tuple[str, str]] = []

    def parent(ctx: StepContext) -> list:
        heard.extend((m.sender, m.kind) for m in ctx.messages)
        if ctx.reason == "start":
            return [act.spawn(AgentSpec("a", lambda c: [])), act.spawn(AgentSpec("b", lambda c: []))]
        if ("user", "go") in heard and "stopped" not in ctx.state:
            ctx.state["stopped"] = True
            return [act.stop("b")]
        return []

    async with open_runtime(recorder) as rt:
        rt.spawn(AgentSpec("p", parent))
        await anyio.sleep(0.05)
        rt.stop("a")
        rt.send("user", "p", "go")
        await anyio.sleep(0.05)
    assert heard == [("a", "stopped"), ("user", "go")]


async def test_an_ending_agent_says_what_it_left_unread_and_from_whom(recorder) -> None:
    async with open_runtime(recorder) as rt:
        rt.spawn(AgentSpec("p", lambda c: [act.spawn(AgentSpec("sleeper", lambda c: [act.sleep(60)]))] if c.reason == "start" else []))
        await anyio.sleep(0.05)
        for body in range(3):
            rt.send("user", "sleeper", "chat", body)
        rt.send("p", "sleeper", "chat", "hi")
        rt.stop("sleeper")
    (stopped,) = [e for e in recorder.of_type("agent/stopped") if e["agent_id"] == "sleeper"]
    assert (stopped["unread"], stopped["unread_from"]) == (4, {"user": 3, "p": 1})


async def test_a_sibling_message_is_forwarded_by_the_parent_to_its_addressee(recorder) -> None:
    got: list[tuple[str, Any, str | None]] = []

    def reader(ctx: StepContext) -> list:
        got.extend((m.sender, m.body, m.via) for m in ctx.messages)
        return []

    def talker(ctx: StepContext) -> list:
        return [act.send("b", "chat", "psst")] if ctx.reason == "start" else []

    async with open_runtime(recorder) as rt:
        rt.spawn(AgentSpec("root", lambda c: [act.spawn(AgentSpec("b", reader)), act.spawn(AgentSpec("a", talker))]
                           if c.reason == "start" else []))
        await anyio.sleep(0.05)
    assert got == [("a", "psst", "root")]
    (msg,) = [e for e in recorder.of_type("agent/message") if e["from"] == "a"]
    assert (msg["agent_id"], msg["via"]) == ("b", "root")


async def test_a_parent_step_may_intercept_relays(recorder) -> None:
    kept: list[tuple[str, str, str | None]] = []

    def root(ctx: StepContext) -> list:
        kept.extend((m.sender, m.to, m.via) for m in ctx.messages if m.kind == "chat")
        if ctx.reason == "start":
            return [act.spawn(AgentSpec("b", lambda c: [])),
                    act.spawn(AgentSpec("a", lambda c: [act.send("b", "chat", "x")] if c.reason == "start" else []))]
        return []

    async with open_runtime(recorder) as rt:
        rt.spawn(AgentSpec("root", root, topology=Topology(intercept_relays=True)))
        await anyio.sleep(0.05)
        inbox = rt.bus.inbox("b")
        assert inbox is not None and len(inbox) == 0
    assert kept == [("a", "b", "root")]


@pytest.mark.parametrize("reserved", ["user", "plan"])
async def test_an_agent_may_not_spawn_a_reserved_id(recorder, reserved: str) -> None:
    results: list[Any] = []

    def root(ctx: StepContext) -> list:
        results.extend(ctx.results)
        return [act.spawn(AgentSpec(reserved, lambda c: []))] if ctx.reason == "start" else []

    async with open_runtime(recorder) as rt:
        rt.spawn(AgentSpec("root", root))
        await anyio.sleep(0.05)
        assert not rt.is_live(reserved)
    (result,) = results
    assert not result.ok and "reserved" in result.value
    (refused,) = recorder.of_type("policy/refused")
    assert (refused["child_id"], refused["rule"]) == (reserved, "id")


async def test_only_the_root_may_be_named_plan(recorder) -> None:
    from agentctl.errors import PolicyError

    async with open_runtime(recorder) as rt:
        rt.spawn(AgentSpec("plan", lambda c: []))
        with pytest.raises(PolicyError, match="reserved"):
            rt.spawn(AgentSpec("user", lambda c: []))
        assert rt.live() == ["plan"]


@pytest.mark.parametrize("batch", [64, 5000])
async def test_a_flood_is_slowed_to_the_writers_pace_and_its_backlog_stays_bounded(tmp_path, batch: int) -> None:
    from agentctl.events.log import open_event_log
    from agentctl.events.writer import HIGH_WATER

    n, peak = 60_000, [0]
    async with open_event_log(tmp_path / "events.jsonl", "flood") as log:
        seen = [0]

        def sample(event: dict[str, Any]) -> None:
            seen[0] += 1
            if seen[0] % 50 == 0:
                peak[0] = max(peak[0], log.statistics().pending_bytes)

        log.subscribe(sample)
        async with open_runtime(log.emit, backpressure=log) as rt:

            def source(ctx: StepContext) -> list:
                sent = ctx.state.get("sent", 0)
                if sent >= n:
                    return [act.done("ok", sent)]
                ctx.state["sent"] = sent + batch
                return [act.send(ctx.agent_id, "m", i) for i in range(batch)]  # to itself: read next step

            rt.spawn(AgentSpec("source", source))
            with anyio.fail_after(120):
                await rt.wait("source")
        stats = log.statistics()
    assert stats.throttled > 0 and stats.throttled_ms > 0
    assert peak[0] <= HIGH_WATER + 64 * 1024  # a line or so over the mark, never the flood
    assert stats.emitted > n


async def test_a_supervisor_with_a_full_inbox_still_hears_of_each_restart(recorder) -> None:
    def crasher(ctx: StepContext) -> list:
        raise RuntimeError("boom")

    def sup(ctx: StepContext) -> list:
        if ctx.reason == "start":
            return [act.spawn(AgentSpec("c", crasher, restart="permanent")), act.sleep(0.2)]
        return []

    async with open_runtime(recorder, inbox_size=1) as rt:
        rt.spawn(AgentSpec("sup", sup, max_restarts=2, restart_period=60, restart="temporary"))
        rt.send("user", "sup", "chat", "fills the inbox")
        with anyio.fail_after(10):
            exit = await rt.wait("sup")
    assert exit.outcome == "failed"  # restart intensity exceeded: the third crash takes it down
    assert exit.result.startswith("restart intensity exceeded")
    notices = [e for e in recorder.of_type("agent/message") if e["kind"] == "restarted"]
    assert [(e["from"], e["agent_id"], e["body"]["restarts"], e["signal"]) for e in notices] == [
        ("c", "sup", 1, True), ("c", "sup", 2, True)]
