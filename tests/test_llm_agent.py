"""LLM agents in a real runtime: tool calls and their results, parallel batches, errors fed back,
spawning children through agent/spawn, context trimming, budgets, retries, and provider wiring."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from llm_servers import Behaviour, running_server

from agentctl import actions as act
from agentctl.agents.llm import LLMAgentConfig, llm_child_spec, llm_step, trim_context
from agentctl.cli.providers import providers_for_plan
from agentctl.errors import LLMError, PlanError
from agentctl.events.log import EventLog
from agentctl.plan.load import parse_plan
from agentctl.plan.model import Defaults, Plan, Task
from agentctl.policy import Budget, Policy, PolicyRule
from agentctl.runtime import AgentSpec, StepContext, open_runtime
from agentctl.services.llm.base import ChatReply, ChatRequest, ToolCall
from agentctl.services.llm.config import provider_from_config
from agentctl.services.llm.scripted import ScriptedProvider
from agentctl.services.tools import default_registry
from agentctl.services.workers import LocalWorkPlane

pytestmark = pytest.mark.anyio


def llm_spec(id: str, instructions: str, *, tools: list[str], budget: Budget | None = None,
             config: LLMAgentConfig = LLMAgentConfig(), model: str | None = None) -> AgentSpec:
    task = Task(id=id, agent="llm", instructions=instructions)
    return AgentSpec(id=id, step=llm_step(task, config), kind="llm", tools=frozenset(tools), budget=budget, model=model)


def options(recorder, tmp_path: Path, provider: Any, *, registry=None, **kw: Any) -> dict[str, Any]:
    reg = registry or default_registry()
    plane = LocalWorkPlane(recorder, tools=reg, providers={"p": provider}, default_provider="p")
    return dict(tools=reg, plane=plane, workspace=tmp_path, **kw)


def call(name: str, args: Any = None, id: str = "c1", error: str | None = None) -> ToolCall:
    return ToolCall(id=id, name=name, arguments=args or {}, error=error)


def tool_messages(request: ChatRequest) -> list[dict[str, Any]]:
    return [dict(m) for m in request.messages if m["role"] == "tool"]


def done_event(recorder, agent_id: str) -> dict[str, Any]:
    return next(e for e in recorder.of_type("agent/done") if e["agent_id"] == agent_id)


async def test_tool_call_runs_and_its_result_is_fed_back_over_openai_protocol(recorder, tmp_path) -> None:
    async with running_server() as server:
        server.then(
            # It thinks for 150 ms: a reply whole within a call's first 100 ms logs no fragments.
            Behaviour(content="", tool_calls=[("fs__write", {"path": "out/a.txt", "content": "hello"})], delay=0.15),
            Behaviour(content="wrote the file"),
        )
        provider = provider_from_config("openai", base_url=server.url + "/v1", model="m", env={})
        async with open_runtime(recorder, **options(recorder, tmp_path, provider)) as rt:
            rt.spawn(llm_spec("a", "write hello to out/a.txt", tools=["fs/write"]))
            exit = await rt.wait("a")
        await provider.aclose()
    assert (exit.outcome, exit.status, exit.result) == ("done", "ok", "wrote the file")
    assert (tmp_path / "out/a.txt").read_text() == "hello"
    second = server.requests[1].body["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "tool"]
    assert second[1]["content"] == "write hello to out/a.txt"
    assert second[2]["tool_calls"][0]["function"]["name"] == "fs__write"
    assert second[3]["tool_call_id"] == "call_0"
    assert '"bytes"' in second[3]["content"] or "out/a.txt" in second[3]["content"]
    types = [e["type"] for e in recorder.events if e["type"].split("/")[0] in ("llm", "tool") and e["type"] != "llm/delta"]
    assert types == ["llm/requested", "llm/result", "tool/requested", "tool/prepared", "tool/result", "llm/requested", "llm/result"]
    # Streamed by default: the tool call's name was logged as it began, under its agentctl
    # name; its arguments only by tool/requested (pieces of JSON cannot be redacted by key).
    first = recorder.of_type("llm/requested")[0]["call_id"]
    streamed = "".join(e["tool_calls"] for e in recorder.of_type("llm/delta") if e["call_id"] == first)
    assert streamed.split() == ["fs/write"]


async def test_several_tool_calls_run_as_one_parallel_batch_with_results_in_order(recorder, tmp_path) -> None:
    reg = default_registry()

    @reg.tool("test/nap", description="Sleep, then echo the tag.")
    async def nap(seconds: float, tag: str) -> str:
        await anyio.sleep(seconds)
        return tag

    provider = ScriptedProvider([
        ChatReply("", (call("test/nap", {"seconds": 0.2, "tag": "slow"}, "c1"), call("test/nap", {"seconds": 0.0, "tag": "fast"}, "c2"))),
        "both napped",
    ])
    async with open_runtime(recorder, **options(recorder, tmp_path, provider, registry=reg)) as rt:
        rt.spawn(llm_spec("a", "nap twice", tools=["test/nap"]))
        exit = await rt.wait("a")
    assert exit.result == "both napped"
    answers = tool_messages(provider.requests[1])
    assert [(m["tool_call_id"], m["name"], m["content"]) for m in answers] == [("c1", "test/nap", "slow"), ("c2", "test/nap", "fast")]
    tool_events = [e["type"] for e in recorder.events if e["type"].startswith("tool/")]
    # Both were requested before either answered: one concurrent batch.
    assert tool_events == ["tool/requested", "tool/requested", "tool/result", "tool/result"]


async def test_bad_json_and_unknown_tools_are_fed_back_as_errors(recorder, tmp_path) -> None:
    async with running_server() as server:
        server.then(
            Behaviour(content="", tool_calls=[("fs__write", '{"path": "x.txt", "content": '), ("rm__rf", {"path": "/"}), ("fs__read", {"path": "x"})]),
            Behaviour(content="gave up"),
        )
        provider = provider_from_config("openai", base_url=server.url + "/v1", model="m", env={})
        async with open_runtime(recorder, **options(recorder, tmp_path, provider)) as rt:
            rt.spawn(llm_spec("a", "try things", tools=["fs/write"]))
            exit = await rt.wait("a")
        await provider.aclose()
    assert (exit.status, exit.result) == ("ok", "gave up")
    answers = [m for m in server.requests[1].body["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in answers] == ["call_0", "call_1", "call_2"]
    assert "could not decode" in answers[0]["content"]
    assert "not granted" in answers[1]["content"] and "not granted" in answers[2]["content"]
    assert recorder.of_type("tool/requested") == []
    # The round with only bad calls still cost a step: start, bad reply (asks again), final reply.
    assert done_event(recorder, "a")["steps"] == 3


async def test_agent_spawn_creates_a_child_under_policy_and_a_refusal_is_fed_back(recorder, tmp_path) -> None:
    def answer(request: ChatRequest) -> Any:
        system = request.messages[0]["content"]
        last = request.messages[-1]
        if "agent 'w1'" in system:
            return f"w1 report using {request.model}"
        if last["role"] == "user" and "Child agent w1 finished" in last["content"]:
            return "final: " + last["content"].splitlines()[-1]
        if last["role"] == "tool":
            return "waiting for w1"
        return ChatReply("", (
            call("agent/spawn", {"id": "w1", "instructions": "count to 3", "tools": ["fs/read"]}, "s1"),
            call("agent/spawn", {"id": "w2", "instructions": "run shell", "tools": ["shell/run"]}, "s2"),
        ))

    provider = ScriptedProvider(answer)
    policy = Policy(rules={1: PolicyRule(models=("small",), tools=frozenset({"fs/read", "fs/list"}))})
    async with open_runtime(recorder, **options(recorder, tmp_path, provider, policy=policy)) as rt:
        rt.spawn(llm_spec("boss", "split the work", tools=["agent/spawn", "fs/read", "shell/run"], model="big"))
        exit = await rt.wait("boss")
    assert (exit.status, exit.result) == ("ok", "final: w1 report using small")
    spawned = {e["agent_id"]: e for e in recorder.of_type("agent/spawned")}
    assert spawned["w1"]["parent_id"] == "boss" and spawned["w1"]["depth"] == 1
    assert spawned["w1"]["model"] == "small" and spawned["w1"]["tools"] == ["fs/read"]
    assert "w2" not in spawned
    refused = recorder.of_type("policy/refused")
    assert [(e["child_id"], e["rule"]) for e in refused] == [("w2", "tools")]
    boss_requests = [r for r in provider.requests if "agent 'boss'" in r.messages[0]["content"]]
    fed = tool_messages(boss_requests[1])
    assert "spawned child agent 'w1'" in fed[0]["content"]
    assert "policy_refused" in fed[1]["content"]
    # The child's done went to the boss as a message, before the boss finished.
    msgs = [e for e in recorder.of_type("agent/message") if e.get("kind") == "done" and e.get("to") == "boss"]
    assert msgs and msgs[0]["seq"] < done_event(recorder, "boss")["seq"]


async def test_agent_done_and_send_calls_become_runtime_actions(recorder, tmp_path) -> None:
    provider = ScriptedProvider([
        ChatReply("", (call("agent/send", {"to": "parent", "kind": "note", "body": "halfway"}, "c1"),)),
        ChatReply("", (call("agent/done", {"result": {"answer": 42}}, "c2"),)),
    ])

    def parent(ctx: StepContext) -> list:
        if ctx.reason == "start":
            return [act.spawn(llm_spec("kid", "report", tools=["agent/send", "agent/done"]))]
        got = ctx.state.setdefault("got", [])
        got.extend((m.kind, m.body) for m in ctx.messages)
        return [act.done("ok", got)] if any(k == "done" for k, _ in got) else []

    async with open_runtime(recorder, **options(recorder, tmp_path, provider)) as rt:
        rt.spawn(AgentSpec("top", parent))
        exit = await rt.wait("top")
    assert exit.result == [("note", "halfway"), ("done", {"status": "ok", "result": {"answer": 42}})]
    assert recorder.of_type("tool/requested") == []  # the interpreter did it, not the tool pool


async def test_bridge_tools_work_through_the_tool_pool(recorder, tmp_path) -> None:
    provider = ScriptedProvider(["child says hi"])

    def script(ctx: StepContext) -> list:
        n = ctx.step_no
        if n == 1:
            return [act.call_tool("agent/spawn", {"id": "c", "instructions": "say hi", "budget": {"max_steps": 5}})]
        if n == 2:
            ctx.state["spawn"] = ctx.results[0]
            return []
        if ctx.messages and ctx.messages[0].kind == "done":
            ctx.state["child"] = ctx.messages[0].body
            return [act.call_tool("agent/done", {"result": "finished via tool"})]
        return []

    async with open_runtime(recorder, **options(recorder, tmp_path, provider, llm_child=llm_child_spec)) as rt:
        rt.spawn(AgentSpec("s", script, tools=frozenset({"agent/spawn", "agent/done"}), budget=Budget(max_steps=20)))
        exit = await rt.wait("s")
    assert (exit.outcome, exit.status, exit.result) == ("done", "ok", "finished via tool")
    spawned = next(e for e in recorder.of_type("agent/spawned") if e["agent_id"] == "c")
    assert spawned["parent_id"] == "s" and spawned["budget"]["max_steps"] == 5 and spawned["kind"] == "llm"
    assert done_event(recorder, "c")["result"] == "child says hi"
    results = recorder.of_type("tool/result")
    assert [r["ok"] for r in results] == [True, True]


async def test_llm_failures_are_retried_then_end_the_agent_failed(recorder, tmp_path) -> None:
    flaky = ScriptedProvider([LLMError("boom"), "recovered"])
    broken = ScriptedProvider([LLMError("down")] * 5)
    async with open_runtime(recorder, **options(recorder, tmp_path, flaky)) as rt:
        rt.spawn(llm_spec("a", "x", tools=[]))
        first = await rt.wait("a")
    async with open_runtime(recorder, **options(recorder, tmp_path, broken)) as rt:
        rt.spawn(llm_spec("b", "x", tools=[]))
        second = await rt.wait("b")
    assert (first.status, first.result) == ("ok", "recovered")
    assert second.status == "failed" and "down" in second.result
    assert len(broken.requests) == 3  # one try and two retries


async def test_context_trimming_keeps_system_and_task(recorder, tmp_path) -> None:
    (tmp_path / "big.txt").write_text("x" * 900)
    provider = ScriptedProvider([ChatReply("", (call("fs/read", {"path": "big.txt"}, f"r{i}"),)) for i in range(6)] + ["enough"])
    config = LLMAgentConfig(context_chars=2500)
    async with open_runtime(recorder, **options(recorder, tmp_path, provider)) as rt:
        rt.spawn(llm_spec("a", "THE TASK: read big.txt a lot", tools=["fs/read"], config=config))
        exit = await rt.wait("a")
    assert exit.result == "enough"
    last = provider.requests[-1].messages
    assert last[0]["role"] == "system" and last[1] == {"role": "user", "content": "THE TASK: read big.txt a lot"}
    assert sum(len(str(m.get("content"))) for m in last) <= 2500 + 200  # tool-call JSON is small
    assert len(last) < 2 + 2 * 6  # older turns were dropped...
    assert last[2]["role"] == "assistant" and last[-1]["role"] == "tool"  # ...whole turns, never an orphan answer


def test_trim_context_drops_whole_turns_oldest_first() -> None:
    task: dict[str, Any] = {"role": "user", "content": "task"}
    turn1: list[dict[str, Any]] = [{"role": "assistant", "content": "", "tool_calls": [{"id": "1", "name": "t", "arguments": {}}]},
             {"role": "tool", "tool_call_id": "1", "content": "a" * 100}]
    turn2 = [{"role": "user", "content": "b" * 100}]
    turn3 = [{"role": "assistant", "content": "c" * 50}]
    msgs = [task, *turn1, *turn2, *turn3]
    assert trim_context(msgs, 10_000) == msgs
    assert trim_context(msgs, 200) == [task, *turn2, *turn3]
    assert trim_context(msgs, 10) == [task, *turn3]  # the newest turn always stays


async def test_step_budget_ends_a_model_looping_on_the_same_call(recorder, tmp_path) -> None:
    (tmp_path / "f.txt").write_text("same")
    provider = ScriptedProvider(lambda request: ChatReply("", (call("fs/read", {"path": "f.txt"}),)))
    async with open_runtime(recorder, **options(recorder, tmp_path, provider)) as rt:
        rt.spawn(llm_spec("a", "loop", tools=["fs/read"], budget=Budget(max_steps=7)))
        exit = await rt.wait("a")
    assert exit.status == "budget_exceeded"
    ev = done_event(recorder, "a")
    assert ev["reason"] == "max_steps" and ev["steps"] == 7
    assert 3 <= len(recorder.of_type("tool/requested")) <= 4


def test_llm_child_spec_is_a_temporary_llm_agent() -> None:
    spec = llm_child_spec("w", "do it", tools=["fs/read"], budget={"max_steps": 3}, provider="ollama")
    assert (spec.kind, spec.restart, spec.provider, spec.tools, spec.budget) == ("llm", "temporary", "ollama", frozenset({"fs/read"}), Budget(max_steps=3))


def test_providers_for_plan_reads_defaults_then_environment() -> None:
    def plan(**defaults: Any) -> Plan:
        return Plan(name="p", tasks=(), defaults=Defaults(**defaults))

    provs, default = providers_for_plan(plan(), env={"OLLAMA_HOST": "10.0.0.5:1234"})
    assert default == "ollama" and "10.0.0.5:1234" in repr(provs["ollama"])
    provs, default = providers_for_plan(plan(provider="openai", model="gpt-x"), env={"OPENAI_BASE_URL": "http://h:9/v1", "OPENAI_API_KEY": "k"})
    assert default == "openai" and "http://h:9/v1" in repr(provs["openai"])
    provs, default = providers_for_plan(plan(provider="openai", base_url="http://plan:1/v1"), env={"OPENAI_BASE_URL": "http://env:2/v1"})
    assert "http://plan:1/v1" in repr(provs["openai"]) and "env:2" not in repr(provs["openai"])
    with pytest.raises(LLMError):
        providers_for_plan(plan(provider="nope"), env={})
    # A plan file cannot name one: validation refuses it first, saying which exist.
    with pytest.raises(PlanError, match="ollama"):
        parse_plan("name: p\ndefaults: {provider: nope}\ntasks: []\n", filename="p.yaml")


async def test_openai_provider_of_a_plan_names_tool_choice_when_it_offers_tools() -> None:
    async with running_server() as server:
        provs, name = providers_for_plan(Plan(name="p", tasks=(), defaults=Defaults(provider="openai", model="m", base_url=server.url + "/v1")), env={})
        spec = default_registry().get("fs/read").spec()
        await provs[name].chat(ChatRequest(model="", messages=({"role": "user", "content": "hi"},), tools=(spec,)))
        await provs[name].chat(ChatRequest(model="", messages=({"role": "user", "content": "hi"},)))
        await provs[name].aclose()
    # llama.cpp's server hides the tools from the model unless tool_choice is named.
    assert server.requests[0].body["tool_choice"] == "auto"
    assert "tool_choice" not in server.requests[1].body


async def test_plan_defaults_set_the_llm_options() -> None:
    from agentctl.agents.factory import spec_for_task

    plan = parse_plan(
        "name: p\ndefaults: {provider: scripted, model: m, context_chars: 1500, llm_options: {temperature: 0}}\n"
        "tasks:\n  - id: a\n    agent: llm\n    instructions: say hi\n",
        filename="p.yaml",
    )
    provider = ScriptedProvider(["hi"])
    emit = EventLog(None, "options").emit  # kept in memory only

    tools = default_registry()
    plane = LocalWorkPlane(emit, tools=tools, providers={"scripted": provider}, default_provider="scripted")
    spec = spec_for_task(plan.tasks[0], plan.defaults)
    async with open_runtime(emit, tools=tools, plane=plane) as rt:
        rt.spawn(spec)
        exit = await rt.wait("a")
    assert exit.status == "ok"
    request = provider.requests[0]
    assert dict(request.options).get("temperature") == 0


async def test_an_llm_parent_is_told_when_someone_else_stops_its_child(recorder, tmp_path) -> None:
    def answer(request: ChatRequest) -> Any:
        system, last = request.messages[0]["content"], request.messages[-1]
        if "agent 'w1'" in system:
            return ChatReply("", (call("fs/read", {"path": "nothing-here"}, "r1"),))  # busy, never done
        if last["role"] == "user" and "was stopped" in last["content"]:
            return "noted: " + last["content"]
        if last["role"] == "tool":
            return "waiting for w1"
        return ChatReply("", (call("agent/spawn", {"id": "w1", "instructions": "read", "tools": ["fs/read"]}, "s1"),))

    provider = ScriptedProvider(answer)
    async with open_runtime(recorder, **options(recorder, tmp_path, provider)) as rt:
        rt.spawn(llm_spec("boss", "delegate", tools=["agent/spawn", "fs/read"]))
        with anyio.fail_after(10):
            while not rt.is_live("w1"):
                await anyio.sleep(0.01)
        rt.stop("w1")
        with anyio.fail_after(10):
            exit = await rt.wait("boss")
    assert exit.result == "noted: Child agent w1 was stopped (requested)."


async def test_agent_spawn_tool_refuses_in_a_runtime_given_no_llm_child_factory(recorder, tmp_path) -> None:
    def script(ctx: StepContext) -> list:
        if ctx.step_no == 1:
            return [act.call_tool("agent/spawn", {"id": "c", "instructions": "say hi"})]
        return [act.done("ok", ctx.results[0].value)]

    async with open_runtime(recorder, **options(recorder, tmp_path, ScriptedProvider(["hi"]))) as rt:
        rt.spawn(AgentSpec("s", script, tools=frozenset({"agent/spawn"}), budget=Budget(max_steps=5)))
        exit = await rt.wait("s")
    assert "without an llm_child factory" in exit.result
    assert not [e for e in recorder.of_type("agent/spawned") if e["agent_id"] == "c"]
