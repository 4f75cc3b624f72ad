"""The stdio transport: an MCP server's process, and the SDK's message streams over its pipes.

Entered by :meth:`Server.connect <agentctl.services.mcp.server.Server.connect>` (through the
SDK's ``Client``) for a server with a ``command``. It is this package's own small transport
rather than the SDK's ``stdio_client`` because supervision needs the process itself: its
pid for the events, its exit status for the reason, and its process group to stop it.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
from anyio.abc import Process

__all__ = ["stdio_transport"]

_GRACE = 2.0  # seconds a server gets to exit after its stdin closes, and again after SIGTERM


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
async def stdio_transport(
    command: Sequence[str], env: Mapping[str, str], errlog: Any, *, started: Callable[[Process], None], lost: anyio.Event,
) -> AsyncIterator[tuple[Any, Any]]:
    """Start a server's process and yield the SDK's (read, write) message streams over its pipes.

    Leaving stops the process.

    Args:
        command, env: the server's command line and the environment it adds.
        errlog: where the process's stderr goes (a file, or ``sys.stderr``).
        started: told the process as soon as it runs.
        lost: set when the pipes close.
    """
    import mcp_types
    from anyio.streams.text import TextReceiveStream
    from mcp.client.stdio import get_default_environment
    from mcp.shared.message import SessionMessage

    process = await anyio.open_process(
        _argv(command), env=get_default_environment() | dict(env), stderr=errlog,
        start_new_session=True,  # its own process group, so stopping it reaches its children too
    )
    started(process)
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
        lost.set()  # EOF: the server closed stdout or died

    async def writer() -> None:
        try:
            async with write_r:
                async for msg in write_r:
                    data = msg.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                    await process.stdin.send(data.encode())  # type: ignore[union-attr]
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            lost.set()

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
