"""MCP servers as toolsets: the run's connections to Model Context Protocol servers.

Opened by ``agentctl run`` (:mod:`agentctl.cli.session`) for a plan's ``mcp:`` section, and
by tests. :func:`open_mcp` starts each stdio server as a subprocess owned by the run (or
connects to a streamable HTTP server), lists its tools and registers each in the run's
:class:`~agentctl.services.tools.registry.ToolRegistry` as ``mcp:<server>/<tool>``, with
the server's ``inputSchema`` as its parameters. Calls then go through the normal tool pool
(same events, argument checks, timeouts, budgets and depth policy); the tool function here
only forwards to the server's ``tools/call`` and turns the reply into JSON-able values.

Supervision: one task per server owns its connection. When a stdio server dies (or an HTTP
connection is lost) a call in flight fails with ``ToolError("mcp server X exited")``, and the
server is restarted with exponential backoff, at most ``max_restarts`` times; calls made
meanwhile wait for it (bounded by the pool's timeout). Events: ``mcp/started`` and
``mcp/exited`` (see ``docs/events.md``). Leaving the context stops every server process.

Uses the official ``mcp`` SDK (2.x), imported lazily so agentctl runs without it when a
plan declares no servers. Stdio servers run through this module's own small transport
rather than the SDK's ``stdio_client``, because supervision needs the process itself
(its pid for the events, its exit status for the reason).
"""

from __future__ import annotations

import math
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import anyio
from anyio.abc import Process, TaskStatus

from ..errors import AgentctlError, ToolError
from .tools.registry import Tool, ToolRegistry

__all__ = ["McpError", "McpServers", "McpStatistics", "ServerSpec", "open_mcp", "tool_name"]

Emit = Callable[..., dict[str, Any]]

_GRACE = 2.0  # seconds a server gets to exit after its stdin closes, and again after SIGTERM
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class ServerSpec(Protocol):
    """What :func:`open_mcp` needs to know of a server (``agentctl.plan.model.McpServer`` fits)."""

    name: str
    command: Sequence[str]
    url: str | None
    env: Mapping[str, str]


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


def tool_name(server: str, tool: str) -> str:
    """The registry name of ``tool`` of ``server``: ``mcp:<server>/<tool>`` (odd characters -> ``_``)."""
    return f"mcp:{server}/" + "".join(ch if ch in _NAME_CHARS else "_" for ch in tool)


def _require_sdk() -> None:
    try:
        import mcp  # noqa: F401
    except ImportError:
        raise McpError("the plan declares MCP servers but the 'mcp' package is not installed; "
                       "install it with: pip install 'agentctl[mcp]'") from None


# ------------------------------------------------------------------ stdio transport


def _argv(command: Sequence[str]) -> list[str]:
    # 'python' means the interpreter running agentctl, so `python -m pkg` servers see the
    # same installed packages whether or not a virtualenv is activated.
    return [sys.executable if command[0] == "python" else command[0], *command[1:]]


async def _wait_exit(process: Process, timeout: float) -> bool:
    # Poll rather than process.wait(): on 3.11 that also waits for pipe EOF, which a
    # grandchild holding the pipe would delay forever.
    with anyio.move_on_after(timeout):
        while process.returncode is None:
            await anyio.sleep(0.01)
    return process.returncode is not None


async def _stop_process(process: Process) -> None:
    """Close stdin, wait, then SIGTERM and SIGKILL the server's process group. Bounded."""
    with suppress(Exception):
        await process.stdin.aclose()  # type: ignore[union-attr]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if await _wait_exit(process, _GRACE):
            break
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
    await _wait_exit(process, _GRACE)
    with anyio.move_on_after(_GRACE), suppress(Exception):
        await process.aclose()


