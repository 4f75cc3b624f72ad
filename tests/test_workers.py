"""Work plane: events per call, redaction, pool bounds, failures as values, scripted LLM."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import anyio
import pytest

from agentctl.errors import LLMError
from agentctl.services.llm.base import ChatReply, ChatRequest, ToolCall, ToolSpec
from agentctl.services.llm.scripted import ScriptedProvider
from agentctl.services.tools import ToolContext, ToolRegistry, default_registry
from agentctl.services.workers import CallOutcome, LocalWorkPlane, WorkPlane

pytestmark = pytest.mark.anyio

TOOL_REQUESTED = {"seq", "t", "run_id", "type", "agent_id", "call_id", "tool", "arguments"}
TOOL_RESULT = {"seq", "t", "run_id", "type", "agent_id", "call_id", "tool", "ok", "error", "error_type", "result", "node", "duration_ms"}
LLM_REQUESTED = {"seq", "t", "run_id", "type", "agent_id", "call_id", "provider", "model", "messages", "tools"}
LLM_RESULT = {
    "seq", "t", "run_id", "type", "agent_id", "call_id", "provider", "ok", "error", "error_type", "reply",
    "prompt_tokens", "completion_tokens", "duration_ms",
}


def ctx_for(ws: Path) -> ToolContext:
    return ToolContext(agent_id="a1", workspace=ws, run_id="r1")


async def test_tool_call_emits_requested_then_result_with_contract_fields(tmp_path: Path, recorder: Any) -> None:
    plane = LocalWorkPlane(recorder, tools=default_registry())
    assert isinstance(plane, WorkPlane)
    out = await plane.call_tool("a1", "fs/write", {"path": "x.txt", "content": "hey"}, ctx=ctx_for(tmp_path))
    assert out.ok and out.value == {"path": "x.txt", "bytes": 3} and out.call_id == "t1"
    req, prepared, res = recorder.events
    assert (req["type"], prepared["type"], res["type"]) == ("tool/requested", "tool/prepared", "tool/result")
    # fs/write writes ahead what resume needs to tell whether it happened: the file's hash before and after.
    assert prepared["call_id"] == "t1" and prepared["record"]["before"] is None and prepared["record"]["bytes"] == 3
    assert set(req) == TOOL_REQUESTED and set(res) == TOOL_RESULT
    assert req["agent_id"] == res["agent_id"] == "a1"
    assert req["call_id"] == res["call_id"] == "t1"
    assert req["arguments"] == {"path": "x.txt", "content": "hey"}
    assert res["ok"] is True and res["error"] is None and res["result"] == {"path": "x.txt", "bytes": 3}
    assert isinstance(res["duration_ms"], float)
    out2 = await plane.call_tool("a1", "fs/read", {"path": "x.txt"}, ctx=ctx_for(tmp_path), call_id="mine")
    assert out2.call_id == "mine" and out2.value == "hey"
    assert plane.statistics().tool.completed == 2


async def test_secrets_are_redacted_in_the_requested_event_only(tmp_path: Path, recorder: Any) -> None:
    reg = ToolRegistry()
    got: dict[str, Any] = {}

    @reg.tool("web/login", secret_args=["pin"])
    def login(user: str, password: str, pin: str) -> str:
        got.update(user=user, password=password, pin=pin)
        return "ok"

    plane = LocalWorkPlane(recorder, tools=reg)
    out = await plane.call_tool("a1", "web/login", {"user": "u", "password": "hunter2", "pin": "42"}, ctx=ctx_for(tmp_path))
    assert out.ok
    assert got == {"user": "u", "password": "hunter2", "pin": "42"}
    assert recorder.of_type("tool/requested")[0]["arguments"] == {"user": "u", "password": "***", "pin": "***"}


async def test_failures_come_back_as_values_and_events(tmp_path: Path, recorder: Any) -> None:
    reg = default_registry()

    @reg.tool("t/boom")
    def boom() -> None:
        raise RuntimeError("kaboom")

    plane = LocalWorkPlane(recorder, tools=reg)
    ctx = ctx_for(tmp_path)
    unknown = await plane.call_tool("a1", "fs/wirte", {}, ctx=ctx)
    invalid = await plane.call_tool("a1", "fs/write", {"path": 1, "content": "x"}, ctx=ctx)
    raised = await plane.call_tool("a1", "t/boom", {}, ctx=ctx)
    tool_err = await plane.call_tool("a1", "fs/read", {"path": "../x"}, ctx=ctx)
    assert (unknown.ok, unknown.error_type) == (False, "unknown_tool")
    assert "did you mean 'fs/write'" in (unknown.error or "")
    assert (invalid.error_type, invalid.error) == ("invalid_arguments", "fs/write: arguments.path: expected string, got integer")
    assert (raised.error_type, raised.error) == ("tool_error", "RuntimeError: kaboom")
    assert tool_err.error_type == "tool_error" and "'..'" in (tool_err.error or "")
    results = recorder.of_type("tool/result")
    assert [r["ok"] for r in results] == [False] * 4
    assert [r["error"] for r in results] == [o.error for o in (unknown, invalid, raised, tool_err)]
    assert all(set(r) == TOOL_RESULT and r["result"] is None for r in results)
    assert plane.statistics().tool.failed == 4


async def test_tool_timeout_is_a_result(tmp_path: Path, recorder: Any) -> None:
    reg = ToolRegistry()

    @reg.tool("t/slow")
    async def slow() -> str:
        await anyio.sleep(10)
        return "late"

    plane = LocalWorkPlane(recorder, tools=reg, tool_timeout=0.05)
    out = await plane.call_tool("a1", "t/slow", {}, ctx=ctx_for(tmp_path))
    assert (out.ok, out.error_type) == (False, "timeout")
    assert "timed out" in (out.error or "")
    assert recorder.of_type("tool/result")[0]["ok"] is False


async def test_pool_bound_is_respected(tmp_path: Path, recorder: Any) -> None:
    reg = ToolRegistry()
    log: list[tuple[str, int]] = []
    stats: list[Any] = []

    @reg.tool("t/work")
    async def work(i: int) -> int:
        log.append(("start", i))
        for _ in range(5):
            await anyio.sleep(0)
        stats.append(plane.statistics().tool)
        log.append(("end", i))
        return i

    plane = LocalWorkPlane(recorder, tools=reg, tool_workers=2)
    outcomes: dict[int, CallOutcome] = {}

    async def one(i: int) -> None:
        outcomes[i] = await plane.call_tool("a1", "t/work", {"i": i}, ctx=ctx_for(tmp_path))

    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(one, i)

    running, peak = 0, 0
    for kind, _ in log:
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    assert peak == 2
    assert sorted(o.value for o in outcomes.values()) == list(range(6))
    assert max(s.running for s in stats) == 2 and max(s.queued for s in stats) >= 1
    final = plane.statistics().tool
    assert (final.size, final.running, final.queued, final.completed, final.failed) == (2, 0, 0, 6, 0)


async def test_a_free_slot_lets_the_call_start_without_an_event_loop_turn(recorder: Any) -> None:
    order: list[str] = []

    async def other_task() -> None:
        order.append("other task")

    async def reply(request: ChatRequest) -> str:
        order.append("provider")
        return "ok"

    plane = LocalWorkPlane(recorder, tools=ToolRegistry(), providers={"scripted": ScriptedProvider(reply)})
    async with anyio.create_task_group() as tg:
        tg.start_soon(other_task)
        outcome = await plane.call_llm("a1", ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}]))
    # A turn before the provider would let the other task go first (and, with N agents, bunch their requests).
    assert outcome.ok and order == ["provider", "other task"]


async def test_before_run_is_awaited_before_the_tool_body_and_not_for_llm_calls(tmp_path: Path, recorder: Any) -> None:
    reg = ToolRegistry()
    order: list[str] = []

    @reg.tool("t/body")
    def body() -> None:
        order.append("body")

    async def before_run(event: dict[str, Any]) -> None:
        await anyio.sleep(0)
        order.append(f"before:{event['type']}:{event['seq']}")

    plane = LocalWorkPlane(recorder, tools=reg, before_run=before_run, providers={"scripted": ScriptedProvider(["x"])})
    await plane.call_tool("a1", "t/body", {}, ctx=ctx_for(tmp_path))
    await plane.call_llm("a1", ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}]))
    assert order == ["before:tool/requested:1", "body"]  # a model is asked again on resume: no wait


async def test_scripted_llm_replies_in_order_with_word_token_counts(recorder: Any) -> None:
    seen: list[ChatRequest] = []

    def by_fn(req: ChatRequest) -> ChatReply:
        seen.append(req)
        return ChatReply(content="from a function", tool_calls=(ToolCall("c1", "fs/read", {"path": "a"}),))

    provider = ScriptedProvider(["first reply", by_fn, ChatReply(content="third", prompt_tokens=99)])
    plane = LocalWorkPlane(recorder, tools=default_registry(), providers={"scripted": provider})
    request = ChatRequest(
        model="tiny",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "say three words"}],
        tools=[ToolSpec("fs/read", "read", {"type": "object"})],
    )
    outs = [await plane.call_llm("a1", request) for _ in range(4)]
    assert [o.value.content for o in outs] == ["first reply", "from a function", "third", "done"]
    assert [o.call_id for o in outs] == ["l1", "l2", "l3", "l4"]
    assert [(o.value.prompt_tokens, o.value.completion_tokens) for o in outs] == [(5, 2), (5, 3), (99, 1), (5, 1)]
    assert [o.tokens for o in outs] == [7, 8, 100, 6]
    assert seen == [request]

    req_ev = recorder.of_type("llm/requested")[1]
    assert set(req_ev) == LLM_REQUESTED
    assert (req_ev["provider"], req_ev["model"], req_ev["messages"], req_ev["tools"]) == ("scripted", "tiny", 2, ["fs/read"])
    res_ev = recorder.of_type("llm/result")[1]
    assert set(res_ev) == LLM_RESULT
    assert res_ev["reply"] == {
        "role": "assistant",
        "content": "from a function",
        "tool_calls": [{"id": "c1", "name": "fs/read", "arguments": {"path": "a"}}],
    }
    assert (res_ev["prompt_tokens"], res_ev["completion_tokens"], res_ev["ok"]) == (5, 3, True)
    assert [e["type"] for e in recorder.events] == ["llm/requested", "llm/result"] * 4
    assert provider.statistics().calls == 4 and provider.statistics().remaining == 0


async def test_llm_errors_timeouts_and_unknown_providers_are_results(recorder: Any) -> None:
    providers = {
        "scripted": ScriptedProvider([LLMError("rate limited")]),
        "slow": ScriptedProvider(["late"], name="slow", latency=10),
    }
    plane = LocalWorkPlane(recorder, tools=ToolRegistry(), providers=providers, llm_timeout=0.05)
    request = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}])
    err = await plane.call_llm("a1", request)
    slow = await plane.call_llm("a1", request, provider="slow")
    missing = await plane.call_llm("a1", request, provider="nope")
    assert (err.ok, err.error_type, err.error) == (False, "llm_error", "LLMError: rate limited")
    assert (slow.ok, slow.error_type) == (False, "timeout")
    assert missing.error_type == "unknown_provider" and "known: scripted, slow" in (missing.error or "")
    results = recorder.of_type("llm/result")
    assert [r["ok"] for r in results] == [False, False, False]
    assert all(set(r) == LLM_RESULT and r["reply"] is None for r in results)
    assert plane.statistics().llm.failed == 3


async def test_cancelled_call_still_logs_a_result(tmp_path: Path, recorder: Any) -> None:
    reg = ToolRegistry()
    started = anyio.Event()

    @reg.tool("t/hang")
    async def hang() -> None:
        started.set()
        await anyio.sleep_forever()

    plane = LocalWorkPlane(recorder, tools=reg)
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(plane.call_tool, "a1", "t/hang", {}, ctx=ctx_for(tmp_path)))
        await started.wait()
        tg.cancel_scope.cancel()
    assert [(e["type"], e.get("error_type")) for e in recorder.events] == [("tool/requested", None), ("tool/result", "cancelled")]
    assert plane.statistics().tool.running == 0


async def test_scripted_provider_as_a_function_answers_every_request() -> None:
    async def echo(req: ChatRequest) -> str:
        return "echo: " + str(req.messages[-1]["content"])

    provider = ScriptedProvider(echo, name="echo")
    replies = [await provider.chat(ChatRequest(model="m", messages=[{"role": "user", "content": f"n {i}"}])) for i in range(3)]
    assert [r.content for r in replies] == ["echo: n 0", "echo: n 1", "echo: n 2"]
    assert [(r.prompt_tokens, r.completion_tokens, r.model) for r in replies] == [(2, 3, "m")] * 3
    assert provider.statistics().remaining is None and provider.name == "echo"
