"""The translator from events to spans (views/otel.py) on the log of a real run, and the CLI's
refusals; no OpenTelemetry SDK needed (the real receiver is ``tests/test_otel_phoenix.py``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal
from cli_helpers import events, invoke
from llm_servers import running_server
from otel_plans import SECRET, SECRET_ENV, traced_plan

from agentctl.events.reader import read_events
from agentctl.views.otel import SpanRecord, span_id_of, trace_id_of, trace_of


@pytest.fixture(scope="module")
def traced_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of the traced plan (in this process, the model served on 127.0.0.1)."""
    tmp = tmp_path_factory.mktemp("otel")
    mp = pytest.MonkeyPatch()
    mp.setenv(SECRET_ENV, SECRET)
    try:
        with start_blocking_portal() as portal, portal.wrap_async_context_manager(running_server()) as server:
            plan = traced_plan(tmp, server)
            result = invoke("run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", "run", cwd=tmp)
    finally:
        mp.undo()
    assert result.returncode == 0, result.stderr
    return tmp / "run"


def by_name(spans: list[SpanRecord]) -> dict[str, list[SpanRecord]]:
    found: dict[str, list[SpanRecord]] = {}
    for span in spans:
        found.setdefault(span.name, []).append(span)
    return found


def only(spans: list[SpanRecord], name: str, agent: str | None = None) -> SpanRecord:
    matching = [s for s in spans if s.name == name and (agent is None or s.attributes.get("agentctl.agent_id") == agent)]
    assert len(matching) == 1, (name, agent, [s.name for s in spans])
    return matching[0]


def test_spans_follow_the_agent_tree_with_genai_attributes_and_the_events_times(traced_run: Path) -> None:
    evs = events(traced_run)
    run_id = evs[0]["run_id"]
    spans = trace_of(evs)
    assert {s.trace_id for s in spans} == {trace_id_of(run_id)}
    assert len({s.span_id for s in spans}) == len(spans)
    run = only(spans, "agentctl run traced")
    assert run.parent_id is None and run.error is None
    assert (run.start_ns, run.end_ns) == (evs[0]["t"] * 10**6, evs[-1]["t"] * 10**6)
    agents = {s.attributes["agentctl.agent_id"]: s for s in spans if s.name.startswith("invoke_agent ")}
    assert set(agents) == {"plan", "boss", "helper", "writer"}
    parent_of = {"plan": run, "boss": agents["plan"], "writer": agents["plan"], "helper": agents["boss"]}
    for agent, parent in parent_of.items():
        assert agents[agent].parent_id == parent.span_id, agent
        assert agents[agent].span_id == span_id_of(run_id, f"agent:{agent}")
        assert agents[agent].attributes["gen_ai.operation.name"] == "invoke_agent"
    spawned = next(e for e in evs if e["type"] == "agent/spawned" and e["agent_id"] == "helper")
    done = next(e for e in evs if e["type"] == "agent/done" and e["agent_id"] == "helper")
    assert (agents["helper"].start_ns, agents["helper"].end_ns) == (spawned["t"] * 10**6, done["t"] * 10**6)

    # Each call under the agent that made it, with the GenAI conventions' names.
    chats = [s for s in spans if s.attributes.get("gen_ai.operation.name") == "chat"]
    results = [e for e in evs if e["type"] == "llm/result"]
    assert len(chats) == len(results) == 3
    for chat, result in zip(sorted(chats, key=lambda s: s.start_ns), results, strict=True):
        assert chat.parent_id == agents["writer"].span_id and chat.kind == "client"
        assert chat.name == "chat m1"
        assert chat.attributes["gen_ai.request.model"] == "m1"
        assert chat.attributes["gen_ai.provider.name"] == chat.attributes["gen_ai.system"] == "ollama"
        assert chat.attributes["gen_ai.usage.input_tokens"] == result["prompt_tokens"]
        assert chat.attributes["gen_ai.usage.output_tokens"] == result["completion_tokens"]
        assert chat.attributes["agentctl.call_id"] == result["call_id"]
        assert chat.span_id == span_id_of(run_id, f"call:{result['call_id']}")
    tools = [s for s in spans if s.attributes.get("gen_ai.operation.name") == "execute_tool"]
    owners = sorted((s.attributes["gen_ai.tool.name"], s.parent_id == agents[str(s.attributes["agentctl.agent_id"])].span_id,
                     s.attributes["agentctl.agent_id"]) for s in tools)
    assert owners == [("fs/append", True, "helper"), ("fs/write", True, "boss"), ("fs/write", True, "writer"),
                      ("fs/write", True, "writer")]
    for tool in tools:
        assert tool.attributes["gen_ai.tool.call.id"] == tool.attributes["agentctl.call_id"]
    failed = [s for s in tools if s.error is not None]
    assert len(failed) == 1 and failed[0].attributes["error.type"] == "tool_error"
    error = failed[0].error
    assert error is not None and ("/etc/nope" in error or "workspace" in error)