@asynccontextmanager
async def _stdio_transport(srv: _Server, errlog: Any) -> AsyncIterator[tuple[Any, Any]]:
    """Start ``srv``'s process and yield the SDK's (read, write) message streams over its pipes."""
    import mcp_types
    from anyio.streams.text import TextReceiveStream
    from mcp.client.stdio import get_default_environment
    from mcp.shared.message import SessionMessage

    process = await anyio.open_process(
        _argv(srv.spec.command), env=get_default_environment() | dict(srv.spec.env), stderr=errlog,
        start_new_session=True,  # its own process group, so stopping it reaches its children too
    )
    srv.process = process
    read_w, read_r = anyio.create_memory_object_stream[Any](0)
    write_w, write_r = anyio.create_memory_object_stream[Any](0)

    async def reader() -> None:
        buffer = ""
        try:
            async with read_w:
                async for chunk in TextReceiveStream(process.stdout):  # type: ignore[arg-type]
                    *lines, buffer = (buffer + chunk).split("\n")
                    for line in filter(str.strip, lines):
                        try:
                            msg: Any = SessionMessage(mcp_types.jsonrpc_message_adapter.validate_json(line))
                        except ValueError as exc:
                            msg = exc  # the session reports unparseable lines itself
                        await read_w.send(msg)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            pass
        srv.lost.set()  # EOF: the server closed stdout or died

    async def writer() -> None:
        try:
            async with write_r:
                async for msg in write_r:
                    data = msg.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                    await process.stdin.send(data.encode())  # type: ignore[union-attr]
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            srv.lost.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            tg.start_soon(writer)
            try:
                yield read_r, write_w
            finally:
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await _stop_process(process)


# ------------------------------------------------------------------ one server


