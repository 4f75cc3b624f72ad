"""Lock conflicts as threads: each policy, the default arbiter, the timeout, sibling talk."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import invoke

from agentctl import actions as act
from agentctl.events.reader import read_events
from agentctl.runtime import AgentSpec, StepContext, open_runtime
from agentctl.services.bus import Topology

pytestmark = pytest.mark.anyio
SHY = Topology(allow_peer=False, peer_via_parent=False)


def holder(ctx: StepContext) -> list:
    """Takes f, then releases it only when asked to yield."""
    if ctx.reason == "start":
        return [act.acquire_lock("f")]
    if any(m.kind == "yield" for m in ctx.messages):
        return [act.release_lock("f"), act.done("ok", "yielded")]
    return []


def requester(timeout: float):
    def step(ctx: StepContext) -> list:
        seen = ctx.state.setdefault("kinds", [])
        seen.extend(m.kind for m in ctx.messages)
        if ctx.reason == "start":
            return [act.sleep(0.01)]
        if ctx.step_no == 2:
            return [act.acquire_lock("f", timeout=timeout)]
        if ctx.step_no == 3:
            return [act.done("ok", {"got": ctx.results[0].ok, "kinds": seen})]
        return []

    return step


def parent(*children: AgentSpec, answer: dict | None = None):
    def step(ctx: StepContext) -> list:
        if ctx.reason == "start":
            return [act.spawn(c) for c in children]
        out = []
        for m in ctx.messages:
            if m.kind == "conflict" and answer is not None:
                out.append(act.send(m.body["requester"], "resolve", {"conflict_id": m.body["conflict_id"], **answer}, m.thread_id))
        return out

    return step


async def run_tree(recorder, policy: str, *, requester_timeout: float, priority: int = 0, answer: dict | None = None,
                   conflict_timeout: float = 5.0):
    kids = (AgentSpec("a", holder, topology=SHY), AgentSpec("b", requester(requester_timeout), topology=SHY, priority=priority))
    async with open_runtime(recorder, conflicts=policy, conflict_timeout=conflict_timeout) as rt:
        rt.spawn(AgentSpec("p", parent(*kids, answer=answer)))
        exit = await rt.wait("b")
    opened = recorder.of_type("conflict/opened")
    resolved = recorder.of_type("conflict/resolved")
    return exit, opened, resolved


async def test_first_come_keeps_the_lock_with_the_holder(recorder) -> None:
    exit, opened, resolved = await run_tree(recorder, "first_come", requester_timeout=0)
    assert opened[0]["agent_id"] == "b" and opened[0]["holder"] == "a" and opened[0]["arbiter"] == "p"
    assert (resolved[0]["granted_to"], resolved[0]["outcome"], resolved[0]["by"]) == ("a", "retry", "policy")
    assert exit.result["got"] is False
    # The members were told on the thread: the holder and the arbiter got the conflict.
    told = {(e["agent_id"], e["kind"]) for e in recorder.of_type("agent/message") if e["delivered"]}
    assert {("a", "conflict"), ("p", "conflict"), ("b", "resolved")} <= told


async def test_priority_makes_the_holder_yield(recorder) -> None:
    exit, _, resolved = await run_tree(recorder, "priority", requester_timeout=5, priority=5)
    assert (resolved[0]["granted_to"], resolved[0]["outcome"]) == ("b", "wait")
    assert exit.result["got"] is True
    order = [(e["type"], e["agent_id"]) for e in recorder.events if e["type"] in ("lock/released", "lock/acquired")]
    assert order.index(("lock/released", "a")) < order.index(("lock/acquired", "b"))


async def test_the_default_arbiter_is_the_common_ancestor_and_decides(recorder) -> None:
    exit, opened, resolved = await run_tree(recorder, "arbiter", requester_timeout=5,
                                            answer={"grant": "requester", "outcome": "wait"})
    assert opened[0]["arbiter"] == "p"
    assert (resolved[0]["granted_to"], resolved[0]["by"]) == ("b", "p")
    assert exit.result["got"] is True


async def test_an_arbiter_that_does_not_answer_times_out_to_first_come(recorder) -> None:
    exit, _, resolved = await run_tree(recorder, "arbiter", requester_timeout=0.3, conflict_timeout=0.05)
    assert (resolved[0]["granted_to"], resolved[0]["by"]) == ("a", "timeout")
    assert exit.result["got"] is False


async def test_siblings_that_cannot_talk_can_on_their_conflict_thread(recorder) -> None:
    said: list = []

    def chatty_holder(ctx: StepContext) -> list:
        said.extend(ctx.messages)
        if ctx.reason == "start":
            return [act.acquire_lock("f")]
        out = []
        for m in ctx.messages:
            if m.kind == "conflict":
                out += [act.send("b", "note", "mine, sorry", m.thread_id), act.send("b", "note", "off thread")]
        return out

    kids = (AgentSpec("a", chatty_holder, topology=SHY), AgentSpec("b", requester(0.2), topology=SHY))
    async with open_runtime(recorder, conflicts="arbiter", conflict_timeout=0.05) as rt:
        rt.spawn(AgentSpec("p", parent(*kids)))
        exit = await rt.wait("b")
    assert "note" in exit.result["kinds"]
    denied = recorder.of_type("bus/denied")
    assert [(e["from"], e["to"], e["reason"]) for e in denied] == [("a", "b", "topology")]


def test_script_agents_take_part_through_the_cli(tmp_path: Path) -> None:
    plan = tmp_path / "arbiter.yaml"
    plan.write_text("""\
name: arbiter
policy:
  conflicts: arbiter
  conflict_timeout: 10
tasks:
  - id: boss
    agent: script
    steps:
      - spawn:
          id: holder
          agent: script
          steps:
            - lock: data
            - wait: {kind: yield, timeout: 10}
            - unlock: data
            - done: yielded
      - sleep: 0.2
      - spawn:
          id: asker
          agent: script
          steps:
            - lock: {path: data/file.txt, timeout: 10}
            - write: {path: data/file.txt, content: "mine now\\n"}
            - done: wrote
      - resolve: {grant: requester, outcome: wait}
      - wait: {kind: done, timeout: 10}
      - wait: {kind: done, timeout: 10}
      - done: settled
""")
    proc = invoke("run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", str(tmp_path / "run"),
                  "--workspace", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    events = list(read_events(tmp_path / "run" / "events.jsonl"))
    resolved = [e for e in events if e["type"] == "conflict/resolved"]
    assert (resolved[0]["granted_to"], resolved[0]["by"]) == ("asker", "boss")
    assert (tmp_path / "data" / "file.txt").read_text() == "mine now\n"
