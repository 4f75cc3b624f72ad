"""``agentctl logs``: a run's events as plain lines, optionally followed until the run ends."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ..errors import AgentctlError
from .complete import complete_agent, complete_run
from .errors import fail_usage
from .locate import resolve_run
from .views import blame_the_log, check_event_log, end_code


def logs_command(
    run: Optional[Path] = typer.Argument(None, help="A run directory, its events.jsonl or a run id [default: the newest run].", autocompletion=complete_run),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing as the run goes on; exit with the run's exit code."),
    agent: Optional[str] = typer.Option(None, "--agent", metavar="ID", help="Only this agent's events.", autocompletion=complete_agent),
    type_: Optional[str] = typer.Option(None, "--type", metavar="GLOB", help="Only events whose type matches this glob (e.g. 'tool/*')."),
    tail: Optional[int] = typer.Option(None, "--tail", "-n", min=0, metavar="N", help="Only the last N events (then --agent and --type filter them); without -f only the end of the log is read."),
) -> None:
    """Print a run's events, or follow them (-f).

    One plain line per event, as run --no-ui prints them.

    With -f it ends when the run does, with the run's exit code (0 ok, 1 failed, 130
    interrupted or stopped), or with 1 and a line saying so when the run's process is
    gone without having logged run/finished.
    """
    import anyio

    from ..events.reader import read_events, read_run_events
    from ..views.logs import LogFilter, LogPrinter, tail_start

    run_dir = resolve_run(run)
    printer = LogPrinter(LogFilter(agent, type_), sys.stdout)
    try:
        path = run if run is not None and run.is_file() else read_run_events(run_dir)
        check_event_log(path)
        with blame_the_log(path):
            first = 0 if tail is None else tail_start(path, tail) if tail else sys.maxsize
            if not follow:
                # From the first of the last N on: the reader bisects the file to it.
                for event in read_events(path, start_seq=first):
                    printer.feed(event)
            else:
                from ..views.follow import follow_run

                # The follow reads from the start (it needs the run's pid); only the tail is printed.
                end = anyio.run(lambda: follow_run(path, lambda e: printer.feed(e) if e.get("seq", first) >= first else None))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except AgentctlError as exc:
        fail_usage(str(exc))
    if not printer.agent_seen and agent is not None:
        from .runs import load_run, unknown_agent

        # Not among the last N events is not unknown: only the whole log can tell.
        if tail is None or agent not in load_run(run_dir).state.agents:
            unknown_agent(run_dir, agent)
    if follow:
        raise typer.Exit(end_code(run_dir, end))
