"""MCP servers as toolsets: the run's connections to Model Context Protocol servers.

Opened by ``agentctl run`` (:mod:`agentctl.cli.session`) for a plan's ``mcp:`` section, and
by tests, through :func:`open_mcp`: it starts each stdio server as a subprocess owned by the
run (or connects to a streamable HTTP server), lists its tools and registers each in the
run's :class:`~agentctl.services.tools.registry.ToolRegistry` as ``mcp:<server>/<tool>``.
Calls then go through the normal tool pool (same events, argument checks, timeouts, budgets
and depth policy). Events: ``mcp/started`` and ``mcp/exited`` (see ``docs/events.md``).

Uses the official ``mcp`` SDK (2.x), imported lazily so agentctl runs without it when a
plan declares no servers. The parts:

- :mod:`.supervisor`: :func:`open_mcp` and :class:`McpServers`, one task per server that
  connects it and restarts it with backoff when it dies;
- :mod:`.server`: one server's connection (its SDK client, process, restarts);
- :mod:`.stdio`: the transport to a stdio server's process;
- :mod:`.toolset`: a server's tools as registry tools, and the calls to them.
"""

from .server import ServerSpec
from .supervisor import McpError, McpServers, McpStatistics, open_mcp
from .toolset import tool_name

__all__ = ["McpError", "McpServers", "McpStatistics", "ServerSpec", "open_mcp", "tool_name"]
