"""``agentctl gc``: remove the containers and compose projects a run left behind.

A run removes its containers as its agents end and when it finishes; a run killed
outright (SIGKILL, power loss) cannot. This finds them by their ``agentctl.run`` label
(and compose project name prefix) and force-removes them: in this machine's engine, or
with ``--ray ADDRESS`` on every node of a Ray cluster; ``--run DIR`` goes where the run's
log says its processes ran their tools (:mod:`agentctl.cli.clusters`). Registered in
:mod:`agentctl.cli.main`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from ..errors import AgentctlError
from .clusters import PRIVATE, cleanup_command, ran_here, ray_missing
from .complete import complete_run
from .errors import fail_usage, print_error

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
    run: Optional[Path] = typer.Option(None, "--run", metavar="DIR", help="The run directory whose containers to remove.", autocompletion=complete_run),
    run_id: Optional[str] = typer.Option(None, "--run-id", metavar="ID", help="A run id, instead of its directory.", autocompletion=complete_run),
    all_runs: bool = typer.Option(False, "--all", help="Remove the containers of every agentctl run."),
    ray: Optional[str] = typer.Option(
        None, "--ray", metavar="ADDRESS",
        help="Remove them on every node of this Ray cluster (auto, HOST:PORT or ray://HOST:PORT; needs "
             "agentctl[ray]), not in this machine's engine [default with --run: where the run's log says its "
             "processes ran their tools]."),
) -> None:
    """Remove containers a killed run left behind.

    Containers and compose projects labelled with a run id (or every agentctl one), in this
    machine's engine or on a Ray cluster's nodes. Exit 0 done, 1 a node did not answer, 2 bad input.
    """
    import anyio

    if sum(x is not None and x is not False for x in (run, run_id, all_runs or None)) != 1:
        fail_usage("give exactly one of --run RUN_DIR, --run-id ID or --all")
    if ray is not None:
        _check_address(ray, "--ray")
    target: str | None = run_id
    here, clusters = ray is None, [] if ray is None else [ray]
    if run is not None:
        target, here, clusters = _recorded(run, ray)
    what = f"run {target}" if target else "every agentctl run"
    if here:
        try:
            stats: GcStatistics = anyio.run(_gc, target)
        except AgentctlError as exc:
            fail_usage(str(exc))
        typer.echo(f"gc {what}: removed {_counts(stats)}")
    missed = [line for address in clusters if (line := _gc_cluster(address, target, what))]
    for line in missed:
        print_error(line)
    if missed:
        raise typer.Exit(1)


def _check_address(address: str, where: str) -> None:
    """Fail (exit 2) unless ``address`` names a running Ray cluster's head and Ray is installed."""
    from ..plan.schema import EXECUTOR_ADDRESS

    if address == PRIVATE:
        fail_usage(f"{where}: local would start a new private cluster, which holds nothing of any run; "
                   "expected auto, HOST:PORT or ray://HOST:PORT")
    if not re.match(EXECUTOR_ADDRESS, address):
        fail_usage(f"{where}: expected auto, HOST:PORT or ray://HOST:PORT, got {address!r}")
    if (missing := ray_missing()) is not None:
        fail_usage(f"{where}: {missing}")


def _recorded(run: Path, ray: str | None) -> tuple[str, bool, list[str]]:
    """For ``--run DIR``: its run id, and where to remove (this machine's engine? which clusters?)."""
    from ..views.runs import read_run

    try:
        target = run_id_of(run)
        state = read_run(run).state
    except AgentctlError as exc:
        fail_usage(f"--run: {exc}")
    if ray is not None:
        return target, False, [ray]
    clusters = [address for address in state.clusters if address != PRIVATE]
    if "" in clusters:
        fail_usage(f"--run: run {target} ran its tools on a Ray cluster its log does not name; "
                   f"give its address: {cleanup_command(target, '')}")
    for address in clusters:
        _check_address(address, f"--run: the Ray cluster run {target} recorded")
    return target, ran_here(state), clusters


def _counts(stats: GcStatistics) -> str:
    return f"{stats.containers} containers, {stats.networks} networks, {stats.volumes} volumes"


def _gc_cluster(address: str, run_id: str | None, what: str) -> str | None:
    """Remove ``run_id``'s containers (``None``: every run's) on every node of the cluster at
    ``address`` and say so; the error line naming the nodes that did not answer, if any did not."""
    import anyio
    import ray

    from ..services.ray_containers import REMOVE_TIMEOUT, remove_on_cluster
    from ..services.ray_plane import connect

    try:
        connect(address, where="--ray")
    except AgentctlError as exc:
        fail_usage(str(exc))
    try:
        removal = anyio.run(remove_on_cluster, run_id)
    finally:
        ray.shutdown()
    n = removal.nodes
    typer.echo(f"gc {what} on the Ray cluster at {address}: removed {_counts(removal.removed)} "
               f"on {n} node{'s' * (n != 1)}")
    if not removal.missed:
        return None
    return (f"--ray {address}: node{'s' * (len(removal.missed) != 1)} {', '.join(removal.missed)} did not "
            f"answer within {REMOVE_TIMEOUT:g} s; what is there of {what} is left")


async def _gc(run_id: str | None) -> GcStatistics:
    from ..services.tools.docker import cleanup
    from ..services.tools.docker_engine import remove_labelled

    return await (cleanup(run_id) if run_id is not None else remove_labelled(None))