def test_content_is_left_out_unless_asked_and_then_only_as_logged(traced_run: Path) -> None:
    evs = events(traced_run)
    content_keys = {"gen_ai.tool.call.arguments", "gen_ai.tool.call.result", "gen_ai.output.messages"}
    plain = trace_of(evs)
    assert not content_keys & {k for s in plain for k in s.attributes}
    full = trace_of(evs, content=True)
    write = next(s for s in full if s.attributes.get("gen_ai.tool.call.id")
                 and "out/w.txt" in str(s.attributes.get("gen_ai.tool.call.arguments")))
    assert '"content":"key ***"' in str(write.attributes["gen_ai.tool.call.arguments"])
    replies = [str(s.attributes.get("gen_ai.output.messages")) for s in full if s.name == "chat m1"]
    assert any('"content":"wrote out/w.txt"' in reply for reply in replies)
    assert not any(SECRET in str(v) for s in full for v in s.attributes.values())


def test_the_same_log_gives_the_same_trace_every_time(traced_run: Path) -> None:
    first = trace_of(read_events(traced_run / "events.jsonl"))
    again = trace_of(read_events(traced_run / "events.jsonl"))
    assert first == again


def test_a_log_cut_short_by_a_crash_still_gives_a_whole_tree(traced_run: Path, tmp_path: Path) -> None:
    """Every line up to the model's second reply: calls and agents in flight end at the last
    event, marked unfinished with an error status, under the parents they had."""
    lines = (traced_run / "events.jsonl").read_bytes().splitlines(keepends=True)
    evs = events(traced_run)
    cut = [i for i, e in enumerate(evs) if e["type"] == "llm/requested"][1] + 1
    crashed = tmp_path / "events.jsonl"
    crashed.write_bytes(b"".join(lines[:cut]) + lines[cut][: len(lines[cut]) // 2])  # and a torn line
    spans = trace_of(read_events(crashed))
    ids = {s.span_id for s in spans}
    assert all(s.parent_id in ids for s in spans if s.parent_id is not None)
    last_ns = evs[cut - 1]["t"] * 10**6
    unfinished = [s for s in spans if s.attributes.get("agentctl.unfinished")]
    assert {s.name for s in unfinished} >= {"agentctl run traced", "invoke_agent plan", "invoke_agent writer", "chat m1"}
    for span in unfinished:
        assert span.end_ns == last_ns and span.error is not None and "no end event" in span.error
    # What had ended keeps its own end and the same ids as in the whole log.
    whole = {s.span_id: s for s in trace_of(evs)}
    for span in spans:
        if not span.attributes.get("agentctl.unfinished"):
            assert span == whole[span.span_id]


def hide_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import opentelemetry...`` fail, as without the otel extra."""
    for name in [m for m in sys.modules if m == "opentelemetry" or m.startswith("opentelemetry.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)


def test_without_the_extra_otel_says_how_to_install_it_and_exits_2(tmp_path: Path, traced_run: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    hide_sdk(monkeypatch)
    plan = tmp_path / "p.yaml"
    plan.write_text("name: p\ntasks:\n  - {id: a, agent: script, steps: [{done: ok}]}\n")
    for args in (("run", str(plan), "--no-ui", "--otel", "--run-dir", "r"),
                 ("run", str(plan), "--no-ui", "--otel-endpoint", "http://127.0.0.1:4318", "--run-dir", "r"),
                 ("export", "otel", str(traced_run))):
        result = invoke(*args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr == 'error: OpenTelemetry export needs the otel extra: pip install "agentctl[otel]"\n'
    assert not (tmp_path / "r").exists()  # refused before anything started
    # Asked only by the environment: the run goes on, and says why nothing is exported.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    result = invoke("run", str(plan), "--no-ui", "--run-dir", "r", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "warning: OTEL_EXPORTER_OTLP_ENDPOINT is set but no trace is exported" in result.stderr


@pytest.mark.parametrize("args", [("--otel-endpoint", "ftp://127.0.0.1:4318"), ("--otel-endpoint", "127.0.0.1:4318")])
def test_a_bad_endpoint_is_one_line_and_exit_2(tmp_path: Path, args: Any) -> None:
    plan = tmp_path / "p.yaml"
    plan.write_text("name: p\ntasks:\n  - {id: a, agent: script, steps: [{done: ok}]}\n")
    result = invoke("run", str(plan), "--no-ui", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: --otel-endpoint: expected an http(s) URL") and result.stderr.count("\n") == 1


def test_a_hostile_log_gives_spans_for_what_it_can_and_never_raises(traced_run: Path) -> None:
    """Fields of the wrong type (an id that is a number, a list for an agent, a string for t):
    those events are skipped, the rest still form a tree."""
    evs = events(traced_run)
    hostile = [dict(e) for e in evs]
    for e in hostile:
        if e["type"] == "tool/requested":
            e["call_id"] = 5
        elif e["type"] == "agent/spawned" and e["agent_id"] == "helper":
            e["parent_id"] = ["boss"]
        elif e["type"] == "llm/result":
            e["prompt_tokens"] = "many"
    spans = trace_of(hostile)
    ids = {s.span_id for s in spans}
    assert all(s.parent_id in ids for s in spans if s.parent_id is not None)
    assert not [s for s in spans if s.name.startswith("execute_tool")]
    assert not [s for s in spans if s.name == "invoke_agent helper"]
    assert [s.name for s in spans if s.name == "chat m1" and s.attributes.get("agentctl.unfinished")] == ["chat m1"] * 3


def test_a_call_the_dead_process_left_in_flight_ends_where_that_process_stopped(traced_run: Path) -> None:
    """The log of a run killed during its second model call, then resumed: the call's span
    ends at the dead process's last event, with an error status; the run span goes on."""
    evs = events(traced_run)
    cut = [i for i, e in enumerate(evs) if e["type"] == "llm/requested"][1] + 1
    died_at = evs[cut - 1]["t"]
    resumed = {"seq": cut + 1, "t": died_at + 5000, "run_id": evs[0]["run_id"], "type": "run/resumed", "agent_id": None,
               "from_seq": cut, "torn_line": None, "checkpoint": None, "agents": ["plan", "writer"], "pid": 1,
               "control": "x"}
    after = [{**e, "seq": e["seq"] + 1, "t": e["t"] + 5000} for e in evs[cut:]]
    spans = trace_of([*evs[:cut], resumed, *after])
    call = evs[cut - 1]["call_id"]
    interrupted = [s for s in spans if s.attributes.get("agentctl.call_id") == call]
    assert len(interrupted) == 1
    assert interrupted[0].end_ns == died_at * 10**6 and interrupted[0].attributes["agentctl.interrupted"] is True
    assert interrupted[0].error is not None and interrupted[0].error.startswith("interrupted")
    run = only(spans, "agentctl run traced")
    assert run.attributes["agentctl.resumes"] == 1 and run.end_ns == after[-1]["t"] * 10**6 and run.error is None
