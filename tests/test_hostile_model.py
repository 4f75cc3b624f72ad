"""A model that sends every malformed tool call it can: the run refuses each, in one message
fed back to it, and goes on.

In a real run, a hostile model (a real HTTP server on 127.0.0.1) asks for children with
budgets that are no numbers JSON knows (``NaN``, ``Infinity``, ``1e400``), negative, too big
or of the wrong type, and with ids that are empty, hold a NUL byte or name an agent that
exists; it calls the file tools with paths that hold a NUL byte or a lone surrogate, are
numbers, lists or 100,000 characters long, with unknown arguments and nested 900 deep; then
sends arguments nested 100,000 deep. No child is born, nothing but the one good file is
written, every call is answered, and the log parses from ``run/started`` to ``run/finished``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal
from cli_helpers import of, run_model_plan
from llm_servers import Behaviour, running_server

from agentctl.services.tools.schema import validate

SPAWNS: list[tuple[str, Any]] = [
    ("k-nan-seconds", {"max_seconds": float("nan")}),
    ("k-inf-seconds", {"max_seconds": float("inf")}),
    ("k-1e400-seconds", "1e400"),
    ("k-neg-seconds", {"max_seconds": -1}),
    ("k-nan-steps", {"max_steps": float("nan")}),
    ("k-huge-steps", {"max_steps": 10**30}),
    ("k-str-steps", {"max_steps": "5"}),
    ("k-bool-tokens", {"max_tokens": True}),
    ("k-tick", {"tick_ms": 1}),
    ("k-list", [1]),
]
IDS = ["", "a\x00b", "line\nbreak", " planner", "\u200bplanner", "planner", "plan", "x" * 100_000]
PATHS: list[Any] = ["a\x00b", "b\udcff", 5, ["x"], None, "x" * 100_000, {"p": "x"}]


def _spawn(kid: str, budget: Any) -> tuple[str, Any]:
    if isinstance(budget, str):  # a number Python's json would read as inf
        return "agent__spawn", f'{{"id": "{kid}", "instructions": "grow", "budget": {{"max_seconds": {budget}}}}}'
    return "agent__spawn", {"id": kid, "instructions": "grow", "budget": budget}


def _nested(depth: int) -> str:
    return '{"path": ' + "[" * depth + "]" * depth + ', "content": "x"}'


def test_a_hostile_model_gets_every_malformed_call_refused_and_the_run_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    calls: list[tuple[str, Any]] = [_spawn(kid, budget) for kid, budget in SPAWNS]
    calls += [("agent__spawn", {"id": kid, "instructions": "grow"}) for kid in IDS]
    calls += [("agent__spawn", {"id": "k-tools", "instructions": "grow", "tools": "fs/write"})]
    calls += [("fs__write", {"path": path, "content": "pwned"}) for path in PATHS]
    calls += [("fs__write", {"path": "ok-name", "content": {"not": "text"}}),
              ("fs__write", {"path": "ok-name", "content": "x", "mode": "0777"}),
              ("fs__write", _nested(900)),
              ("fs__write", '{"path": "ok-name", "content": NaN}')]
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(running_server()) as server:
        server.then(Behaviour(content="", tool_calls=calls),
                    Behaviour(content="", tool_calls=[("fs__write", _nested(100_000))]),
                    Behaviour(content="", tool_calls=[("fs__write", {"path": "work.txt", "content": "done"})]))
        server.default = Behaviour(content="finished")
        # Not streamed: the test server streams arguments 4 characters to a chunk (200,000 chunks).
        plan = {"name": "hostile", "defaults": {"provider": "openai", "model": "m", "base_url": server.url + "/v1",
                                                "restart": "temporary", "stream": False,
                                                "budget": {"max_seconds": 120, "max_steps": 40}},
                "tasks": [{"id": "planner", "agent": "llm", "tools": ["agent/spawn", "fs/write"], "instructions": "take over"}]}
        result, evs = run_model_plan(ws, plan, tmp_path / "run", monkeypatch)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert (evs[0]["type"], evs[-1]["type"]) == ("run/started", "run/finished")
    assert sorted(e["agent_id"] for e in of(evs, "agent/spawned")) == ["plan", "planner"]
    assert sorted(p.name for p in ws.iterdir()) == ["plan.yaml", "work.txt"]
    planner = [r for r in server.requests if any(m["content"] == "take over" for m in r.body["messages"])]
    fed = [m["content"] for m in planner[1].body["messages"] if m["role"] == "tool"]
    assert len(fed) == len(calls)
    assert all("error" in m or "refused" in m for m in fed), [m[:200] for m in fed if "error" not in m]
    assert not [m for m in fed if "Traceback" in m]
    json.dumps(fed)


def test_numbers_json_has_but_no_64_bit_integer_holds_neither_crash_nor_checkpoint_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint after every event: the model's calls (kept in its agent's state) carry
    integers beyond 64 bits, which the checkpoint's encoder cannot write."""
    ws = tmp_path / "ws"
    ws.mkdir()
    huge = [("fs__write", '{"path": "n.txt", "content": "x", "n": ' + "9" * 30 + "}"),
            ("fs__write", '{"path": "n.txt", "content": ' + "9" * 30 + "}"),
            ("fs__write", '{"path": "n.txt", "content": -' + "9" * 20 + "}")]
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(running_server()) as server:
        server.then(Behaviour(content="", tool_calls=huge),
                    Behaviour(content="", tool_calls=[("fs__write", {"path": "work.txt", "content": "done"})]))
        server.default = Behaviour(content="finished")
        plan = {"name": "huge", "settings": {"checkpoint_events": 1},
                "defaults": {"provider": "openai", "model": "m", "base_url": server.url + "/v1", "restart": "temporary"},
                "tasks": [{"id": "planner", "agent": "llm", "tools": ["fs/write"], "instructions": "take over"}]}
        result, evs = run_model_plan(ws, plan, tmp_path / "run", monkeypatch)
    assert result.exit_code == 0, (result.output, result.exception)
    assert sorted(p.name for p in ws.iterdir()) == ["plan.yaml", "work.txt"]
    planner = [r for r in server.requests if any(m["content"] == "take over" for m in r.body["messages"])]
    fed = [m["content"] for m in planner[1].body["messages"] if m["role"] == "tool"]
    assert len(fed) == len(huge) and all("error" in m for m in fed), fed


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_a_number_that_is_not_finite_is_refused_for_every_number_argument(number: float) -> None:
    from agentctl.errors import ToolError
    from agentctl.services.tools import default_registry

    registry = default_registry()
    for schema in ({"type": "number"}, {"type": "number", "minimum": 0}, {"type": ["number", "null"]}, {}):
        with pytest.raises(ToolError, match="finite"):
            validate(schema, number)
    with pytest.raises(ToolError, match="finite"):
        registry.validate("docker/run", {"image": "x", "timeout": number})
