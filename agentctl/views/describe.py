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

from agentctl.events.fold import RunState

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
        self.spawned: dict[str, Any] | None = None
        self.tools: dict[str, dict[str, Any]] = {}
        self.turns: dict[str, dict[str, Any]] = {}
        self.inbox: list[dict[str, Any]] = []
        self.outbox: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.ended: dict[str, Any] | None = None

    def feed(self, e: dict[str, Any]) -> None:
        kind, me = e.get("type"), self.id
        if kind == "agent/message":
            message = {k: e.get(k) for k in ("seq", "msg_id", "from", "to", "kind", "thread_id", "body", "delivered", "via")}
            if e.get("from") == me:
                self.outbox.append(message)
            elif e.get("agent_id") == me or e.get("to") == me:
                self.inbox.append(message)
            return
        if kind == "bus/denied" and e.get("from") == me:
            self.outbox.append({"seq": e.get("seq"), "msg_id": None, "from": me, "to": e.get("to"), "kind": e.get("kind"),
                                "thread_id": None, "body": None, "delivered": False, "denied": e.get("reason")})
            return
        if e.get("agent_id") != me:
            return
        if kind == "agent/spawned":
            self.spawned, self.ended = e, None
        elif kind == "tool/requested":
            self.tools[e["call_id"]] = {"seq": e.get("seq"), "call_id": e["call_id"], "tool": e.get("tool"),
                                        "arguments": e.get("arguments"), "ok": None, "result": None, "error": None,
                                        "error_type": None, "duration_ms": None}
        elif kind == "tool/result":
            call = self.tools.setdefault(e["call_id"], {"seq": e.get("seq"), "call_id": e["call_id"], "tool": e.get("tool"),
                                                        "arguments": None})
            call.update({k: e.get(k) for k in ("ok", "result", "error", "error_type", "duration_ms")})
        elif kind == "llm/requested":
            self.turns[e["call_id"]] = {"seq": e.get("seq"), "call_id": e["call_id"], "provider": e.get("provider"),
                                        "model": e.get("model"), "messages": e.get("messages"), "tools": e.get("tools"),
                                        "ok": None, "reply": None, "error": None, "error_type": None,
                                        "prompt_tokens": 0, "completion_tokens": 0, "duration_ms": None}
        elif kind == "llm/result":
            turn = self.turns.setdefault(e["call_id"], {"seq": e.get("seq"), "call_id": e["call_id"]})
            turn.update({k: e.get(k) for k in ("ok", "reply", "error", "error_type", "prompt_tokens", "completion_tokens",
                                               "duration_ms")})
        elif kind == "agent/error":
            self.errors.append({k: e.get(k) for k in ("seq", "where", "error_type", "error")})
        elif kind in ("agent/done", "agent/stopped"):
            self.ended = e


def describe_agent(events: Iterable[dict[str, Any]], agent_id: str) -> dict[str, Any] | None:
    """The description of ``agent_id`` in a run's events, None if the agent never appears.

    Args:
        events: the run's events, in log order.
        agent_id: the agent to describe.
    """
    state = RunState()
    found = _Collector(agent_id)
    for event in events:
        state.apply(event)
        found.feed(event)
    agent = state.agents.get(agent_id)
    if agent is None:
        return None
    spawned = found.spawned or {}
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
                 "restart": agent.restart, "depth": agent.depth, "spawned_seq": spawned.get("seq")},
        "parent": agent.parent_id,
        "children": [{"id": c, "status": state.agents[c].status} for c in agent.children if c in state.agents],
        "budget": {"reserved": reserved, "used": used, "left": left},
        "restarts": agent.restarts,
        "locks": dict(agent.locks),
        "tool_calls": list(found.tools.values()),
        "messages": {"in": found.inbox, "out": found.outbox},
        "errors": found.errors,
        "conversation": list(found.turns.values()),
    }


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
        ("tools", ", ".join(spec["tools"]) or "-"),
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
    if d["conversation"]:
        parts.append(_section(f"conversation ({len(d['conversation'])} turns)", [_turn(i, t) for i, t in enumerate(d["conversation"], 1)]))
    return Group(*parts)


def _none(v: Any) -> str:
    return "-" if v is None else str(v)


def _section(title: str, lines: list[str]) -> RenderableType:
    text = Text(title, style="bold")
    for line in lines or ["(none)"]:
        text.append("\n  " + line, style=None)
    return text


def _turn(n: int, t: dict[str, Any]) -> str:
    head = (f"turn {n} #{t['seq']} {t.get('model') or t.get('provider') or ''}: {t.get('messages')} messages in the prompt,"
            f" {t.get('prompt_tokens') or 0}+{t.get('completion_tokens') or 0} tokens")
    if not t.get("ok"):
        return f"{head}\n    FAILED {t.get('error_type')}: {t.get('error')}"
    reply = t.get("reply") or {}
    lines = [head]
    if reply.get("content"):
        lines.append("    assistant: " + str(reply["content"]).replace("\n", "\n      "))
    for call in reply.get("tool_calls") or ():
        lines.append(f"    tool call: {_value(call)}")
    return "\n".join(lines)
