"""A tiny MCP server with calculator tools, for ``plans/mcp.yaml`` and for trying MCP out.

Run by agentctl as a stdio server (``command: [python, -m, agentctl.examples.calc_server]``),
or by hand as a streamable HTTP server::

    python -m agentctl.examples.calc_server --http 8765   # serves http://127.0.0.1:8765/mcp

Needs the ``mcp`` SDK (``pip install 'agentctl[mcp]'``).
"""

from __future__ import annotations

import argparse

from mcp.server.mcpserver import MCPServer

server = MCPServer("calc", log_level="WARNING")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def mul(a: float, b: float) -> float:
    """Multiply two numbers."""
    return a * b


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


def main(argv: list[str] | None = None) -> None:
    """Serve over stdio, or over streamable HTTP on 127.0.0.1 with ``--http PORT``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP on this port")
    args = parser.parse_args(argv)
    if args.http is None:
        server.run()
    else:
        server.run("streamable-http", host="127.0.0.1", port=args.http)


if __name__ == "__main__":
    main()
