"""``agentctl watch`` and ``agentctl replay``: views of a run built from its events."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import anyio
import typer
from rich.console import Console

from ..errors import AgentctlError
from .errors import fail_usage

RUNS = Path(".agentctl") / "runs"


def _console() -> Console:
    """A console for views; piped output gets a wide, fixed width rather than Rich's 80."""
    return Console() if sys.stdout.isatty() else Console(width=160)


def resolve_run(run: Optional[Path]) -> Path:
    """A run directory: the one given (a directory, its events file or a run id under
    ``.agentctl/runs``), or the newest under ``.agentctl/runs``."""
    from ..views.watch import newest_run

    if run is None:
        newest = newest_run(RUNS)
        if newest is None:
            fail_usage(f"no runs under {RUNS}; pass a run directory")
        return newest
    if run.is_file():
        return run.parent
    if not run.exists() and len(run.parts) == 1 and (RUNS / run).is_dir():
        return RUNS / run
    if not run.exists():
        fail_usage(f"no such run directory, events file or run id: {run}")
    return run


def _events_file(target: Optional[Path]) -> Path:
    if target is not None and target.is_file():
        return target
    return resolve_run(target) / "events.jsonl"


def watch_command(target: Optional[Path] = typer.Argument(None, help="A run directory or events.jsonl [default: the newest run].")) -> None:
    """Follow a run of another process live, as its events.jsonl grows."""
    from ..views.watch import watch

    path = _events_file(target)
    try:
        anyio.run(lambda: watch(path, _console()))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except AgentctlError as exc:
        fail_usage(str(exc))


def replay_command(
    events: Path = typer.Argument(..., help="An events.jsonl file or run directory."),
    speed: float = typer.Option(1.0, "--speed", min=0.0, help="Playback speed (0 = as fast as possible)."),
    at: Optional[int] = typer.Option(None, "--at", min=0, help="Show the state right after event SEQ."),
    summary: bool = typer.Option(False, "--summary", help="Print a summary of the run instead of playing it."),
    svg: Optional[Path] = typer.Option(None, "--svg", help="Save the view (at --at, or the end) as an SVG picture."),
) -> None:
    """Play a run's events back, jump to any event (time travel), summarise or picture it."""
    from ..events.fold import state_at
    from ..views.replay import replay
    from ..views.summary import render_summary, summarize

    path = _events_file(events)
    if not path.exists():
        fail_usage(f"no events file at {path}")
    console = _console()
    try:
        if summary:
            console.print(render_summary(summarize(state_at(path, at))))
            return
        state = anyio.run(lambda: replay(path, console, speed=speed, at=at, svg=svg))
        if at is not None and state.last_seq < at:
            typer.echo(f"note: the log ends at event #{state.last_seq}; that is the state shown", err=True)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except AgentctlError as exc:
        fail_usage(str(exc))
