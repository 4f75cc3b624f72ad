"""``agentctl stop``: end a run (or one agent's subtree) gracefully from another terminal."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from .complete import complete_live_agent, complete_run
from .errors import fail_usage


def stop_command(
    run: Optional[Path] = typer.Argument(None, help="A run directory or run id [default: the newest running run].", autocompletion=complete_run),
    agent: Optional[str] = typer.Option(None, "--agent", metavar="ID", help="Stop only this agent and its subtree.", autocompletion=complete_live_agent),
    timeout: float = typer.Option(30.0, "--timeout", min=0.0, metavar="SECONDS", help="Seconds to wait for the run to finish."),
) -> None:
    """Stop a running run, or one agent of it.

    The run stops as on Ctrl-C: agents stopped, log flushed, exit 130. With --agent only that
    agent's subtree is stopped.
    """
    from ..views.runs import exit_code, process_alive, read_run
    from .runs import ask_run, steered_run

    info = steered_run(run)
    run_dir = info.dir
    run_id = info.state.run_id
    ask_run(info, {"op": "stop"} if agent is None else {"op": "stop", "agent": agent})
    if agent is not None:
        typer.echo(f"stopped {agent} in run {run_id}")
        return
    deadline = time.monotonic() + timeout
    # The process logs run/finished, flushes and exits: wait for the exit, then read once.
    while info.pid is not None and process_alive(info.pid):
        if time.monotonic() > deadline:
            fail_usage(f"run {run_id} was asked to stop but is still running after {timeout:g} s")
        time.sleep(0.05)
    finished = read_run(run_dir).finished
    if finished is None:
        fail_usage(f"run {run_id}: its process ended without logging run/finished")
    typer.echo(f"stopped run {run_id}: {finished.reason} ({finished.status}), exit {exit_code(finished)}")
