"""An MCP server for tests: ``add``, ``echo``, ``fail`` (an isError result) and ``crash``
(kills its own process mid-call). Stdio by default; ``--http PORT`` for streamable HTTP."""

from __future__ import annotations

import os
import sys

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("calc", log_level="WARNING")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
def fail(message: str) -> str:
    """Raise, so the result comes back with isError set."""
    raise ToolError(message)


@server.tool()
def crash() -> str:
    """Die without answering, as a crashing server would."""
    os._exit(3)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
