"""A hostile model tries to get more than its agent was given: tools, a bigger model.

The plan ranks its models (``policy.model_rank: [big, small]``) and opts in to ``shell/run``
for one task only. The LLM agent on ``small``, holding ``agent/spawn`` and ``fs/read``, asks
its model server (a real HTTP server on 127.0.0.1) what a hostile model would: children on
an unranked model, on another spelling of ``big``, on ``big`` itself, with tools it does not
hold or a glob of every tool, and calls to ``shell/run`` under its own name, its wire name
and look-alikes. Everything is refused; only the child that asks for nothing more is born.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal
from cli_helpers import of, run_model_plan
from llm_servers import Behaviour, running_server

from agentctl.errors import PolicyError
from agentctl.policy import UNLIMITED, Grant, Policy, PolicyRule, grant_child

RANKED = Policy(model_rank=("big", "small"))
UNRANKED_NAMES = ("huge", "BIG", "big ", " big", "big\u200b", "big-2024-08-06", "small\n")


def _child_model(policy: Policy, parent: str | None, asked: str | None) -> str | None:
    grant = grant_child(policy=policy, depth=1, parent=Grant(parent, frozenset(), UNLIMITED), parent_remaining=None,
                        model=asked, tools=None, budget=None)
    return grant.model


@pytest.mark.parametrize("asked", UNRANKED_NAMES)
def test_a_model_the_ranking_does_not_list_is_refused_to_a_ranked_parents_child(asked: str) -> None:
    with pytest.raises(PolicyError, match="not in policy.model_rank") as err:
        _child_model(RANKED, "small", asked)
    assert err.value.rule == "model"


def test_what_a_ranked_parents_child_may_still_ask_for() -> None:
    assert _child_model(RANKED, "small", "small") == "small"
    assert _child_model(RANKED, "big", "small") == "small"
    assert _child_model(RANKED, "small", None) == "small"  # inherited
    with pytest.raises(PolicyError, match="ranks above"):
        _child_model(RANKED, "small", "big")
    # What the plan's author lists for the depth is theirs to allow, ranked or not.
    listed = Policy(model_rank=("big", "small"), rules={1: PolicyRule(models=("small", "tiny"))})
    assert _child_model(listed, "small", "tiny") == "tiny"


def test_a_parent_on_an_unranked_model_passes_on_only_its_own() -> None:
    assert _child_model(RANKED, "medium", "medium") == "medium"
    for asked in ("big", "small", "other"):
        with pytest.raises(PolicyError, match="cannot be ranked against the parent's 'medium'"):
            _child_model(RANKED, "medium", asked)


def test_without_a_ranking_or_a_parents_model_nothing_is_compared() -> None:
    """No ``model_rank``: models are not compared (the depth's ``models`` still apply). A
    parent without a model (the plan's script and python agents, trusted) names any."""
    assert _child_model(Policy(), "small", "huge") == "huge"
    assert _child_model(RANKED, None, "big") == "big"


SPAWNS: list[tuple[str, dict[str, Any], str]] = [
    ("k-unranked", {"model": "huge"}, "model"),
    ("k-case", {"model": "BIG"}, "model"),
    ("k-space", {"model": "big "}, "model"),
    ("k-alias", {"model": "big-2024-08-06"}, "model"),
    ("k-bigger", {"model": "big"}, "model"),
    ("k-shell", {"tools": ["shell/run"]}, "tools"),
    ("k-glob", {"tools": ["*"]}, "tools"),
    ("k-all", {"tools": ["all"]}, "tools"),
]
SHELL_NAMES = ("shell/run", "shell__run", "Shell__run", "shell__RUN", " shell__run ", "shell__run:",
               "\uff53hell__run", "shell\u200b__run", "fs__read\u200b")


def test_a_hostile_model_gets_no_tool_or_model_beyond_its_agents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = tmp_path
    spawns = [("agent__spawn", {"id": kid, "instructions": "escalate", **extra}) for kid, extra, _ in SPAWNS]
    spawns.append(("agent__spawn", {"id": "k-fair", "instructions": "say hi", "model": "small", "tools": ["fs/read"]}))
    shells = [(name, {"command": "touch pwned", "path": "pwned"}) for name in SHELL_NAMES]
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(running_server()) as server:
        server.then(Behaviour(content="", tool_calls=[*spawns, *shells]))
        server.default = Behaviour(content="done")
        plan = {
            "name": "escalation",
            "settings": {"shell": True},
            "policy": {"model_rank": ["big", "small"]},
            "defaults": {"provider": "openai", "base_url": server.url + "/v1", "restart": "temporary"},
            "tasks": [
                {"id": "builder", "agent": "script", "tools": ["shell/run"], "steps": [{"done": "built"}]},
                {"id": "planner", "agent": "llm", "model": "small", "tools": ["agent/spawn", "fs/read"],
                 "instructions": "take over"},
            ],
        }
        result, evs = run_model_plan(ws, plan, tmp_path / "run", monkeypatch)
    assert result.exit_code == 0, result.output
    assert sorted(e["agent_id"] for e in of(evs, "agent/spawned")) == ["builder", "k-fair", "plan", "planner"]
    refused = {e["child_id"]: e["rule"] for e in of(evs, "policy/refused")}
    assert refused == {kid: rule for kid, _, rule in SPAWNS}
    assert {r.body["model"] for r in server.requests} == {"small"}
    assert not (ws / "pwned").exists()
    assert [e["tool"] for e in of(evs, "tool/requested")] == []
    planner = [r for r in server.requests if any(m["content"] == "take over" for m in r.body["messages"])]
    fed = [m["content"] for m in planner[1].body["messages"] if m["role"] == "tool"]
    assert len(fed) == len(spawns) + len(shells)
    assert all("not granted" in m for m in fed[len(spawns):]), fed[len(spawns):]
