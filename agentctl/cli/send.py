"""``agentctl send``: a person injects a message into a running run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import orjson
import typer

from .errors import fail_usage
from .session import append_control
from .views import resolve_run


def send_command(
    body: str = typer.Argument(..., help="The message body (JSON if it parses as JSON, else text)."),
    to: str = typer.Option(..., "--to", help="The agent to message."),
    run: Optional[Path] = typer.Option(None, "--run", help="The run directory [default: the newest run]."),
    kind: str = typer.Option("chat", "--kind", help="Message kind."),
) -> None:
    """Send BODY to agent --to in a running run; it arrives from sender 'user'."""
    run_dir = resolve_run(run)
    if not (run_dir / "events.jsonl").exists():
        fail_usage(f"--run: no events.jsonl in {run_dir}")
    if _finished(run_dir / "events.jsonl"):
        fail_usage(f"--run: the run in {run_dir} has finished; nothing would read the message")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        value = body
    append_control(run_dir, to, kind, value)
    typer.echo(f"queued {kind} message for {to} in {run_dir}")


def _finished(events: Path) -> bool:
    """Whether the log ends with ``run/finished`` (only its tail is read: logs grow large)."""
    with open(events, "rb") as f:
        size = f.seek(0, 2)
        f.seek(max(0, size - 4096))
        lines = f.read().rstrip(b"\n").rsplit(b"\n", 1)
    try:
        last = orjson.loads(lines[-1])
    except orjson.JSONDecodeError:
        return False
    return isinstance(last, dict) and last.get("type") == "run/finished"
