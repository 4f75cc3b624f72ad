"""Span events in the trace: approvals on the held tool call's span, bus messages on the
sender's span, streamed fragments on the chat span (content only).

The log is a real run's (``agentctl run`` in a process of its own, its model a streaming
server on 127.0.0.1, its held calls answered by ``agentctl approve`` / ``deny``); the spans
are built by the translator and handed through the real OpenTelemetry SDK to its
``InMemorySpanExporter``, read back as the SDK's ``ReadableSpan`` values an OTLP exporter
encodes. The receiver end (Phoenix) is ``tests/test_otel_phoenix.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_helpers import events, of
from otel_plans import HELD_NOTE, HELD_REASON, HELD_REPLY, SECRET, run_held

from agentctl.views.otel import MAX_SPAN_EVENTS, SpanRecord, trace_of

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from agentctl.cli.otel import LiveTrace, OtelConfig, SpanSender  # noqa: E402


@pytest.fixture(scope="module")
def held_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run whose first held call was approved, the second denied (the reason
    naming a secret the run knows), and whose last reply streamed in slowly."""
    return run_held(tmp_path_factory.mktemp("held"))


def exported(spans: list[SpanRecord]) -> dict[int, Any]:
    """The spans as the SDK hands them to an exporter, by span id."""
    memory = InMemorySpanExporter()
    sender = SpanSender(OtelConfig("http://127.0.0.1:1/v1/traces"), live=False, exporter=memory)
    sender.send(spans)
    assert sender.close(5).sent == len(spans)
    return {s.context.span_id: s for s in memory.get_finished_spans()}


def tool_span(spans: dict[int, Any], call_id: str) -> Any:
    (span,) = [s for s in spans.values() if s.attributes.get("agentctl.call_id") == call_id]
    return span


def test_a_held_calls_span_carries_the_request_and_answer_and_its_wait(held_run: Path) -> None:
    evs = events(held_run)
    spans = exported(trace_of(evs))
    asked = of(evs, "approval/requested")
    granted, denied = of(evs, "approval/granted")[0], of(evs, "approval/denied")[0]
    (ran,) = [e for e in of(evs, "tool/result") if e["call_id"] == granted["call_id"]]

    approved = tool_span(spans, granted["call_id"])
    assert approved.name == "execute_tool fs/write" and approved.status.is_ok
    # The span starts when the call was held: the wait for a person is part of its time.
    assert (approved.start_time, approved.end_time) == (asked[0]["t"] * 10**6, ran["t"] * 10**6)
    assert [(e.name, e.timestamp) for e in approved.events] == [
        ("approval.requested", asked[0]["t"] * 10**6), ("approval.answered", granted["t"] * 10**6)]
    request, answer = (dict(e.attributes) for e in approved.events)
    assert request["agentctl.approval.gate"] == "fs/write:src/**" and request["agentctl.approval.default"] == "deny"
    assert answer["agentctl.approval.decision"] == "granted" and answer["agentctl.approval.by"] == "user"
    assert answer["agentctl.approval.note"] == HELD_NOTE
    assert answer["agentctl.approval.wait_ms"] == granted["t"] - asked[0]["t"]
    assert approved.attributes["gen_ai.tool.name"] == "fs/write"
    assert approved.attributes["agentctl.requested_seq"] > approved.attributes["agentctl.seq"]

    refused = tool_span(spans, denied["call_id"])
    assert (refused.start_time, refused.end_time) == (asked[1]["t"] * 10**6, denied["t"] * 10**6)
    assert not refused.status.is_ok and refused.attributes["error.type"] == "denied"
    logged = HELD_REASON.replace(SECRET, "***")
    assert refused.status.description == f"denied by user: {logged}"
    assert [e.name for e in refused.events] == ["approval.requested", "approval.answered"]
    answer = dict(refused.events[1].attributes)
    # Redacted as the log holds it: the secret the reason named never leaves the machine.
    assert answer["agentctl.approval.decision"] == "denied" and answer["agentctl.approval.reason"] == logged
    coder = next(s for s in spans.values() if s.name == "invoke_agent coder")
    assert approved.parent.span_id == refused.parent.span_id == coder.context.span_id
    everything = repr([(s.attributes, [e.attributes for e in s.events], s.status.description) for s in spans.values()])
    assert SECRET not in everything


def test_bus_messages_are_events_on_the_senders_span_without_their_body_unless_content(held_run: Path) -> None:
    evs = events(held_run)
    (message,) = [e for e in of(evs, "agent/message") if e["from"] == "talker" and e["kind"] == "chat"]
    for content in (False, True):
        spans = exported(trace_of(evs, content=content))
        talker = next(s for s in spans.values() if s.name == "invoke_agent talker")
        (sent,) = [e for e in talker.events if e.name == "message.sent" and e.attributes["agentctl.message.kind"] == "chat"]
        assert sent.timestamp == message["t"] * 10**6
        attrs = dict(sent.attributes)
        assert {k: attrs[k] for k in ("messaging.system", "messaging.operation.type", "messaging.destination.name",
                                      "messaging.message.id", "agentctl.message.kind")} == {
            "messaging.system": "agentctl", "messaging.operation.type": "send", "messaging.destination.name": "listener",
            "messaging.message.id": message["msg_id"], "agentctl.message.kind": "chat"}
        assert attrs["agentctl.message.delivered"] is True
        if content:
            assert attrs["agentctl.message.body"] == '{"note":"hello ***"}'
        else:
            assert "agentctl.message.body" not in attrs
    # A child's end notice comes after its span ended: it is on the addressee's span.
    plan = next(s for s in exported(trace_of(evs)).values() if s.name == "invoke_agent plan")
    received = sorted((e.attributes["agentctl.message.from"], e.attributes["agentctl.message.kind"],
                       e.attributes["messaging.operation.type"]) for e in plan.events if e.name == "message.received")
    assert received == [("coder", "done", "receive"), ("listener", "done", "receive"), ("talker", "done", "receive")]


