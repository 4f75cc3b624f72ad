"""Built-in ``shell/run`` tool: run a shell command in the workspace.

Registered by :func:`~agentctl.services.tools.builtins.default_registry`; run by the work
plane. Refused unless the run enabled the shell (``ctx.shell_enabled``). The command runs
with the workspace as its working directory, in its own process group so that a timeout
(or the caller being cancelled) kills everything it started, not only the shell. Each of
stdout and stderr is captured up to 64 KiB; the rest is drained and counted, not kept.
"""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any

import anyio
from anyio.abc import ByteReceiveStream, Process

from ...errors import ToolError
from .registry import ToolContext, ToolRegistry

__all__ = ["OUTPUT_CAP", "register_shell_tools", "shell_run"]

OUTPUT_CAP = 64 * 1024


class _Capture:
    """Reads a stream to EOF, keeping the first ``cap`` bytes."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.chunks: list[bytes] = []
        self.kept = 0
        self.dropped = 0

    async def drain(self, stream: ByteReceiveStream | None) -> None:
        if stream is None:
            return
        async for chunk in stream:
            room = self.cap - self.kept
            if room > 0:
                self.chunks.append(chunk[:room])
                self.kept += min(room, len(chunk))
            self.dropped += max(0, len(chunk) - max(room, 0))

    def text(self) -> str:
        out = b"".join(self.chunks).decode("utf-8", errors="replace")
        if self.dropped:
            out += f"\n[output truncated: {self.dropped} more bytes not shown]"
        return out


def _kill_group(proc: Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def shell_run(ctx: ToolContext, command: str, timeout: float = 30.0) -> dict[str, Any]:
    """Run a shell command in the workspace; returns exit_code, stdout, stderr and timed_out."""
    if not ctx.shell_enabled:
        raise ToolError("shell/run is disabled for this run (enable the shell to allow commands)")
    if timeout <= 0:
        raise ToolError("shell/run: timeout must be positive")
    out, err = _Capture(OUTPUT_CAP), _Capture(OUTPUT_CAP)
    timed_out = False
    proc = await anyio.open_process(
        command,
        cwd=str(ctx.workspace),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(out.drain, proc.stdout)
            tg.start_soon(err.drain, proc.stderr)
            with anyio.move_on_after(timeout) as scope:
                await proc.wait()
            timed_out = scope.cancelled_caught
            # Kill the whole group in both cases: background children would otherwise keep
            # the pipes open and the drains would never see EOF.
            _kill_group(proc)
            await proc.wait()
    finally:
        _kill_group(proc)
        with anyio.CancelScope(shield=True):
            await proc.aclose()
    return {"exit_code": proc.returncode, "stdout": out.text(), "stderr": err.text(), "timed_out": timed_out}


def register_shell_tools(registry: ToolRegistry) -> None:
    """Add ``shell/run`` to ``registry``."""
    registry.tool("shell/run", remote=True)(shell_run)
