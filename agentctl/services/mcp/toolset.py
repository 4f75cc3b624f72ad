"""A server's MCP tools as agentctl tools: ``mcp:<server>/<tool>`` in the run's registry.

:func:`register_tools` is called by the supervisor (:mod:`agentctl.services.mcp.supervisor`)
when a server first connects: each tool is registered with the server's ``inputSchema`` as
its parameters. The tool pool then calls them like any other tool (same events, argument
checks, timeouts, budgets and depth policy); the tool function here only forwards to the
server's ``tools/call`` and turns the reply into JSON-able values.

A call in flight when its server dies fails with ``ToolError("mcp server X exited")`` and
tells the supervisor the connection is lost; calls made while the server restarts wait for
it (bounded by the pool's timeout).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import anyio

from ...errors import ToolError
from ...frozen import thaw
from ..tools.registry import Tool, ToolRegistry
from .server import Server, describe

__all__ = ["register_tools", "tool_name"]

_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def tool_name(server: str, tool: str) -> str:
    """The registry name of ``tool`` of ``server``: ``mcp:<server>/<tool>`` (odd characters -> ``_``)."""
    return f"mcp:{server}/" + "".join(ch if ch in _NAME_CHARS else "_" for ch in tool)


def register_tools(registry: ToolRegistry, srv: Server) -> None:
    """Register each of ``srv``'s listed tools in ``registry`` (names already there are kept)."""
    for remote in srv.tools.values():
        name = tool_name(srv.name, remote.name)
        if name in registry:
            continue
        schema = dict(remote.input_schema or {})
        schema.setdefault("type", "object")
        hints = remote.annotations
        registry.register(Tool(
            name=name, description=remote.description or f"{remote.name} (MCP server {srv.name})",
            parameters=schema, fn=_tool_fn(srv, remote.name), is_async=True, takes_ctx=False,
            idempotent=bool(hints and hints.idempotent_hint),
        ))


def _tool_fn(srv: Server, remote: str) -> Callable[..., Any]:
    async def call(**arguments: Any) -> Any:
        return await _call(srv, remote, arguments)

    call.__qualname__ = f"mcp[{srv.name}/{remote}]"
    return call


async def _call(srv: Server, remote: str, arguments: Mapping[str, Any]) -> Any:
    from mcp import MCPError
    from mcp_types import CONNECTION_CLOSED

    srv.calls += 1
    while srv.client is None:
        if srv.down is not None:
            srv.failed += 1
            raise ToolError(f"mcp server {srv.name} is down ({srv.down}; gave up after {srv.restarts} restarts)")
        await srv.ready.wait()
    client = srv.client
    try:
        result = await client.call_tool(remote, thaw(arguments))
    except MCPError as exc:
        srv.failed += 1
        if exc.code != CONNECTION_CLOSED:
            raise ToolError(f"mcp:{srv.name}/{remote}: {exc.message}") from None
        srv.lost.set()
        raise ToolError(f"mcp server {srv.name} exited") from None
    except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError) as exc:
        srv.failed += 1
        srv.lost.set()
        raise ToolError(f"mcp server {srv.name} connection lost: {describe(exc)}") from None
    if result.is_error:
        srv.failed += 1
        text = " ".join(p.text for p in result.content if getattr(p, "type", None) == "text")
        raise ToolError(f"mcp:{srv.name}/{remote}: {text or 'the server reported an error'}")
    return _result_value(result, srv.tools.get(remote))


def _content(part: Any) -> Any:
    if getattr(part, "type", None) == "text":
        return part.text
    return part.model_dump(mode="json", by_alias=True, exclude_none=True)


def _result_value(result: Any, remote: Any) -> Any:
    """A ``CallToolResult`` as a JSON-able value: structured content, else text, else parts."""
    structured = result.structured_content
    if structured is not None:
        props = ((remote.output_schema or {}).get("properties") or {}) if remote is not None else {}
        # Servers wrap a non-object return value as {"result": value}; give back the value.
        if isinstance(structured, dict) and set(structured) == {"result"} and set(props) == {"result"}:
            return structured["result"]
        return structured
    parts = [_content(p) for p in result.content]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else parts
