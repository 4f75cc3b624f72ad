"""``agentctl send``: a person injects a message into a running run, through its control channel."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .complete import complete_live_agent, complete_run


def send_command(
    body: str = typer.Argument(..., help="The message body (JSON if it parses as JSON, else text)."),
    to: str = typer.Option(..., "--to", metavar="AGENT", help="The agent to message.", autocompletion=complete_live_agent),
    run: Optional[Path] = typer.Option(None, "--run", metavar="RUN", help="The run directory or run id [default: the newest running run].", autocompletion=complete_run),
    kind: str = typer.Option("chat", "--kind", metavar="KIND", help="Message kind."),
) -> None:
    """Send a message to an agent of a running run.

    BODY arrives at agent --to from sender 'user'.

    Returns once the run has logged the message; fails (exit 2) with the reason when the
    agent is unknown, the run has finished or its process is gone.
    """
    import orjson

    from .runs import ask_run, steered_run

    info = steered_run(run)
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        value = body
    reply = ask_run(info, {"op": "send", "to": to, "kind": kind, "body": value})
    typer.echo(f"sent {kind} message to {to} in run {info.state.run_id} (event #{reply.get('seq')})")
