"""``agentctl describe [RUN] AGENT``: one agent of a run, everything its log says."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import AgentctlError
from .complete import complete_run_then_agent
from .errors import fail_usage
from .jsonout import Output, output_option, print_json
from .locate import resolve_run
from .views import blame_the_log


def describe_command(
    args: list[str] = typer.Argument(..., metavar="[RUN] AGENT", help="A run directory or run id (default: the newest run), then the agent id.",
                             autocompletion=complete_run_then_agent),
    output: Output = output_option(),
) -> None:
    """Show everything a run's log says about one agent.

    Spec, status, parent and children, budget used and left, locks, tool calls with arguments and results, messages in and out, errors in full, and for an
    LLM agent its conversation turn by turn."""
    from rich.console import Console

    from ..events.reader import read_events, read_run_events
    from ..views.describe import describe_agent, render_description

    if len(args) > 2:
        fail_usage(f"expected [RUN] AGENT, got {len(args)} arguments")
    run_dir = resolve_run(Path(args[0]) if len(args) == 2 else None)
    agent = args[-1]
    try:
        path = read_run_events(run_dir)
        with blame_the_log(path):
            found = describe_agent(read_events(path), agent)
            if found is None:
                from .runs import unknown_agent

                unknown_agent(run_dir, agent)
            if output is Output.json:
                print_json(found)
                return
            Console(soft_wrap=True).print(render_description(found))
    except AgentctlError as exc:
        fail_usage(str(exc))
