"""``agentctl ps``: the runs under ``.agentctl/runs`` and what became of them."""

from __future__ import annotations

import sys

import typer

from .jsonout import Output, output_option, print_json
from .locate import RUNS


def ps_command(
    all_runs: bool = typer.Option(False, "--all", "-a", help="Finished runs too, not only unfinished ones."),
    output: Output = output_option(),
) -> None:
    """List runs and what became of them.

    One row per run: id, plan, status (running, dead, ok, failed, stopped), start,
    duration, agents by status, pid, calls waiting for approval.

    Without --all only runs that have not finished are listed: running ones, and dead ones
    (their process is gone without run/finished; resume them with run --resume).
    """
    from rich.console import Console

    from ..views.ps import ps_object, render_ps
    from .runs import readable_runs

    # Without --all a finished run costs the last lines of its log, not a fold of all of it.
    infos = readable_runs(RUNS, finished=all_runs)
    if not all_runs:
        # The fold's word is final: it also knows a run/finished that some odd event followed.
        infos = [i for i in infos if i.finished is None]
    obj = ps_object(infos)
    if output is Output.json:
        print_json(obj)
        return
    if not obj["runs"]:
        typer.echo(f"no {'' if all_runs else 'unfinished '}runs under {RUNS}" + ("" if all_runs else " (--all lists finished ones)"))
        return
    Console(width=None if sys.stdout.isatty() else 200).print(render_ps(obj["runs"]))
