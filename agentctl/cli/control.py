"""The control file of a run: messages ``agentctl send`` appends for the running process.

Invoked from :mod:`agentctl.cli.session`. The file is written by other processes (and
possibly by hand), so a bad line is skipped, never fatal to the run. How far the file has
been delivered is kept next to it (``control.offset``) so that a resumed run does not
deliver the same message twice.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import orjson

CONTROL_FILE = "control.jsonl"
OFFSET_FILE = "control.offset"
_CHUNK = 1 << 16


def read_offset(run_dir: Path) -> int:
    """Bytes of the control file already delivered (0 when none were)."""
    try:
        return int((run_dir / OFFSET_FILE).read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def _save_offset(run_dir: Path, offset: int) -> None:
    tmp = run_dir / (OFFSET_FILE + ".tmp")
    tmp.write_text(str(offset))
    os.replace(tmp, run_dir / OFFSET_FILE)


def parse_command(line: bytes) -> dict[str, Any] | None:
    """One control line as ``{from, to, kind, body}``, or None if it is not a usable message."""
    try:
        command = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(command, dict) or not isinstance(command.get("to"), str) or not command["to"]:
        return None
    return {
        "from": str(command.get("from") or "user"),
        "to": command["to"],
        "kind": str(command.get("kind") or "chat"),
        "body": command.get("body"),
    }


async def follow_control(run_dir: Path, deliver: Callable[[dict[str, Any]], Any], *, poll_interval: float = 0.1) -> None:
    """Deliver every complete line appended to the control file, forever (cancel to end).

    Starts where an earlier process of the same run stopped; a partial final line waits for
    its newline. Unusable lines are reported on stderr and skipped.
    """
    path = run_dir / CONTROL_FILE
    path.touch()
    offset = read_offset(run_dir)
    buffer = b""
    async with await anyio.open_file(path, "rb") as handle:
        await handle.seek(offset)
        while True:
            chunk = await handle.read(_CHUNK)
            if not chunk:
                await anyio.sleep(poll_interval)
                continue
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                offset += len(line) + 1
                if not line.strip():
                    continue
                command = parse_command(line)
                if command is None:
                    print(f"agentctl: skipped a bad line in {path}: {line[:80]!r}", file=sys.stderr)
                else:
                    deliver(command)
            if lines:
                _save_offset(run_dir, offset)
