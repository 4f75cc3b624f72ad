"""Supervision of the run's MCP servers: :func:`open_mcp` and the :class:`McpServers` it runs.

Opened by ``agentctl run`` (:mod:`agentctl.cli.session`) for a plan's ``mcp:`` section, and by
tests (both through :mod:`agentctl.services.mcp`). One task per server owns its connection
(:class:`~agentctl.services.mcp.server.Server`): it connects, registers the server's tools the
first time (:mod:`agentctl.services.mcp.toolset`) and waits for the connection to be lost.
When a stdio server dies (or an HTTP connection is lost) the server is restarted with
exponential backoff, at most ``max_restarts`` times. Events: ``mcp/started`` and
``mcp/exited`` (see ``docs/events.md``). Leaving :func:`open_mcp` stops every server process.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus

from ...errors import AgentctlError
from ...events.emit import Emit
from ...events.types import McpExited, McpStarted
from ...redact import KEYS_ONLY, Redactor
from ..tools.registry import ToolRegistry
from .server import Server, ServerSpec, describe
from .toolset import register_tools, tool_name

__all__ = ["McpError", "McpServers", "McpStatistics", "open_mcp"]



class McpError(AgentctlError):
    """An MCP server that could not be started or connected to when the run began."""


@dataclass(frozen=True, slots=True)
class McpStatistics:
    """The run's MCP servers: how many, how many connected, tools registered, calls, restarts."""

    servers: int
    connected: int
    tools: int
    calls: int
    failed: int
    restarts: int


def _require_sdk() -> None:
    try:
        import mcp  # noqa: F401
    except ImportError:
        raise McpError("the plan declares MCP servers but the 'mcp' package is not installed; "
                       "install it with: pip install 'agentctl[mcp]'") from None


class McpServers:
    """The run's MCP servers; made by :func:`open_mcp`, which runs their supervisors.

    Args:
        servers: the servers (e.g. ``plan.mcp``).
        registry: where their tools are registered.
        emit: the event sink.
        log_dir: each stdio server's stderr goes to ``<log_dir>/mcp-<name>.log``
            (``None``: this process's stderr).
        redactor: hides the run's known secrets in those logs.
        max_restarts: restarts of one server before it is given up.
        backoff: seconds before the first restart; doubled for each further one (max 10 s).
        connect_timeout: seconds to start, connect and list tools.
    """

    def __init__(self, servers: Sequence[ServerSpec], registry: ToolRegistry, emit: Emit, *,
                 log_dir: Path | None = None, redactor: Redactor = KEYS_ONLY, max_restarts: int = 3,
                 backoff: float = 0.2, connect_timeout: float = 30.0) -> None:
        self._servers = {s.name: Server(s, log_dir, redactor) for s in servers}
        self._registry = registry
        self._emit = emit
        self.max_restarts = max_restarts
        self.backoff = backoff
        self.connect_timeout = connect_timeout

    def statistics(self) -> McpStatistics:
        """Counts for the status line and tests."""
        servers = self._servers.values()
        return McpStatistics(
            servers=len(self._servers), connected=sum(s.client is not None for s in servers),
            tools=sum(len(s.tools) for s in servers), calls=sum(s.calls for s in servers),
            failed=sum(s.failed for s in servers), restarts=sum(s.restarts for s in servers),
        )

    def tool_names(self) -> frozenset[str]:
        """The registry names of every server's tools (``mcp:<server>/<tool>``)."""
        return frozenset(tool_name(s.name, t) for s in self._servers.values() for t in s.tools)

    def pid(self, server: str) -> int | None:
        """The pid of a stdio server's current process, if it runs."""
        srv = self._servers[server]
        return srv.process.pid if srv.process and srv.process.returncode is None else None

    async def start(self, tg: anyio.abc.TaskGroup) -> McpError | None:
        """Start every server's supervisor in ``tg`` (all at once); returns when all are
        connected and their tools registered, or the first server's error that was not."""
        errors: list[McpError] = []
        async with anyio.create_task_group() as starting:
            for srv in self._servers.values():
                starting.start_soon(self._start_one, tg, srv, errors)
        return errors[0] if errors else None

    async def _start_one(self, tg: anyio.abc.TaskGroup, srv: Server, errors: list[McpError]) -> None:
        try:
            await tg.start(self._supervise, srv)
        except McpError as exc:
            errors.append(exc)

    async def _supervise(self, srv: Server, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            await self._supervise_loop(srv, task_status)
        except anyio.get_cancelled_exc_class():
            # The run is ending; by now the exit stack has stopped the process.
            srv.client = None
            if srv.started and srv.down is None:
                self._emit(McpExited(server=srv.name, reason="stopped", restarting=False))
            raise

    async def _supervise_loop(self, srv: Server, task_status: TaskStatus[None]) -> None:
        first = True
        while True:
            try:
                # The deadline's scope wraps the exit stack, not the other way round: the
                # transport's task groups must be left inside the scope they were entered in.
                with anyio.CancelScope(deadline=anyio.current_time() + self.connect_timeout) as connecting:
                    async with AsyncExitStack() as stack:
                        client = await srv.connect(stack)
                        connecting.deadline = math.inf
                        if first:
                            register_tools(self._registry, srv)
                        srv.client = client
                        self._emit(McpStarted(server=srv.name, tools=len(srv.tools), **srv.where()))
                        srv.ready.set()
                        if first:
                            first, srv.started = False, True
                            task_status.started()
                        await srv.lost.wait()
                        srv.client, srv.ready = None, anyio.Event()
                if connecting.cancelled_caught:
                    raise TimeoutError
                reason = srv.exit_reason()
            except Exception as exc:  # a failed (re)connect; the first one fails the run
                srv.client = None
                if first:
                    raise McpError(f"MCP server {srv.name!r} did not start: {srv.why(exc)}") from None
                reason = f"failed to restart: {describe(exc)}"
            restarting = srv.restarts < self.max_restarts
            self._emit(McpExited(server=srv.name, reason=reason, restarting=restarting))
            if not restarting:
                srv.down = reason
                srv.ready.set()
                return
            srv.restarts += 1
            await anyio.sleep(min(self.backoff * 2 ** (srv.restarts - 1), 10.0))


@asynccontextmanager
async def open_mcp(servers: Sequence[ServerSpec], registry: ToolRegistry, emit: Emit, *,
                   log_dir: Path | None = None, **options: Any) -> AsyncIterator[McpServers]:
    """Start and connect ``servers``, register their tools in ``registry``, stop them on exit.

    Returns when every server is up and its tools are registered, so open it before the
    runtime (whose agents resolve toolsets when they spawn). The servers' supervisors run
    in a task group of their own, inside the caller's; leaving the context stops them all
    and waits until every server process has exited.

    Args:
        servers: the servers to run (e.g. ``plan.mcp``); empty is fine (nothing happens).
        registry: the run's tool registry.
        emit: the event sink (``mcp/started``, ``mcp/exited``).
        log_dir: where stdio servers' stderr goes (``mcp-<name>.log``); ``None``: inherited.
        **options: ``redactor``, ``max_restarts``, ``backoff``, ``connect_timeout`` (see
            :class:`McpServers`).

    Raises:
        McpError: the ``mcp`` package is missing, or a server did not start.
    """
    if servers:
        _require_sdk()
    service = McpServers(servers, registry, emit, log_dir=log_dir, **options)
    async with anyio.create_task_group() as tg:
        failed = await service.start(tg)
        if failed is None:
            try:
                yield service
            finally:
                tg.cancel_scope.cancel()
        else:
            tg.cancel_scope.cancel()  # stops the servers that did start
    if failed is not None:
        raise failed