class _Server:
    """One server's connection, replaced on every restart by its supervisor task."""

    def __init__(self, spec: ServerSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.client: Any | None = None
        self.process: Process | None = None
        self.ready = anyio.Event()
        self.lost = anyio.Event()
        self.down: str | None = None
        self.restarts = 0
        self.started = False
        self.tools: dict[str, Any] = {}  # remote name -> the SDK's Tool (for output schemas)

    def where(self) -> dict[str, Any]:
        pid = self.process.pid if self.process and not self.spec.url else None
        return {"pid": pid, "url": self.spec.url or None}

    def exit_reason(self) -> str:
        if self.spec.url:
            return "connection lost"
        rc = self.process.returncode if self.process else None
        if rc is None:
            return "stopped"
        return f"killed by signal {-rc}" if rc < 0 else f"exited with code {rc}"


def _plain(value: Any) -> Any:
    # Plan values arrive frozen (FrozenDict, tuples); the SDK wants plain JSON values.
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


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


# ------------------------------------------------------------------ the service


class McpServers:
    """The run's MCP servers; made by :func:`open_mcp`, which runs their supervisors.

    Args:
        servers: the servers (e.g. ``plan.mcp``).
        registry: where their tools are registered.
        emit: the event sink.
        log_dir: each stdio server's stderr goes to ``<log_dir>/mcp-<name>.log``
            (``None``: this process's stderr).
        max_restarts: restarts of one server before it is given up.
        backoff: seconds before the first restart; doubled for each further one (max 10 s).
        connect_timeout: seconds to start, connect and list tools.
    """

    def __init__(self, servers: Sequence[ServerSpec], registry: ToolRegistry, emit: Emit, *,
                 log_dir: Path | None = None, max_restarts: int = 3, backoff: float = 0.2,
                 connect_timeout: float = 30.0) -> None:
        self._servers = {s.name: _Server(s) for s in servers}
        self._registry = registry
        self._emit = emit
        self._log_dir = log_dir
        self.max_restarts = max_restarts
        self.backoff = backoff
        self.connect_timeout = connect_timeout
        self._calls = self._failed = 0

    def statistics(self) -> McpStatistics:
        """Counts for the status line and tests."""
        servers = self._servers.values()
        return McpStatistics(
            servers=len(self._servers), connected=sum(s.client is not None for s in servers),
            tools=sum(len(s.tools) for s in servers), calls=self._calls, failed=self._failed,
            restarts=sum(s.restarts for s in servers),
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

    async def _start_one(self, tg: anyio.abc.TaskGroup, srv: _Server, errors: list[McpError]) -> None:
        try:
            await tg.start(self._supervise, srv)
        except McpError as exc:
            errors.append(exc)

    # -- supervision

    async def _connect(self, srv: _Server, stack: AsyncExitStack) -> Any:
        from mcp import Client

        if srv.spec.url:
            transport: Any = srv.spec.url
        else:
            errlog: Any = sys.stderr
            if self._log_dir is not None:
                errlog = stack.enter_context(open(self._log_dir / f"mcp-{srv.name}.log", "a"))
            transport = _stdio_transport(srv, errlog)
        srv.lost = anyio.Event()
        client = await stack.enter_async_context(Client(transport, cache=None))
        listed = await client.list_tools()
        srv.tools = {t.name: t for t in listed.tools}
        return client

    def _register(self, srv: _Server) -> None:
        for remote in srv.tools.values():
            name = tool_name(srv.name, remote.name)
            if name in self._registry:
                continue
            schema = dict(remote.input_schema or {})
            schema.setdefault("type", "object")
            hints = remote.annotations
            self._registry.register(Tool(
                name=name, description=remote.description or f"{remote.name} (MCP server {srv.name})",
                parameters=schema, fn=self._tool_fn(srv, remote.name), is_async=True, takes_ctx=False,
                idempotent=bool(hints and hints.idempotent_hint),
            ))

    def _tool_fn(self, srv: _Server, remote: str) -> Callable[..., Any]:
        async def call(**arguments: Any) -> Any:
            return await self._call(srv, remote, arguments)

        call.__qualname__ = f"mcp[{srv.name}/{remote}]"
        return call

    async def _supervise(self, srv: _Server, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            await self._supervise_loop(srv, task_status)
        except anyio.get_cancelled_exc_class():
            # The run is ending; by now the exit stack has stopped the process.
            srv.client = None
            if srv.started and srv.down is None:
                self._emit("mcp/exited", None, server=srv.name, reason="stopped", restarting=False)
            raise

    async def _supervise_loop(self, srv: _Server, task_status: TaskStatus[None]) -> None:
        first = True
        while True:
            try:
                # The deadline's scope wraps the exit stack, not the other way round: the
                # transport's task groups must be left inside the scope they were entered in.
                with anyio.CancelScope(deadline=anyio.current_time() + self.connect_timeout) as connecting:
                    async with AsyncExitStack() as stack:
                        client = await self._connect(srv, stack)
                        connecting.deadline = math.inf
                        if first:
                            self._register(srv)
                        srv.client = client
                        self._emit("mcp/started", None, server=srv.name, tools=len(srv.tools), **srv.where())
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
                    raise McpError(f"MCP server {srv.name!r} did not start: {self._why(srv, exc)}") from None
                reason = f"failed to restart: {_describe(exc)}"
            restarting = srv.restarts < self.max_restarts
            self._emit("mcp/exited", None, server=srv.name, reason=reason, restarting=restarting)
            if not restarting:
                srv.down = reason
                srv.ready.set()
                return
            srv.restarts += 1
            await anyio.sleep(min(self.backoff * 2 ** (srv.restarts - 1), 10.0))

    def _why(self, srv: _Server, exc: BaseException) -> str:
        # A stdio server that died says more by its exit status and stderr than the SDK's error.
        if srv.process is None or srv.process.returncode is None:
            return _describe(exc)
        where = f"; see {self._log_dir / f'mcp-{srv.name}.log'}" if self._log_dir is not None else ""
        return srv.exit_reason() + where

    # -- calls

    async def _call(self, srv: _Server, remote: str, arguments: Mapping[str, Any]) -> Any:
        from mcp import MCPError
        from mcp_types import CONNECTION_CLOSED

        self._calls += 1
        while srv.client is None:
            if srv.down is not None:
                self._failed += 1
                raise ToolError(f"mcp server {srv.name} is down ({srv.down}; gave up after {srv.restarts} restarts)")
            await srv.ready.wait()
        client = srv.client
        try:
            result = await client.call_tool(remote, _plain(arguments))
        except MCPError as exc:
            self._failed += 1
            if exc.code != CONNECTION_CLOSED:
                raise ToolError(f"mcp:{srv.name}/{remote}: {exc.message}") from None
            srv.lost.set()
            raise ToolError(f"mcp server {srv.name} exited") from None
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError) as exc:
            self._failed += 1
            srv.lost.set()
            raise ToolError(f"mcp server {srv.name} connection lost: {_describe(exc)}") from None
        if result.is_error:
            self._failed += 1
            text = " ".join(p.text for p in result.content if getattr(p, "type", None) == "text")
            raise ToolError(f"mcp:{srv.name}/{remote}: {text or 'the server reported an error'}")
        return _result_value(result, srv.tools.get(remote))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
        **options: ``max_restarts``, ``backoff``, ``connect_timeout`` (see :class:`McpServers`).

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
