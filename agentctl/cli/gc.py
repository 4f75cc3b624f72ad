"""``agentctl gc``: remove the containers and compose projects a run left behind.

A run removes its containers as its agents end and when it finishes; a run killed
outright (SIGKILL, power loss) cannot. This finds them by their ``agentctl.run`` label
(and compose project name prefix) and force-removes them. Registered in
:mod:`agentctl.cli.main`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from ..errors import AgentctlError
from .errors import fail_usage

if TYPE_CHECKING:
    from ..services.tools.docker_engine import GcStatistics


def run_id_of(run_dir: Path) -> str:
    """The run id recorded in a run directory's first event.

    Raises:
        AgentctlError: no events file, or no event in it.
    """
    from ..events.reader import read_events

    path = run_dir / "events.jsonl" if run_dir.is_dir() else run_dir
    if not path.exists():
        raise AgentctlError(f"no events.jsonl in {run_dir}")
    for event in read_events(path):
        if event.get("run_id"):
            return str(event["run_id"])
    raise AgentctlError(f"{path}: no event with a run id")


def gc_command(
    run: Optional[Path] = typer.Option(None, "--run", metavar="DIR", help="The run directory whose containers to remove."),
    run_id: Optional[str] = typer.Option(None, "--run-id", metavar="ID", help="A run id, instead of its directory."),
    all_runs: bool = typer.Option(False, "--all", help="Remove the containers of every agentctl run."),
) -> None:
    """Remove containers a killed run left behind.

    Containers and compose projects labelled with a run id (or every agentctl one).
    """
    import anyio

    if sum(x is not None and x is not False for x in (run, run_id, all_runs or None)) != 1:
        fail_usage("give exactly one of --run RUN_DIR, --run-id ID or --all")
    target: str | None = None
    if run is not None:
        try:
            target = run_id_of(run)
        except AgentctlError as exc:
            fail_usage(f"--run: {exc}")
    elif run_id is not None:
        target = run_id
    try:
        stats: GcStatistics = anyio.run(_gc, target)
    except AgentctlError as exc:
        fail_usage(str(exc))
    what = f"run {target}" if target else "every agentctl run"
    typer.echo(f"gc {what}: removed {stats.containers} containers, {stats.networks} networks, {stats.volumes} volumes")


async def _gc(run_id: str | None) -> GcStatistics:
    from ..services.tools.docker import cleanup
    from ..services.tools.docker_engine import remove_labelled

    return await (cleanup(run_id) if run_id is not None else remove_labelled(None))
