"""A run's events as OpenTelemetry spans: the one translator behind ``--otel`` and ``export otel``.

Invoked from :mod:`agentctl.cli.otel`, which hands the spans to the OpenTelemetry SDK. Like
every view it reads events only (fed one by one, live or from a file) and knows nothing of
the SDK: it returns plain :class:`SpanRecord` values.

The trace of a run::

    agentctl run <plan>                    (the run: first to last event)
    └── invoke_agent plan                  (an agent: agent/spawned .. its end)
        ├── invoke_agent writer            (children under their parent, as the agent tree)
        │   ├── chat m1                    (an LLM call: llm/requested .. llm/result)
        │   └── execute_tool fs/write      (a tool call: tool/requested .. tool/result)
        └── ...

Ids are derived from the run id and agentctl's own ids (:func:`trace_id_of`,
:func:`span_id_of`), never drawn at random: a live export and a later ``export otel`` of
the same log give the same trace, and exporting a log twice sends the same spans again
rather than a second tree. Attributes follow the OpenTelemetry GenAI semantic conventions
(``gen_ai.*``; bus messages the messaging ones, ``messaging.*``) with agentctl's ids beside
them (``agentctl.*``). The GenAI conventions name no span events for approvals, bus messages
or streamed fragments (their only events, ``gen_ai.client.inference.operation.details`` and
the deprecated per-message ones, are log records of whole prompts and replies), so those are
agentctl's own (:class:`TraceBuilder`). Tool arguments and results, model replies, message
bodies and streamed fragments are content: left out unless ``content`` is asked for, and even
then only as the log holds them (redacted). An approval's note or reason is always sent, as
logged (redacted), as error messages are.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from agentctl.events.types import (
    AgentDone,
    AgentError,
    AgentMessage,
    AgentSpawned,
    AgentStopped,
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    Event,
    LlmDelta,
    LlmRequested,
    LlmResult,
    PlanLoaded,
    RunFinished,
    RunResumed,
    ToolRequested,
    ToolResult,
    UnknownEvent,
    decode,
)

__all__ = ["MAX_SPAN_EVENTS", "SpanEventRecord", "SpanRecord", "TraceBuilder", "span_id_of", "trace_id_of", "trace_of"]

#: What an attribute may hold (the OpenTelemetry attribute types).
AttrValue = str | bool | int | float | tuple[str, ...]

#: Why a span that the log never ended is ended anyway.
_UNFINISHED = "no end event in the log: the run's process died (or still runs)"
_INTERRUPTED = "interrupted: the run's process died during the call"
#: Span events kept per span, the newest (the SDK's default ``OTEL_SPAN_EVENT_COUNT_LIMIT``);
#: older ones are dropped and counted, as a span made by the SDK's tracer would do.
MAX_SPAN_EVENTS = 128


@dataclass(frozen=True, slots=True)
class SpanEventRecord:
    """One span event: something that happened at an instant during its span.

    Attributes:
        name: ``approval.requested``, ``approval.answered``, ``message.sent``,
            ``message.received`` or ``llm.delta``.
        time_ns: when, nanoseconds since the epoch (the event's ``t``).
        attributes: what it carries.
    """

    name: str
    time_ns: int
    attributes: Mapping[str, AttrValue]


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """One finished span, ready for an exporter.

    Attributes:
        name: e.g. ``chat m1`` or ``execute_tool fs/write``.
        trace_id: 128-bit trace id (:func:`trace_id_of` the run).
        span_id: 64-bit span id (:func:`span_id_of`).
        parent_id: the parent span's id; ``None`` for the run's span.
        start_ns: start, nanoseconds since the epoch (an event's ``t``).
        end_ns: end, likewise.
        kind: ``client`` for a call to a model server, else ``internal``.
        attributes: ``gen_ai.*`` and ``agentctl.*`` attributes.
        error: the error status's description; ``None`` when the span did not fail.
        events: its span events, oldest first (at most :data:`MAX_SPAN_EVENTS`).
        dropped_events: span events left out beyond that bound.
    """

    name: str
    trace_id: int
    span_id: int
    parent_id: int | None
    start_ns: int
    end_ns: int
    kind: Literal["internal", "client"]
    attributes: Mapping[str, AttrValue]
    error: str | None = None
    events: tuple[SpanEventRecord, ...] = ()
    dropped_events: int = 0


def trace_id_of(run_id: str) -> int:
    """The trace id of a run: 128 bits of SHA-256 of its id (never 0, which OTel forbids)."""
    return int.from_bytes(hashlib.sha256(b"agentctl trace\0" + run_id.encode()).digest()[:16], "big") or 1


def span_id_of(run_id: str, key: str) -> int:
    """The span id of ``key`` in a run (``run``, ``agent:ID``, ``agent:ID#2``, ``call:ID``)."""
    digest = hashlib.sha256(b"agentctl span\0" + run_id.encode() + b"\0" + key.encode()).digest()
    return int.from_bytes(digest[:8], "big") or 1


@dataclass(slots=True)
class _Open:
    """A span begun by an event whose end has not come yet.

    ``requested``: for a call, whether it went out (``tool/requested``, ``llm/requested``);
    a call held for approval has not, and a resume holds it again rather than ending it.
    """

    name: str
    span_id: int
    parent_id: int | None
    start_ms: int
    kind: Literal["internal", "client"]
    attributes: dict[str, AttrValue] = field(default_factory=dict)
    events: deque[SpanEventRecord] | None = None  # made with the first: most spans have none
    added: int = 0
    requested: bool = True

    def add_event(self, name: str, t_ms: int, attributes: Mapping[str, AttrValue]) -> None:
        """Record a span event (the oldest is dropped once :data:`MAX_SPAN_EVENTS` are kept)."""
        if self.events is None:
            self.events = deque(maxlen=MAX_SPAN_EVENTS)
        self.events.append(SpanEventRecord(name, t_ms * 1_000_000, attributes))
        self.added += 1


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


class TraceBuilder:
    """Turns a run's events, fed in order, into spans.

    :meth:`feed` returns the spans an event ends (an agent's, a call's); :meth:`close`, after
    the last event, returns the run's span and every span the log never ended (ended at the
    last event's time, with an error status saying so).

    Span events: a call held for approval has ``approval.requested`` and ``approval.answered``
    on its tool span, which starts at the request (the wait is part of its time; a denied call
    ends at the denial, failed); a bus message is ``message.sent`` on its sender's span (or
    ``message.received`` on its addressee's, when the sender is the user, the runtime or an
    agent that has ended); with ``content``, each streamed fragment of a reply (``llm/delta``)
    is ``llm.delta`` on its chat span.

    Args:
        content: also record tool arguments and results (``gen_ai.tool.call.arguments``,
            ``gen_ai.tool.call.result``), model replies (``gen_ai.output.messages``), message
            bodies and streamed fragments.
    """

    def __init__(self, *, content: bool = False) -> None:
        self.content = content
        self._wanted = _WANTED | {LlmDelta.type} if content else _WANTED
        self.run_id: str | None = None
        self._trace = 0
        self._run_span = 0
        self._first_ms: int | None = None
        self._last_ms = 0
        self._finished_ms: int | None = None
        self._run_attrs: dict[str, AttrValue] = {}
        self._run_error: str | None = None
        self._agents: dict[str, _Open] = {}     # live agents by id
        self._current: dict[str, int] = {}      # agent id -> span id of its latest generation
        self._generations: dict[str, int] = {}  # agent id -> times spawned
        self._calls: dict[str, _Open] = {}      # calls in flight by call id

    def feed(self, event: Mapping[str, Any]) -> list[SpanRecord]:
        """Take the next event (as logged); return the spans it ends."""
        if self.run_id is None:
            self._start(event)
        t = event.get("t")
        ended = self._take(decode(event)) if event.get("type") in self._wanted else []
        if isinstance(t, int):
            self._last_ms = max(self._last_ms, t)  # after _take: run/resumed needs the time before it
        return ended

    def close(self) -> list[SpanRecord]:
        """End what the log left open and the run itself; call once, after the last event."""
        if self.run_id is None:
            return []
        out = [self._end(call, self._last_ms, _UNFINISHED, {"agentctl.unfinished": True})
               for call in self._calls.values()]
        out += [self._end(agent, self._last_ms, _UNFINISHED, {"agentctl.unfinished": True})
                for agent in reversed(self._agents.values())]  # children were spawned later
        self._calls.clear()
        self._agents.clear()
        run_attrs = dict(self._run_attrs)
        if self._finished_ms is None:
            run_attrs["agentctl.unfinished"] = True
        run = _Open(self._run_name(), self._run_span, None, self._first_ms or 0, "internal", run_attrs)
        error = self._run_error if self._finished_ms is not None else _UNFINISHED
        out.append(self._end(run, self._finished_ms or self._last_ms, error))
        return out

    def _take(self, event: Event | UnknownEvent) -> list[SpanRecord]:
        """The spans one decoded event ends (a damaged one, :class:`UnknownEvent`, ends none)."""
        match event:  # the commonest first: a class pattern is an isinstance check each
            case ToolRequested() as e:
                return self._tool_requested(e)
            case ToolResult() as e:
                return self._tool_result(e)
            case AgentMessage() as e:
                self._message(e)
            case LlmRequested() as e:
                return self._llm_requested(e)
            case LlmResult() as e:
                return self._llm_result(e)
            case LlmDelta() as e:
                self._delta(e)
            case AgentSpawned() as e:
                return self._agent_spawned(e)
            case AgentDone() as e:
                error = None if e.status == "ok" else f"agent ended with status {e.status}" + (
                    f" ({e.reason})" if e.reason else "")
                return self._agent_end(e, "done", error, {"agentctl.agent.done_status": e.status,
                                                          "agentctl.agent.steps": e.steps})
            case PlanLoaded() as e:
                self._run_attrs |= {"agentctl.plan.name": e.name, "agentctl.plan.version": e.version}
            case RunResumed() as e:
                return self._run_resumed(e)
            case RunFinished() as e:
                self._finished_ms = e.t
                self._run_attrs |= {"agentctl.reason": e.reason, "agentctl.status": e.status}
                self._run_error = None if e.status in ("ok", "stopped") else f"run {e.reason}: {e.status}"
            case AgentError() as e:
                return self._agent_end(e, "failed", e.error, {"error.type": e.error_type,
                                                              "agentctl.agent.error_where": e.where})
            case AgentStopped() as e:
                return self._agent_end(e, "stopped", None, {"agentctl.agent.stop_reason": e.reason})
            case ApprovalRequested() as e:
                return self._approval_requested(e)
            case ApprovalGranted() as e:
                self._approval_answered(e, "granted", {"agentctl.approval.note": e.note})
            case ApprovalDenied() as e:
                return self._approval_denied(e)
        return []

    # -- the run --------------------------------------------------------------------------

    def _start(self, event: Mapping[str, Any]) -> None:
        run_id = str(event.get("run_id") or "")
        self.run_id = run_id
        self._trace = trace_id_of(run_id)
        self._run_span = span_id_of(run_id, "run")
        t = event.get("t")
        self._first_ms = t if isinstance(t, int) else 0
        self._run_attrs = {"agentctl.run_id": run_id, "gen_ai.operation.name": "invoke_agent",
                           "openinference.span.kind": "CHAIN"}

    def _run_name(self) -> str:
        name = self._run_attrs.get("agentctl.plan.name")
        return f"agentctl run {name}" if name else "agentctl run"

    def _run_resumed(self, e: RunResumed) -> list[SpanRecord]:
        """The process died before: calls it left in flight never get a result."""
        resumes = self._run_attrs.get("agentctl.resumes", 0)
        self._run_attrs["agentctl.resumes"] = (resumes if isinstance(resumes, int) else 0) + 1
        self._finished_ms = None  # an interrupted run continues: the run span goes on
        # Ended when the dead process last logged anything, not when it was resumed; a call
        # still held (or answered and not yet gone out) is held again by the resume.
        ended = [self._end(call, self._last_ms, _INTERRUPTED, {"agentctl.interrupted": True})
                 for call in self._calls.values() if call.requested]
        self._calls = {call_id: call for call_id, call in self._calls.items() if not call.requested}
        return ended

    # -- agents ---------------------------------------------------------------------------

    def _agent_spawned(self, e: AgentSpawned) -> list[SpanRecord]:
        agent = e.agent_id
        if agent is None or self.run_id is None:
            return []
        out = []
        if agent in self._agents:  # spawned again without an end we saw: end the old span
            out.append(self._end(self._agents.pop(agent), e.t, _UNFINISHED, {"agentctl.unfinished": True}))
        n = self._generations[agent] = self._generations.get(agent, 0) + 1
        span = span_id_of(self.run_id, f"agent:{agent}" if n == 1 else f"agent:{agent}#{n}")
        parent_span = self._current.get(e.parent_id, self._run_span) if e.parent_id is not None else self._run_span
        attrs: dict[str, AttrValue] = {
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent, "gen_ai.agent.id": agent,
            "openinference.span.kind": "AGENT", "agentctl.run_id": self.run_id, "agentctl.agent_id": agent,
            "agentctl.seq": e.seq, "agentctl.agent.depth": e.depth, "agentctl.agent.tools": tuple(e.tools),
        }
        _set(attrs, "gen_ai.request.model", e.model)
        _set(attrs, "agentctl.agent.kind", e.kind)
        _set(attrs, "agentctl.agent.parent_id", e.parent_id)
        if n > 1:
            attrs["agentctl.agent.generation"] = n
        self._agents[agent] = _Open(f"invoke_agent {agent}", span, parent_span, e.t, "internal", attrs)
        self._current[agent] = span
        return out

    def _agent_end(self, e: Event, status: str, error: str | None, extra: Mapping[str, Any]) -> list[SpanRecord]:
        opened = self._agents.pop(e.agent_id, None) if e.agent_id is not None else None
        if opened is None:
            return []
        opened.attributes |= {"agentctl.agent.status": status, "agentctl.end_seq": e.seq}
        for key, value in extra.items():
            _set(opened.attributes, key, value)
        return [self._end(opened, e.t, error)]

    # -- calls ----------------------------------------------------------------------------

    def _call_start(self, e: LlmRequested | ToolRequested | ApprovalRequested, name: str,
                    kind: Literal["internal", "client"], attrs: dict[str, AttrValue]) -> list[SpanRecord]:
        if self.run_id is None:
            return []
        held = self._calls.get(e.call_id)
        if held is not None and not held.requested:  # approved: the held call goes out now
            held.attributes |= attrs | {"agentctl.requested_seq": e.seq}
            held.requested = True
            return []
        agent = e.agent_id
        parent = self._current.get(agent, self._run_span) if agent is not None else self._run_span
        attrs |= {"agentctl.run_id": self.run_id, "agentctl.call_id": e.call_id, "agentctl.seq": e.seq}
        _set(attrs, "agentctl.agent_id", agent)
        self._calls[e.call_id] = _Open(name, span_id_of(self.run_id, f"call:{e.call_id}"), parent, e.t, kind, attrs,
                                       requested=not isinstance(e, ApprovalRequested))
        return []

    def _call_end(self, e: LlmResult | ToolResult, content: Mapping[str, AttrValue]) -> list[SpanRecord]:
        """End a call's span; ``content`` is what the call returned, when content is asked for."""
        opened = self._calls.pop(e.call_id, None)
        if opened is None:
            return []
        opened.attributes |= {"agentctl.end_seq": e.seq, "agentctl.duration_ms": e.duration_ms, **content}
        if e.ok:
            return [self._end(opened, e.t, None)]
        _set(opened.attributes, "error.type", e.error_type)
        return [self._end(opened, e.t, e.error or "failed")]

    def _llm_requested(self, e: LlmRequested) -> list[SpanRecord]:
        attrs: dict[str, AttrValue] = {
            "gen_ai.operation.name": "chat", "openinference.span.kind": "LLM",
            # gen_ai.system: the older name of the same attribute, still what many tools read.
            "gen_ai.provider.name": e.provider, "gen_ai.system": e.provider,
            "agentctl.llm.messages": e.messages, "agentctl.llm.tools": tuple(e.tools),
        }
        _set(attrs, "gen_ai.request.model", e.model)
        return self._call_start(e, f"chat {e.model}" if e.model else "chat", "client", attrs)

    def _llm_result(self, e: LlmResult) -> list[SpanRecord]:
        opened = self._calls.get(e.call_id)
        if opened is not None:
            for key, tokens in (("gen_ai.usage.input_tokens", e.prompt_tokens),
                                ("gen_ai.usage.output_tokens", e.completion_tokens)):
                if tokens > 0:  # the log holds 0 for "unknown"
                    opened.attributes[key] = tokens
        reply = {"gen_ai.output.messages": _json([{"role": "assistant", **e.reply}])} if self.content and e.reply else {}
        return self._call_end(e, reply)

    def _tool_requested(self, e: ToolRequested | ApprovalRequested) -> list[SpanRecord]:
        attrs: dict[str, AttrValue] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.type": "function",
                                       "openinference.span.kind": "TOOL", "gen_ai.tool.name": e.tool,
                                       "gen_ai.tool.call.id": e.call_id}
        if self.content:
            attrs["gen_ai.tool.call.arguments"] = _json(e.arguments)
        return self._call_start(e, f"execute_tool {e.tool}", "internal", attrs)

    # -- approvals, messages, streamed replies: span events ----------------------------------

    def _approval_requested(self, e: ApprovalRequested) -> list[SpanRecord]:
        """A held call's span starts here: the wait for a person is part of the call's time."""
        self._tool_requested(e)
        opened = self._calls.get(e.call_id)
        if opened is not None and not opened.requested:
            attrs: dict[str, AttrValue] = {"agentctl.approval.gate": e.gate, "agentctl.approval.default": e.default}
            _set(attrs, "agentctl.approval.timeout_s", e.timeout)
            opened.attributes["agentctl.approval.gate"] = e.gate
            opened.add_event("approval.requested", e.t, attrs)
        return []

    def _approval_answered(self, e: ApprovalGranted | ApprovalDenied, decision: str,
                           text: Mapping[str, Any]) -> _Open | None:
        opened = self._calls.get(e.call_id)
        if opened is None or opened.requested:
            return None
        attrs: dict[str, AttrValue] = {"agentctl.approval.decision": decision, "agentctl.approval.by": e.by,
                                       "agentctl.approval.wait_ms": max(0, e.t - opened.start_ms)}
        for key, value in text.items():
            _set(attrs, key, value)
        opened.add_event("approval.answered", e.t, attrs)
        opened.attributes |= {"agentctl.approval.decision": decision, "agentctl.approval.by": e.by}
        return opened

    def _approval_denied(self, e: ApprovalDenied) -> list[SpanRecord]:
        """A denied call never goes out: its span ends here, failed with the reason (as logged)."""
        opened = self._approval_answered(e, "denied", {"agentctl.approval.reason": e.reason})
        if opened is None:
            return []
        del self._calls[e.call_id]
        opened.attributes |= {"agentctl.end_seq": e.seq, "error.type": "denied"}
        return [self._end(opened, e.t, f"denied by {e.by}: {e.reason}")]

    def _message(self, e: AgentMessage) -> None:
        """On the sender's span; on the addressee's when the sender has none open (the user,
        the runtime, an agent that has ended: a child's ``done`` notice)."""
        sender = self._agents.get(e.from_)
        opened = sender if sender is not None else self._agents.get(e.agent_id) if e.agent_id is not None else None
        if opened is None:
            return
        attrs: dict[str, AttrValue] = {
            "messaging.system": "agentctl", "messaging.operation.type": "send" if sender is not None else "receive",
            "messaging.destination.name": e.to, "messaging.message.id": e.msg_id,
            "agentctl.message.from": e.from_, "agentctl.message.kind": e.kind, "agentctl.message.delivered": e.delivered,
            "agentctl.message.signal": e.signal, "agentctl.seq": e.seq,
        }
        _set(attrs, "messaging.message.conversation_id", e.thread_id)
        _set(attrs, "agentctl.message.via", e.via)
        if self.content:
            attrs["agentctl.message.body"] = _json(e.body)
        opened.add_event("message.sent" if sender is not None else "message.received", e.t, attrs)

    def _delta(self, e: LlmDelta) -> None:
        """Decoded only with content: fragments are what the model said."""
        opened = self._calls.get(e.call_id)
        if opened is None:
            return
        attrs: dict[str, AttrValue] = {"agentctl.delta.content": e.content, "agentctl.seq": e.seq}
        if e.tool_calls:
            attrs["agentctl.delta.tool_calls"] = e.tool_calls
        if e.cut:
            attrs["agentctl.delta.cut"] = e.cut
        opened.add_event("llm.delta", e.t, attrs)

    def _tool_result(self, e: ToolResult) -> list[SpanRecord]:
        return self._call_end(e, {"gen_ai.tool.call.result": _json(e.result)} if self.content and e.ok else {})

    # -- helpers --------------------------------------------------------------------------

    def _end(self, opened: _Open, end_ms: int, error: str | None,
             extra: Mapping[str, AttrValue] | None = None) -> SpanRecord:
        attrs = opened.attributes | dict(extra or {})
        events = tuple(opened.events) if opened.events is not None else ()
        return SpanRecord(opened.name, self._trace, opened.span_id, opened.parent_id, opened.start_ms * 1_000_000,
                          max(end_ms, opened.start_ms) * 1_000_000, opened.kind, attrs, error,
                          events, opened.added - len(events))


def _set(attrs: dict[str, AttrValue], key: str, value: Any) -> None:
    """Set an attribute if the event holds a value OpenTelemetry can carry (None: leave it out)."""
    if isinstance(value, (str, bool, int, float)):
        attrs[key] = value
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        attrs[key] = tuple(value)


#: The types the trace is built from; the rest are not decoded.
_WANTED = frozenset(cls.type for cls in (PlanLoaded, RunResumed, RunFinished, AgentSpawned, AgentDone, AgentError,
                                         AgentStopped, LlmRequested, LlmResult, ToolRequested, ToolResult,
                                         ApprovalRequested, ApprovalGranted, ApprovalDenied, AgentMessage))


def trace_of(events: Iterable[Mapping[str, Any]], *, content: bool = False) -> list[SpanRecord]:
    """Every span of a whole log (``agentctl export otel``), in the order they end."""
    builder = TraceBuilder(content=content)
    spans = [span for event in events for span in builder.feed(event)]
    return spans + builder.close()
