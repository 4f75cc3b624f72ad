"""Token budgets are reserved before calls: parallel LLM calls at several depths never overspend."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from llm_servers import Behaviour, running_server

from agentctl import actions as act
from agentctl.policy import Budget
from agentctl.runtime import AgentSpec, StepContext, open_runtime
from agentctl.services.llm.config import provider_from_config
from agentctl.services.tools import default_registry
from agentctl.services.workers import LocalWorkPlane

pytestmark = pytest.mark.anyio

ASK = [{"role": "user", "content": "spend"}]


def spender(*children: AgentSpec, batch: int = 4, max_tokens: int = 400):
    """Spawns ``children``, makes ``batch`` LLM calls at once until none fits, then waits for the children."""

    def step(ctx: StepContext) -> list:
        calls = act.parallel([act.call_llm(ASK, options={"max_tokens": max_tokens})] * batch)
        st = ctx.state
        if ctx.reason == "start":
            st["children"] = len(children)
            return [*(act.spawn(c) for c in children), calls]
        st["children"] -= sum(m.kind == "done" for m in ctx.messages)
        for r in ctx.results:
            if isinstance(r.action, act.Parallel):
                if any(x.ok for x in r.value):
                    return [calls]
                assert {x.error for x in r.value} == {"budget_exceeded"}
                st["spent"] = True
        return [act.done("ok")] if st.get("spent") and st["children"] == 0 else []

    return step


def tree(root_tokens: int) -> AgentSpec:
    grand = AgentSpec("g", spender(), budget=Budget(max_tokens=root_tokens // 4))
    child = AgentSpec("c", spender(grand), budget=Budget(max_tokens=root_tokens // 2))
    return AgentSpec("r", spender(child), budget=Budget(max_tokens=root_tokens))


async def run_tree(recorder, provider: Any, root_tokens: int) -> dict[str, int]:
    """Run the three-level tree to the end; the tokens each agent's calls were reported to cost."""
    plane = LocalWorkPlane(recorder, tools=default_registry(), providers={"p": provider}, default_provider="p")
    async with open_runtime(recorder, plane=plane) as rt:
        rt.spawn(tree(root_tokens))
        with anyio.fail_after(30):
            for agent in ("g", "c", "r"):
                assert (await rt.wait(agent)).status == "ok"
    spent: dict[str, int] = {}
    for e in recorder.of_type("llm/result"):
        spent[e["agent_id"]] = spent.get(e["agent_id"], 0) + e["prompt_tokens"] + e["completion_tokens"]
    return spent


async def test_parallel_calls_at_three_depths_never_spend_more_than_the_root_was_given(recorder) -> None:
    async with running_server() as server:
        server.default = Behaviour(content="ok", prompt_tokens=11, completion_tokens=400, delay=0.02)
        provider = provider_from_config("openai", base_url=server.url + "/v1", model="m", env={})
        spent = await run_tree(recorder, provider, 4000)
        await provider.aclose()
    assert set(spent) == {"r", "c", "g"}  # every depth made calls
    assert spent["g"] <= 1000 and spent["g"] + spent["c"] <= 2000
    assert sum(spent.values()) <= 4000
    # Calls went out in parallel, each with its completion capped at what its reservation allows.
    caps = [r.body["max_tokens"] for r in server.requests]
    assert max(caps) == 400 and min(caps) < 400
    assert len(recorder.of_type("llm/requested")) == len(server.requests)

