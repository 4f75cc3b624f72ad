"""Where a run is on disk: ``.agentctl/runs``, and the run a command's RUN names.

RUN is a run directory, its ``events.jsonl``, a run id under ``.agentctl/runs`` or the
start of one (docs/cli.md); every command that takes one finds it here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .errors import fail_usage

#: Where ``agentctl run`` puts a run's directory unless told (``--run-dir``).
RUNS = Path(".agentctl") / "runs"


def resolve_run(run: Optional[Path]) -> Path:
    """A run directory (one with an ``events.jsonl``): the one given (a directory, its
    events file or a run id under ``.agentctl/runs``), or the newest under ``.agentctl/runs``."""
    from ..views.watch import newest_run

    if run is None:
        newest = newest_run(RUNS)
        if newest is None:
            fail_usage(f"no runs under {RUNS}; pass a run directory")
        return newest
    if not run.exists() and len(run.parts) == 1:
        run = run_by_id(str(run)) or run
    run_dir = run.parent if run.is_file() else run
    if not run.exists():
        fail_usage(f"no such run directory, events file or run id: {run}")
    if not (run_dir / "events.jsonl").is_file():
        fail_usage(f"not a run directory (no events.jsonl in it): {run}")
    return run_dir


#: How many run ids an ambiguous one names, at most.
_SHOWN = 5


def run_by_id(ref: str) -> Path | None:
    """The run directory under ``.agentctl/runs`` that ``ref`` names: the run id, or the start
    of just one run id or of its random tail (``20261202-0507``, ``189b`` for
    ``20261202-050711-189ba1``), as docker takes an id's prefix. None when nothing matches.

    Raises:
        typer.Exit: after one line listing the runs it could be, when it names several.
    """
    if (RUNS / ref).is_dir():
        return RUNS / ref
    try:
        names = sorted(d.name for d in RUNS.iterdir() if d.is_dir())
    except OSError:
        return None
    found = [n for n in names if n.startswith(ref) or n.rpartition("-")[2].startswith(ref)]
    if len(found) > 1:
        shown = ", ".join(reversed(found[-_SHOWN:])) + (f" and {len(found) - _SHOWN} more" if len(found) > _SHOWN else "")
        fail_usage(f"run id {ref!r} is ambiguous: it could be {len(found)} runs ({shown}); give more of it")
    return RUNS / found[0] if found else None
