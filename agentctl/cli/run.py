"""``agentctl run PLAN``: run a plan, reconcile every save of it, show it live."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import anyio
import typer

from ..errors import PlanError
from ..plan.load import load_plan
from .errors import fail_usage, print_plan_error
from .session import EXIT_USAGE, RunOptions, Session, is_tty, new_run_id

DURABILITIES = ("none", "batch", "always")


def run_command(
    plan: Path = typer.Argument(..., help="The plan file (.yaml, .yml or .edn)."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Where events.jsonl goes [default: .agentctl/runs/<run_id>]."),
    workspace: Optional[Path] = typer.Option(None, "--workspace", help="The directory file tools are confined to [default: current directory]."),
    no_ui: bool = typer.Option(False, "--no-ui", help="Plain lines instead of the live view."),
    watch_plan: bool = typer.Option(True, "--watch-plan/--no-watch-plan", help="Reconcile every save of the plan file."),
    keep_running: bool = typer.Option(False, "--keep-running", help="Stay up after every task finished, for more edits (Ctrl-C ends)."),
    durability: Optional[str] = typer.Option(None, "--durability", help="Event log durability: none, batch or always [default: the plan's, else batch]."),
) -> None:
    """Run PLAN: spawn its agents, reconcile every edit of the file, log every event."""
    if durability is not None and durability not in DURABILITIES:
        fail_usage(f"--durability: expected one of {', '.join(DURABILITIES)}, got {durability!r}")
    if not plan.exists():
        fail_usage(f"plan file not found: {plan}")
    try:
        loaded = load_plan(plan)
    except PlanError as exc:
        print_plan_error(exc)
        raise typer.Exit(EXIT_USAGE) from None
    ws = (workspace or Path.cwd()).resolve()
    if not ws.is_dir():
        fail_usage(f"--workspace: not a directory: {ws}")
    run_id = new_run_id()
    options = RunOptions(
        plan_path=plan.resolve(),
        run_dir=(run_dir or Path(".agentctl") / "runs" / run_id).resolve(),
        workspace=ws,
        run_id=run_id,
        ui=not no_ui and is_tty(),
        watch_plan=watch_plan,
        keep_running=keep_running,
        durability=durability,
    )
    code = anyio.run(Session(options, loaded).run)
    raise typer.Exit(code)