def test_streamed_fragments_are_chat_span_events_only_with_content(held_run: Path) -> None:
    evs = events(held_run)
    deltas = of(evs, "llm/delta")
    last = of(evs, "llm/result")[-1]
    streamed = [d for d in deltas if d["call_id"] == last["call_id"]]
    assert len(streamed) >= 2  # the slow reply came in several fragments
    plain = exported(trace_of(evs))
    assert not [e for s in plain.values() for e in s.events if e.name == "llm.delta"]
    spans = exported(trace_of(evs, content=True))
    (chat,) = [s for s in spans.values() if s.attributes.get("agentctl.call_id") == last["call_id"]]
    fragments = [e for e in chat.events if e.name == "llm.delta"]
    assert [e.timestamp for e in fragments] == [d["t"] * 10**6 for d in streamed]
    assert "".join(str(e.attributes["agentctl.delta.content"]) for e in fragments) == HELD_REPLY
    assert not [e for s in spans.values() if s is not chat and s.attributes.get("gen_ai.operation.name") == "chat"
                for e in s.events if e.name == "llm.delta" and e.attributes.get("agentctl.seq") in
                {d["seq"] for d in streamed}]


def test_the_live_trace_sends_the_spans_an_export_of_the_log_sends(held_run: Path) -> None:
    evs = events(held_run)
    memory = InMemorySpanExporter()
    live = LiveTrace(OtelConfig("http://127.0.0.1:1/v1/traces", content=True), exporter=memory)
    for event in evs:
        live.feed(event)
    live.close()

    def shape(span: Any) -> tuple[Any, ...]:
        return (span.name, span.context.span_id, span.parent.span_id if span.parent else None, span.start_time,
                span.end_time, dict(span.attributes), [(e.name, e.timestamp, dict(e.attributes)) for e in span.events],
                span.status.description)

    got = sorted(shape(s) for s in memory.get_finished_spans())
    assert got == sorted(shape(s) for s in exported(trace_of(evs, content=True)).values())


def test_a_call_still_held_when_the_process_died_stays_one_span_across_the_resume(held_run: Path) -> None:
    """The log cut right after the first request, a resume, then the rest: the held call is
    held again (not asked again), so its span is not ended as interrupted but goes on."""
    evs = events(held_run)
    cut = evs.index(of(evs, "approval/requested")[0]) + 1
    died_at = evs[cut - 1]["t"]
    resumed = {"seq": cut + 1, "t": died_at + 5000, "run_id": evs[0]["run_id"], "type": "run/resumed", "agent_id": None,
               "from_seq": cut, "torn_line": None, "checkpoint": None, "agents": ["plan", "coder"], "pid": 1,
               "control": "x"}
    after = [{**e, "seq": e["seq"] + 1, "t": e["t"] + 5000} for e in evs[cut:]]
    spans = exported(trace_of([*evs[:cut], resumed, *after]))
    call = evs[cut - 1]["call_id"]
    span = tool_span(spans, call)
    assert span.status.is_ok and "agentctl.interrupted" not in span.attributes
    assert span.start_time == died_at * 10**6
    assert [e.name for e in span.events] == ["approval.requested", "approval.answered"]


def test_a_span_keeps_its_newest_events_and_counts_the_dropped(held_run: Path) -> None:
    """A chatty agent: a thousand messages sent, the newest kept as the SDK's limit would."""
    evs = events(held_run)
    at = evs.index(of(evs, "agent/spawned", "talker")[0]) + 1
    base = {"run_id": evs[0]["run_id"], "type": "agent/message", "agent_id": "listener", "from": "talker",
            "to": "listener", "kind": "chat", "thread_id": None, "body": None, "delivered": True, "via": None,
            "signal": False, "step": 0}
    flood = [{**base, "seq": 0, "t": evs[at]["t"], "msg_id": f"m{i}"} for i in range(1000)]
    spans = exported(trace_of([*evs[:at], *flood, *evs[at:]]))
    talker = next(s for s in spans.values() if s.name == "invoke_agent talker")
    assert len(talker.events) == MAX_SPAN_EVENTS
    assert talker.dropped_events == 1001 - MAX_SPAN_EVENTS  # the flood and the logged message
    assert talker.events[0].attributes["messaging.message.id"] == f"m{1000 - MAX_SPAN_EVENTS + 1}"


def test_a_live_trace_never_holds_up_the_log_and_counts_what_it_could_not_trace(
        held_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A queue of one event against a flood: feeding never waits; every event is either
    traced or counted as dropped, and the end says so in one line."""
    evs = events(held_run)
    flood = [e for _ in range(100) for e in evs]
    memory = InMemorySpanExporter()
    live = LiveTrace(OtelConfig("http://127.0.0.1:1/v1/traces"), exporter=memory, max_queued=1)
    for event in flood:
        live.feed(event)
    live.close()
    assert 0 < live.dropped < len(flood)
    err = capsys.readouterr().err
    assert f"otel: {live.dropped} events were logged faster than they could be traced" in err
    assert "agentctl export otel RUN sends the whole trace" in err
