"""Bridge tools: ``agent/spawn``, ``agent/send`` and ``agent/done``, through which an agent drives the runtime.

Registered by :func:`~agentctl.services.tools.builtins.default_registry`, so they can be
granted like any tool and offered to a model. Two ways in:

* An LLM agent's step function (``agentctl.agents.llm``) never runs them on the tool
  pool: it turns the model's call straight into the runtime action (``spawn``, ``send``,
  ``done``), so the interpreter carries it out with its usual events and policy checks.
  It validates the model's arguments against :data:`SCHEMAS` first.
* A script agent's ``call:`` step runs them on the tool pool like any tool; they then ask
  the runtime through ``ctx.agents`` (an :class:`~agentctl.services.tools.registry.AgentControl`),
  which is all a tool gets of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ...errors import ToolError
from .registry import AgentControl, Tool, ToolContext

if TYPE_CHECKING:
    from .registry import ToolRegistry

__all__ = ["BRIDGE_TOOLS", "SCHEMAS", "register_bridge_tools"]

_BUDGET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "limits for the child (omit to get the policy's default share of yours)",
    "properties": {
        "max_steps": {"type": "integer", "minimum": 1},
        "max_children": {"type": "integer", "minimum": 0},
        "max_seconds": {"type": "number", "minimum": 0},
        "max_tool_calls": {"type": "integer", "minimum": 0},
        "max_tokens": {"type": "integer", "minimum": 0},
    },
    "additionalProperties": False,
}

#: JSON Schemas of the bridge tools' arguments, by tool name.
SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "agent/spawn": {
        "type": "object",
        "properties": {
            "id": {"type": "string", "description": "a new, unique agent id, e.g. worker-1"},
            "instructions": {"type": "string", "description": "the child's task, self-contained"},
            "model": {"type": "string", "description": "model for the child (default: chosen by policy)"},
            "tools": {"type": "array", "items": {"type": "string"}, "description": "tool names for the child (default: by policy)"},
            "budget": _BUDGET_SCHEMA,
        },
        "required": ["id", "instructions"],
        "additionalProperties": False,
    },
    "agent/send": {
        "type": "object",
        "properties": {
            "to": {"type": "string", "description": "agent id, or \"parent\""},
            "kind": {"type": "string", "default": "chat"},
            "body": {"type": ["string", "object", "array", "number", "boolean", "null"]},
        },
        "required": ["to", "body"],
        "additionalProperties": False,
    },
    "agent/done": {
        "type": "object",
        "properties": {
            "result": {"type": ["string", "object", "array", "number", "boolean", "null"], "description": "your final report"},
            "status": {"type": "string", "enum": ["ok", "failed"], "default": "ok"},
        },
        "required": ["result"],
        "additionalProperties": False,
    },
}

_DESCRIPTIONS = {
    "agent/spawn": "Start a child agent with its own task; its final report comes back to you as a message.",
    "agent/send": "Send a message to another agent (your parent, a child, or \"parent\").",
    "agent/done": "Finish your task with a final result (stops your children).",
}

BRIDGE_TOOLS = tuple(SCHEMAS)


def _agents(ctx: ToolContext) -> AgentControl:
    if ctx.agents is None:
        raise ToolError("agent/* tools run only inside a runtime (the tool context has no agent control)")
    return ctx.agents


def agent_spawn(
    ctx: ToolContext,
    id: str,
    instructions: str,
    model: str | None = None,
    tools: list[str] | None = None,
    budget: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Spawn an ``llm`` child under the calling agent, subject to policy and budget."""
    child = _agents(ctx).spawn_llm_child(ctx.agent_id, id, instructions, model=model, tools=tools, budget=budget)
    return {"spawned": child}


def agent_send(ctx: ToolContext, to: str, body: Any, kind: str = "chat") -> dict[str, Any]:
    """Send ``body`` to agent ``to`` (``"parent"`` allowed) from the calling agent."""
    agents = _agents(ctx)
    if to == "parent":
        parent = agents.parent_of(ctx.agent_id)
        if parent is None:
            raise ToolError("a root agent has no parent")
        to = parent
    return {"delivered": to, "msg_id": agents.send(ctx.agent_id, to, kind, body)}


def agent_done(ctx: ToolContext, result: Any, status: str = "ok") -> dict[str, Any]:
    """End the calling agent with ``status`` and ``result``, right after this call returns."""
    _agents(ctx).finish_soon(ctx.agent_id, status, result)
    return {"status": status, "result": result}


def register_bridge_tools(registry: ToolRegistry) -> None:
    """Register ``agent/spawn``, ``agent/send`` and ``agent/done`` on ``registry``."""
    for name, fn in (("agent/spawn", agent_spawn), ("agent/send", agent_send), ("agent/done", agent_done)):
        registry.register(Tool(name=name, description=_DESCRIPTIONS[name], parameters=dict(SCHEMAS[name]), fn=fn, is_async=False, inline=True))
