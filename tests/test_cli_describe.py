"""``agentctl describe``: one agent of a real run, as text and as JSON.

The run is in-process (``CliRunner``) against a real HTTP model server on 127.0.0.1,
served from a thread so that the run keeps the main thread (and its signal handling).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal
from cli_helpers import events, of
from llm_servers import Behaviour, running_server
from typer.testing import CliRunner

from agentctl.cli.main import app


def agentctl(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def llm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run: an LLM agent writes a file (one call fails first), messages its parent."""
    tmp = tmp_path_factory.mktemp("describe")
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(running_server()) as server:
        server.then(
            Behaviour(content="", tool_calls=[("fs__write", {"path": "/etc/nope", "content": "x"})], prompt_tokens=20),
            Behaviour(content="", tool_calls=[("fs__write", {"path": "out/a.txt", "content": "hello"})]),
            Behaviour(content="wrote out/a.txt\nall done", completion_tokens=7),
        )
        plan = tmp / "p.yaml"
        plan.write_text(f"""\
name: llm
defaults: {{provider: ollama, base_url: "{server.url}", model: m1, budget: {{max_tokens: 100000, max_steps: 50}}}}
tasks:
  - id: writer
    agent: llm
    instructions: write hello to out/a.txt
    tools: [fs/write]
""")
        result = agentctl("run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", str(tmp / "run"), "--workspace", str(tmp))
    assert result.exit_code == 0, result.output
    return tmp / "run"


def test_describe_json_has_spec_budget_calls_messages_errors_and_the_conversation(llm_run: Path) -> None:
    result = agentctl("describe", str(llm_run), "writer", "-o", "json")
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert set(d) == {"run_id", "id", "status", "done_status", "result", "spec", "parent", "children", "budget", "restarts",
                      "locks", "tool_calls", "messages", "errors", "conversation", "approvals"}
    assert (d["id"], d["status"], d["parent"], d["result"]) == ("writer", "done", "plan", "wrote out/a.txt\nall done")
    assert (d["spec"]["kind"], d["spec"]["model"], d["spec"]["tools"]) == ("llm", "m1", ["fs/write"])
    evs = events(llm_run)
    tokens = sum(e["prompt_tokens"] + e["completion_tokens"] for e in of(evs, "llm/result", "writer"))
    assert d["budget"]["reserved"]["max_tokens"] == 100000
    assert d["budget"]["used"]["tokens"] == tokens and d["budget"]["left"]["max_tokens"] == 100000 - tokens
    calls = d["tool_calls"]
    assert [(c["tool"], c["arguments"]["path"], c["ok"]) for c in calls] == [("fs/write", "/etc/nope", False), ("fs/write", "out/a.txt", True)]
    failed = of(evs, "tool/result", "writer")[0]
    assert calls[0]["error"] == failed["error"] and calls[1]["result"] == of(evs, "tool/result", "writer")[1]["result"]
    assert [(m["to"], m["kind"]) for m in d["messages"]["out"]] == [("plan", "done")]
    turns = d["conversation"]
    assert len(turns) == 3 and [t["ok"] for t in turns] == [True, True, True]
    assert turns[0]["reply"]["tool_calls"] and turns[2]["reply"]["content"] == "wrote out/a.txt\nall done"
    assert turns[0]["prompt_tokens"] == 20 and turns[2]["completion_tokens"] == 7
    plan = json.loads(agentctl("describe", str(llm_run), "plan", "-o", "json").stdout)
    assert plan["children"] == [{"id": "writer", "status": "done"}]
    assert [(m["from"], m["kind"]) for m in plan["messages"]["in"]] == [("writer", "done")]


def test_describe_text_shows_errors_in_full_and_the_turns(llm_run: Path) -> None:
    result = agentctl("describe", str(llm_run), "writer")
    assert result.exit_code == 0, result.output
    error = of(events(llm_run), "tool/result", "writer")[0]["error"]
    # full text, however long, on one line of its own: nothing cut with an ellipsis
    assert error in result.stdout.replace("\n", "") or error in result.stdout
    for part in ("tool calls (2)", "messages out (1)", "conversation (3 turns)", "turn 3", "assistant: wrote out/a.txt",
                 "max_tokens"):
        assert part in result.stdout, part


def test_describe_bad_input_is_one_line_and_exit_2(llm_run: Path, tmp_path: Path) -> None:
    for args, text in (
        ([str(llm_run), "nobody"], "no agent 'nobody'"),
        ([str(tmp_path / "missing"), "writer"], "no such run"),
        ([str(llm_run), "writer", "extra"], "expected [RUN] AGENT"),
        ([str(llm_run), "writer", "-o", "xml"], "xml"),
    ):
        result = agentctl("describe", *args)
        assert result.exit_code == 2, (args, result.output)
        assert text in result.output and "Traceback" not in result.output
