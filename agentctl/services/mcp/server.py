"""One MCP server as the run sees it: its current connection, its process, its restarts.

Made and supervised by :class:`~agentctl.services.mcp.supervisor.McpServers`, which calls
:meth:`Server.connect` on every (re)start; :mod:`agentctl.services.mcp.toolset` calls its
tools through :attr:`Server.client`, and :mod:`agentctl.services.mcp.stdio` runs a stdio
server's process for it.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import IO, Any, Protocol

import anyio
from anyio.abc import Process

from ...redact import KEYS_ONLY, Redactor
from .stdio import stdio_transport

__all__ = ["Server", "ServerSpec", "describe"]


class ServerSpec(Protocol):
    """What :func:`~agentctl.services.mcp.open_mcp` needs to know of a server.

    ``agentctl.plan.model.McpServer`` fits.
    """

    @property
    def name(self) -> str: ...
    @property
    def command(self) -> Sequence[str]: ...
    @property
    def url(self) -> str | None: ...
    @property
    def env(self) -> Mapping[str, str]: ...


class Server:
    """One server's state; its connection (``client``) is replaced on every restart by its supervisor task.

    Args:
        spec: what to run or connect to.
        log_dir: a stdio server's stderr goes to ``<log_dir>/mcp-<name>.log`` (``None``: this
            process's stderr).
        redactor: hides the run's known secrets in each line of that log.
    """

    def __init__(self, spec: ServerSpec, log_dir: Path | None, redactor: Redactor = KEYS_ONLY) -> None:
        self.spec = spec
        self.redactor = redactor
        self.name = spec.name
        self.log = None if log_dir is None else log_dir / f"mcp-{spec.name}.log"
        self.client: Any | None = None
        self.process: Process | None = None
        self.ready = anyio.Event()
        self.lost = anyio.Event()
        self.down: str | None = None
        self.restarts = 0
        self.started = False
        self.calls = self.failed = 0
        self.tools: dict[str, Any] = {}  # remote name -> the SDK's Tool (for output schemas)

    async def connect(self, stack: AsyncExitStack) -> Any:
        """Start or connect the server, list its tools; the connection lives as long as ``stack``.

        Returns:
            The SDK's connected ``Client``.
        """
        from mcp import Client

        self.lost = anyio.Event()
        if self.spec.url:
            transport: Any = self.spec.url
        else:
            errlog: Any = sys.stderr
            if self.log is not None:
                errlog = stack.enter_context(redacted_log(self.log, self.redactor))
            transport = stdio_transport(self.spec.command, self.spec.env, errlog, started=self._started, lost=self.lost)
        client = await stack.enter_async_context(Client(transport, cache=None))
        listed = await client.list_tools()
        self.tools = {t.name: t for t in listed.tools}
        return client

    def _started(self, process: Process) -> None:
        self.process = process

    def where(self) -> dict[str, Any]:
        """The ``pid`` (stdio) or ``url`` (HTTP) fields of its ``mcp/started`` event."""
        pid = self.process.pid if self.process and not self.spec.url else None
        return {"pid": pid, "url": self.spec.url or None}

    def exit_reason(self) -> str:
        """Why the last connection ended, for ``mcp/exited``: its process's exit status, or a lost connection."""
        if self.spec.url:
            return "connection lost"
        rc = self.process.returncode if self.process else None
        if rc is None:
            return "stopped"
        return f"killed by signal {-rc}" if rc < 0 else f"exited with code {rc}"

    def why(self, exc: BaseException) -> str:
        """Why a connect failed with ``exc``: a stdio server that died says more by its exit
        status and stderr than the SDK's error does."""
        if self.process is None or self.process.returncode is None:
            return describe(exc)
        where = f"; see {self.log}" if self.log is not None else ""
        return self.exit_reason() + where


@contextmanager
def redacted_log(path: Path, redactor: Redactor) -> Iterator[IO[bytes]]:
    """A pipe to hand a process as its stderr: each line reaches ``path`` (appended) with
    the known secrets hidden. A thread copies the lines until the last writer closes it,
    which leaving the block waits for (a few seconds at most)."""
    read_fd, write_fd = os.pipe()

    def copy() -> None:
        with os.fdopen(read_fd, "rb") as lines, open(path, "ab") as log:
            for line in lines:
                log.write(redactor.text(line.decode("utf-8", "replace")).encode("utf-8"))
                log.flush()

    thread = threading.Thread(target=copy, name=f"agentctl:{path.name}", daemon=True)
    thread.start()
    writer = os.fdopen(write_fd, "wb")
    try:
        yield writer
    finally:
        writer.close()
        thread.join(timeout=5)


def describe(exc: BaseException) -> str:
    """``exc`` in a few words for an event or error message (a group: each of its errors)."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(e) for e in exc.exceptions)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
