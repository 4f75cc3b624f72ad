"""``agentctl describe``: everything the log says about one agent, as one object or as text.

Built in one pass over a run's events: the fold (status, parent, children, locks,
counters) plus the events that concern the agent: its spawn (its spec as the runtime
granted it), tool calls with arguments and results, messages in and out, errors in full,
and for an LLM agent its conversation turn by turn (each request, the reply's text and
tool calls, the tokens). The JSON shape is documented in ``docs/cli.md``; its keys are stable.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from agentctl.events.fold import RunState, apply
from agentctl.events.types import (
    AgentError,
    AgentMessage,
    AgentSpawned,
    BusDenied,
    LlmDelta,
    LlmRequested,
    LlmResult,
    ToolRequested,
    ToolResult,
    decode,
)

__all__ = ["describe_agent", "render_description"]

#: Budget keys and the usage counter each limits.
_BUDGET_USE = {
    "max_steps": "steps",
    "max_tool_calls": "tool_calls",
    "max_tokens": "tokens",
    "max_children": "children",
    "max_seconds": "seconds",
}


class _Collector:
    """The events of one agent, sorted into the parts of a description as they go by."""

    def __init__(self, agent_id: str) -> None:
        self.id = agent_id
        self.spawned: AgentSpawned | None = None
        self.tools: dict[str, dict[str, Any]] = {}
        self.turns: dict[str, dict[str, Any]] = {}
        self.inbox: list[dict[str, Any]] = []
        self.outbox: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []

    def feed(self, event: dict[str, Any]) -> None:
        if event.get("type") not in _WANTED:
            return  # not decoded: most of a long log is other agents' chatter
        me = self.id
        match decode(event):
            case AgentMessage() as e:
                message = {"seq": e.seq, "msg_id": e.msg_id, "from": e.from_, "to": e.to, "kind": e.kind,
                           "thread_id": e.thread_id, "body": e.body, "delivered": e.delivered, "via": e.via}
                if e.from_ == me:
                    self.outbox.append(message)
                elif e.agent_id == me or e.to == me:
                    self.inbox.append(message)
            case BusDenied() as e if e.from_ == me:
                self.outbox.append({"seq": e.seq, "msg_id": None, "from": me, "to": e.to, "kind": e.kind,
                                    "thread_id": None, "body": None, "delivered": False, "denied": e.reason})
            case e if e.agent_id != me:
                pass
            case AgentSpawned() as e:
                self.spawned = e
            case ToolRequested() as e:
                self.tools[e.call_id] = {"seq": e.seq, "call_id": e.call_id, "tool": e.tool, "arguments": e.arguments,
                                         "ok": None, "result": None, "error": None, "error_type": None,
                                         "duration_ms": None}
            case ToolResult() as e:
                call = self.tools.setdefault(e.call_id, {"seq": e.seq, "call_id": e.call_id, "tool": e.tool,
                                                         "arguments": None})
                call.update(ok=e.ok, result=e.result, error=e.error, error_type=e.error_type, duration_ms=e.duration_ms)
            case LlmRequested() as e:
                self.turns[e.call_id] = {"seq": e.seq, "call_id": e.call_id, "provider": e.provider, "model": e.model,
                                         "messages": e.messages, "tools": e.tools, "ok": None, "reply": None,
                                         "error": None, "error_type": None, "prompt_tokens": 0,
                                         "completion_tokens": 0, "duration_ms": None, "streamed": None}
            case LlmDelta() as e:
                turn = self.turns.get(e.call_id)
                if turn is not None:
                    turn["streamed"] = (turn["streamed"] or "") + e.content + e.tool_calls
            case LlmResult() as e:
                turn = self.turns.setdefault(e.call_id, {"seq": e.seq, "call_id": e.call_id})
                # The whole reply is in, and what streamed is in it.
                turn.update(ok=e.ok, reply=e.reply, error=e.error, error_type=e.error_type,
                            prompt_tokens=e.prompt_tokens, completion_tokens=e.completion_tokens,
                            duration_ms=e.duration_ms, streamed=None)
            case AgentError() as e:
                self.errors.append({"seq": e.seq, "where": e.where, "error_type": e.error_type, "error": e.error})


#: The types a description reads.
_WANTED = frozenset(cls.type for cls in (AgentMessage, BusDenied, AgentSpawned, ToolRequested, ToolResult, LlmRequested,
                                         LlmDelta, LlmResult, AgentError))


def describe_agent(events: Iterable[dict[str, Any]], agent_id: str) -> dict[str, Any] | None:
    """The description of ``agent_id`` in a run's events, None if the agent never appears.

    Args:
        events: the run's events, in log order.
        agent_id: the agent to describe.
    """
    state = RunState()
    found = _Collector(agent_id)
    for event in events:
        apply(state, event)
        found.feed(event)
    agent = state.agents.get(agent_id)
    if agent is None:
        return None
    end_t = agent.ended_t if agent.ended_t is not None else state.last_t
    seconds = None if agent.spawned_t is None or end_t is None else round((end_t - agent.spawned_t) / 1000, 3)
    used = {"steps": agent.steps, "tool_calls": agent.tool_calls, "tokens": agent.tokens,
            "children": len(agent.children), "seconds": seconds}
    reserved = dict(agent.budget or {})
    left = {
        key: None if reserved.get(key) is None or used[counter] is None else round(reserved[key] - used[counter], 3)
        for key, counter in _BUDGET_USE.items()
    }
    return {
        "run_id": state.run_id,
        "id": agent.id,
        "status": agent.status,
        "done_status": agent.done_status,
        "result": agent.result,
        "spec": {"kind": agent.kind, "model": agent.model, "tools": list(agent.tools), "budget": reserved,
                 "restart": agent.restart, "depth": agent.depth, "approve": list(agent.approve),
                 "supervise": dict(agent.supervise) or None, "spawned_seq": found.spawned.seq if found.spawned else None},
        "parent": agent.parent_id,
        "children": [{"id": c, "status": state.agents[c].status} for c in agent.children if c in state.agents],
        "budget": {"reserved": reserved, "used": used, "left": left},
        "restarts": agent.restarts,
        "locks": dict(agent.locks),
        "tool_calls": list(found.tools.values()),
        "messages": {"in": found.inbox, "out": found.outbox},
        "errors": found.errors,
        "conversation": list(found.turns.values()),
        "approvals": [{"call_id": cid, **{k: v for k, v in r.items() if k != "agent_id"}}
                      for cid, r in state.approvals.items() if r["agent_id"] == agent_id],
    }


def _supervises(flags: dict[str, Any] | None) -> str:
    """How it supervises its children, as ``one_for_all, 1 restart in 60s``."""
    if not flags:
        return "-"
    n = flags.get("max_restarts")
    return f"{flags.get('strategy')}, {n} restart{'' if n == 1 else 's'} in {flags.get('restart_period'):g}s"


def _value(v: Any) -> str:
    return v if isinstance(v, str) else repr(v)


def render_description(d: dict[str, Any]) -> RenderableType:
    """The text of ``agentctl describe``: sections, nothing cut short."""
    spec, budget = d["spec"], d["budget"]
    status = d["status"] + (f" ({d['done_status']})" if d["done_status"] not in (None, "ok") else "")
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    for label, value in (
        ("agent", d["id"]), ("run", d["run_id"] or "-"), ("status", status),
        ("result", _value(d["result"]) if d["status"] in ("done", "failed") else "-"),
        ("kind", spec["kind"] or "-"), ("model", spec["model"] or "-"), ("restart", spec["restart"] or "-"),
        ("supervises", _supervises(spec.get("supervise"))),
        ("tools", ", ".join(spec["tools"]) or "-"),
        ("approve", ", ".join(spec.get("approve") or ()) or "-"),
        ("parent", d["parent"] or "-"),
        ("children", ", ".join(f"{c['id']} ({c['status']})" for c in d["children"]) or "-"),
        ("restarts", str(d["restarts"])),
        ("locks", ", ".join(f"{p} ({m})" for p, m in d["locks"].items()) or "-"),
    ):
        head.add_row(label, Text(str(value)))
    parts: list[RenderableType] = [head]
    table = Table(title="budget", title_justify="left", header_style="bold")
    for column in ("", "reserved", "used", "left"):
        table.add_column(column)
    for key, counter in _BUDGET_USE.items():
        table.add_row(key, _none(budget["reserved"].get(key)), _none(budget["used"].get(counter)), _none(budget["left"].get(key)))
    parts.append(table)
    parts.append(_section(f"tool calls ({len(d['tool_calls'])})", [
        f"#{c['seq']} {c['tool']} {_value(c['arguments'])}\n    -> "
        + (f"ok {_value(c['result'])}" if c.get("ok") else f"FAILED {c.get('error_type')}: {c.get('error')}")
        for c in d["tool_calls"]]))
    parts.append(_section(f"messages in ({len(d['messages']['in'])})", [
        f"#{m['seq']} from {m['from']} {m['kind']}: {_value(m['body'])}" + ("" if m.get("delivered") else " (UNDELIVERED)")
        for m in d["messages"]["in"]]))
    parts.append(_section(f"messages out ({len(d['messages']['out'])})", [
        f"#{m['seq']} to {m['to']} {m['kind']}: {_value(m['body'])}"
        + (f" (DENIED: {m['denied']})" if m.get("denied") else "" if m.get("delivered") else " (UNDELIVERED)")
        for m in d["messages"]["out"]]))
    parts.append(_section(f"errors ({len(d['errors'])})", [
        f"#{e['seq']} ({e['where']}) {e['error_type']}: {e['error']}" for e in d["errors"]]))
    if d["approvals"]:
        parts.append(_section(f"approvals ({len(d['approvals'])})", [_approval(a) for a in d["approvals"]]))
    if d["conversation"]:
        parts.append(_section(f"conversation ({len(d['conversation'])} turns)", [_turn(i, t) for i, t in enumerate(d["conversation"], 1)]))
    return Group(*parts)


def _approval(a: dict[str, Any]) -> str:
    head = f"#{a['seq']} {a['call_id']} {a['tool']} (gate {a['gate']})"
    if a["answer"] is None:
        return f"{head} {_value(a.get('arguments'))}\n    -> WAITING: agentctl approve|deny {a['call_id']}"
    return f"{head}\n    -> {a['answer']} by {a['by']}" + (f": {a['text']}" if a["text"] else "")


def _none(v: Any) -> str:
    return "-" if v is None else str(v)


def _section(title: str, lines: list[str]) -> RenderableType:
    text = Text(title, style="bold")
    for line in lines or ["(none)"]:
        text.append("\n  " + line, style=None)
    return text


def _turn(n: int, t: dict[str, Any]) -> str:
    asked = "/".join(str(t[k]) for k in ("provider", "model") if t.get(k))
    head = (f"turn {n} #{t['seq']} {asked}: {t.get('messages')} messages in the prompt,"
            f" {t.get('prompt_tokens') or 0}+{t.get('completion_tokens') or 0} tokens")
    if t.get("ok") is None and t.get("streamed"):
        return f"{head}\n    streaming: " + str(t["streamed"]).replace("\n", "\n      ")
    if not t.get("ok"):
        return f"{head}\n    FAILED {t.get('error_type')}: {t.get('error')}"
    reply = t.get("reply") or {}
    lines = [head]
    if reply.get("content"):
        lines.append("    assistant: " + str(reply["content"]).replace("\n", "\n      "))
    for call in reply.get("tool_calls") or ():
        lines.append(f"    tool call: {_value(call)}")
    return "\n".join(lines)
