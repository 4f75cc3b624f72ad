"""docs/events.md is the contract: every documented type is produced, with exactly its fields."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from cli_helpers import AGENTCTL, PLUGINS, ROOT, running

from agentctl import actions as act
from agentctl.events.log import EventLog
from agentctl.events.reader import read_events
from agentctl.events.types import (
    EVENT_TYPES,
    AgentDone,
    AgentMessage,
    Event,
    ToolResult,
    UnknownEvent,
    decode,
    decode_as,
    fields_of,
)
from agentctl.policy import Budget, Policy, Supervision
from agentctl.runtime import AgentSpec, StepContext, open_runtime
from agentctl.services.bus import Topology
from agentctl.services.llm.scripted import ScriptedProvider
from agentctl.services.tools import default_registry
from agentctl.services.workers import LocalWorkPlane


def parse_contract() -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """The common fields and, per type, its own fields, as ``{name: type}``."""
    text = (ROOT / "docs" / "events.md").read_text()
    common_part, _, types_part = text.partition("## Types")
    row = re.compile(r"^\| `([a-z_]+)` \| ((?:[^|\\]|\\\|)+?) \|", re.M)
    common = {m[1]: m[2].strip() for m in row.finditer(common_part.split("## Common fields")[1])}
    types: dict[str, dict[str, str]] = {}
    for block in re.split(r"^### ", types_part, flags=re.M)[1:]:
        name, _, body = block.partition("\n")
        types[name.strip()] = {m[1]: m[2].strip() for m in row.finditer(body)}
    return common, types


def matches(value: Any, doc_type: str) -> bool:
    """Whether ``value`` is of the documented type (``str``, ``int \\| null``, ``list[str]``, ...)."""
    for option in (t.strip() for t in doc_type.replace("\\|", "|").split("|")):
        if option == "null" and value is None:
            return True
        if option == "any":
            return True
        if option == "str" and isinstance(value, str):
            return True
        if option == "int" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if option == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if option == "bool" and isinstance(value, bool):
            return True
        if option == "object" and isinstance(value, dict):
            return True
        if option.startswith("list") and isinstance(value, list):
            return True
    return False


async def runtime_events(tmp_path: Path) -> list[dict[str, Any]]:
    """A scenario that makes the runtime produce every runtime-side event type."""
    seen: list[dict[str, Any]] = []
    log = EventLog(None, "contract")
    log.subscribe(seen.append)
    tools = default_registry()
    plane = LocalWorkPlane(log.emit, tools=tools, providers={"scripted": ScriptedProvider(["hello there"], latency=0.15, stream=True)})
    shy = Topology(allow_peer=False, peer_via_parent=False)

    def holder(ctx: StepContext) -> list:
        if ctx.reason == "start":
            return [act.acquire_lock("f")]
        return []

    def busy(ctx: StepContext) -> list:
        n = ctx.step_no
        if n == 1:
            return [act.sleep(0.02), act.acquire_lock("f"), act.call_tool("fs/write", {"path": "a.txt", "content": "x"})]
        if n == 2:
            return [act.call_llm([{"role": "user", "content": "hi"}]), act.send("nobody"), act.send("holder", "peek")]
        if n == 3:
            # greedy is refused (policy/refused); quick ends at once, charged to busy (budget/charged).
            return [act.spawn(AgentSpec("greedy", lambda c: [], budget=Budget(max_steps=10**9))),
                    act.spawn(AgentSpec("quick", lambda c: [act.done("ok", 1)]))]
        raise RuntimeError("crash once")

    def root(ctx: StepContext) -> list:
        if ctx.reason == "start":
            return [act.spawn(AgentSpec("holder", holder, topology=shy)),
                    act.spawn(AgentSpec("busy", busy, topology=shy, budget=Budget(max_steps=50))),
                    act.spawn(AgentSpec("tiny", lambda c: [act.done("ok", 1)]))]
        return []

    async with open_runtime(log.emit, tools=tools, plane=plane, workspace=tmp_path, inbox_size=1) as rt:
        rt.spawn(AgentSpec("root", root))
        for _ in range(200):
            await anyio.sleep(0.01)
            if any(e["type"] == "agent/restarted" for e in seen):
                break
        rt.set_supervision("holder", Supervision(max_restarts=0))  # a live edit's agent/supervision
        rt.send("user", "holder", "a")
        rt.send("user", "holder", "b")  # the inbox holds one: this one is refused
        await anyio.sleep(0.05)
        rt.stop("busy")
    return seen


def cli_events(tmp_path: Path) -> list[dict[str, Any]]:
    """A CLI run with a live edit it refuses and an invalid one, killed and resumed: run/*, plan/*, resume events."""
    plan = tmp_path / "plan.yaml"
    plan.write_text((PLUGINS / "crash_plan.yaml").read_text().replace("tasks:\n", "tasks:\n  - id: idle\n    agent: script\n    steps: [{wait: go}]\n", 1))
    env = dict(os.environ, PYTHONPATH=str(PLUGINS))
    run_dir = tmp_path / "run"
    with running("run", str(plan), "--no-ui", "--run-dir", str(run_dir), "--workspace", str(tmp_path), cwd=tmp_path,
                 env=env, stderr=subprocess.DEVNULL) as proc:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not _has(run_dir, "agent/done", "closer"):
            time.sleep(0.05)
        plan.write_text(plan.read_text().replace("durability: batch", "durability: always"))
        while time.monotonic() < deadline and not _has(run_dir, "plan/refused"):
            time.sleep(0.05)
        plan.write_text("name: [broken\n")
        while time.monotonic() < deadline and not _has(run_dir, "plan/invalid"):
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    plan.write_text((PLUGINS / "crash_plan.yaml").read_text())
    subprocess.run([AGENTCTL, "run", str(plan), "--no-ui", "--no-watch-plan", "--resume", str(run_dir)], env=env,
                   capture_output=True, timeout=60, check=False)
    return list(read_events(run_dir / "events.jsonl"))


def recovered_events(tmp_path: Path) -> list[dict[str, Any]]:
    """An append killed before its result was logged, then resumed: tool/recovered."""
    plan = tmp_path / "plan.yaml"
    plan.write_text("name: r\ntasks:\n  - id: a\n    agent: script\n    steps: [{append: {path: out/a.txt, content: x}}]\n")
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCTL_")}
    subprocess.run([AGENTCTL, "run", str(plan), "--no-ui", "--run-dir", str(run_dir), "--workspace", str(tmp_path)],
                   env={**env, "AGENTCTL_FAULT": "kill@tool/result#1"}, capture_output=True, timeout=60, check=False)
    subprocess.run([AGENTCTL, "run", str(plan), "--no-ui", "--no-watch-plan", "--resume", str(run_dir)], env=env,
                   capture_output=True, timeout=60, check=False)
    return list(read_events(run_dir / "events.jsonl"))


def _has(run_dir: Path, type: str, agent: str | None = None) -> bool:
    path = run_dir / "events.jsonl"
    return path.exists() and any(e["type"] == type and (agent is None or e["agent_id"] == agent) for e in read_events(path))


def conflict_events() -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    async def main() -> None:
        log = EventLog(None, "contract")
        log.subscribe(seen.append)
        async with open_runtime(log.emit) as rt:
            rt.spawn(AgentSpec("h", lambda c: [act.acquire_lock("x")] if c.reason == "start" else []))
            rt.spawn(AgentSpec("r", lambda c: [act.acquire_lock("x")] if c.reason == "start" else []))
            await anyio.sleep(0.02)

    anyio.run(main)
    return seen


def approval_events(tmp_path: Path) -> list[dict[str, Any]]:
    """Two calls an approval gate holds: one approved with a note, one denied at its timeout."""
    seen: list[dict[str, Any]] = []

    async def main() -> None:
        log = EventLog(None, "contract")
        log.subscribe(seen.append)
        gated = frozenset({"fs/write"})
        write = act.call_tool("fs/write", {"path": "a.txt", "content": "x"})
        async with open_runtime(log.emit, workspace=tmp_path, root_tools=gated) as rt:
            for name in ("yes", "late"):
                rt.spawn(AgentSpec(name, lambda c: [write] if c.reason == "start" else [act.done()], approve=gated))
                while not rt.approvals.pending():
                    await anyio.sleep(0.001)
                if name == "yes":
                    rt.approvals.answer(rt.approvals.pending()[0].call_id, True, "fine")
                    rt.set_policy(Policy(approve_timeout=0.05))
                await rt.wait(name)

    anyio.run(main)
    return seen


@pytest.fixture(scope="module")
def produced(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("contract")
    events = anyio.run(runtime_events, tmp)
    events += cli_events(tmp_path_factory.mktemp("cli"))
    events += conflict_events()
    events += recovered_events(tmp_path_factory.mktemp("recovered"))
    events += approval_events(tmp_path_factory.mktemp("approvals"))
    from test_mcp import mcp_events  # the MCP server's events (mcp is in the test extra)

    events += anyio.run(mcp_events, tmp_path_factory.mktemp("mcp"))
    return events


def test_every_documented_type_is_produced(produced) -> None:
    _, types = parse_contract()
    seen = {e["type"] for e in produced}
    assert set(types) - seen == set()


def test_no_undocumented_type_is_produced(produced) -> None:
    _, types = parse_contract()
    assert {e["type"] for e in produced} - set(types) == set()


def test_every_event_has_exactly_its_documented_fields_and_types(produced) -> None:
    common, types = parse_contract()
    for event in produced:
        own = types[event["type"]]
        assert set(event) == set(common) | set(own), (event["type"], set(event) ^ (set(common) | set(own)))
        for name, doc_type in {**common, **own}.items():
            assert matches(event[name], doc_type), (event["type"], name, event[name], doc_type)


# --- the typed definitions (agentctl/events/types.py) --------------------------------------

_NAMES = {msgspec.inspect.StrType: "str", msgspec.inspect.IntType: "int", msgspec.inspect.FloatType: "float",
          msgspec.inspect.BoolType: "bool", msgspec.inspect.DictType: "object", msgspec.inspect.AnyType: "any",
          msgspec.inspect.NoneType: "null"}


def doc_type(t: msgspec.inspect.Type) -> str:
    """A definition's field type as docs/events.md writes it (``str \\| null``, ``list[str]``, ``object``)."""
    if isinstance(t, msgspec.inspect.UnionType):
        return " | ".join(doc_type(option) for option in t.types)
    if isinstance(t, msgspec.inspect.ListType):
        return f"list[{doc_type(t.item_type)}]"
    return _NAMES[type(t)]


def test_every_documented_type_has_a_definition_with_exactly_its_fields_and_types() -> None:
    common, types = parse_contract()
    defined = {tag: {name: doc_type(t) for name, t in fields_of(cls).items()} for tag, cls in EVENT_TYPES.items()}
    documented = {tag: {name: t.replace("\\|", "|") for name, t in own.items()} for tag, own in types.items()}
    assert set(defined) == set(documented), "types documented but not defined, or defined but not documented"
    for tag in documented:
        assert defined[tag] == documented[tag], tag  # same names, same types, in any order
    info = msgspec.inspect.type_info(Event)
    assert isinstance(info, msgspec.inspect.StructType)
    assert {f.name: doc_type(f.type) for f in info.fields} | {"type": "str"} == {
        name: t.replace("\\|", "|") for name, t in common.items()}


def test_every_produced_event_is_a_valid_value_of_its_definition(produced) -> None:
    for event in produced:
        value = msgspec.convert(event, EVENT_TYPES[event["type"]], strict=True)  # raises on a wrong type
        assert msgspec.to_builtins(value) == event  # and nothing is lost or added on the way


def test_a_typed_event_is_logged_as_the_same_fields_passed_loose() -> None:
    seen: list[dict[str, Any]] = []
    log = EventLog(None, "typed")
    log.subscribe(seen.append)
    fields: dict[str, Any] = {"status": "ok", "result": {"path": Path("a")}, "reason": None, "steps": 2, "unread": 1,
              "unread_from": {"b": 1}}
    typed = log.emit(AgentDone(agent_id="a", **fields))
    loose = log.emit("agent/done", "a", fields)
    assert typed == {"seq": 1, "t": typed["t"], "run_id": "typed", "type": "agent/done", "agent_id": "a",
                     **fields, "result": {"path": "a"}}
    assert typed["type"] == loose["type"] and loose["seq"] == 2 and seen == [typed, loose]
    message = log.emit(AgentMessage(agent_id="b", msg_id="m1", from_="a", to="b", kind="chat", thread_id=None, body=1,
                                    delivered=True, via=None, signal=False))
    assert message["from"] == "a" and "from_" not in message


def test_decode_gives_typed_values_and_never_raises() -> None:
    full = {"seq": 3, "t": 9, "run_id": "r", "type": "tool/result", "agent_id": "a", "call_id": "c", "tool": "fs/read",
            "ok": True, "error": None, "error_type": None, "result": [1], "duration_ms": 2}
    value = decode(full)
    assert isinstance(value, ToolResult) and value.ok and value.result == [1] and value.duration_ms == 2.0
    old = decode({"seq": 4, "type": "agent/done", "agent_id": "a", "status": "ok", "result": 1, "reason": None,
                  "steps": 2})  # written before `unread` existed
    assert isinstance(old, AgentDone) and (old.unread, old.unread_from, old.steps) == (0, {}, 2)
    newer = {"seq": 5, "t": 1, "run_id": "r", "type": "approval/asked", "agent_id": "a", "why": "x"}
    assert decode(newer) == UnknownEvent(type="approval/asked", seq=5, t=1, run_id="r", agent_id="a", data=newer)
    hostile: list[dict[str, Any]] = [{"type": "tool/result", "ok": "yes"}, {"type": 7, "seq": "x", "agent_id": 3}, {}, {"type": None}]
    for event in hostile:
        assert decode(event) == UnknownEvent(type=str(event.get("type")), data=event)
    # decode_as, for a view that looked the class up itself: the same fallbacks, and an event
    # of another type than the class is not forced into it.
    assert decode_as(full, ToolResult) == value
    assert decode_as(full, AgentDone) == UnknownEvent(type="tool/result", seq=3, t=9, run_id="r", agent_id="a", data=full)
    assert decode_as(hostile[0], ToolResult) == UnknownEvent(type="tool/result", data=hostile[0])
