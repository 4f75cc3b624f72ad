"""``agentctl prune``: delete finished runs under ``.agentctl/runs``, keeping the newest or the recent."""

from __future__ import annotations

import re
import shutil
import time
from typing import TYPE_CHECKING, Optional

import typer

from ..errors import UsageError
from .errors import fail_usage
from .locate import RUNS

if TYPE_CHECKING:
    from ..views.runs import RunEnd

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``12h``, ``7d``, ``2w`` (or a sum such as ``1d12h``) in seconds.

    Raises:
        UsageError: anything else.
    """
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhdw])", text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise UsageError(f"expected a duration such as 90s, 30m, 12h, 7d or 2w, got {text!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def prune_command(
    keep: Optional[int] = typer.Option(None, "--keep", min=0, metavar="N", help="Keep the N most recent finished runs, delete the others."),
    older_than: Optional[str] = typer.Option(None, "--older-than", metavar="AGE", help="Delete finished runs that ended more than AGE ago (90s, 30m, 12h, 7d, 2w)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only say what would be deleted."),
) -> None:
    """Delete finished runs.

    Never one that is running or whose process died unfinished (resume those).
    """
    from .runs import finished_runs

    if (keep is None) == (older_than is None):
        fail_usage("give exactly one of --keep N or --older-than DURATION")
    # Each run is read from the end of its log only. An unreadable end is named and kept:
    # whether it finished is unknown.
    finished = sorted(finished_runs(RUNS), key=lambda i: i.last_t or 0)
    if keep is not None:
        doomed = finished[: max(len(finished) - keep, 0)]
    else:
        try:
            age = parse_duration(str(older_than))
        except UsageError as exc:
            fail_usage(f"--older-than: {exc}")
        cutoff_ms = (time.time() - age) * 1000
        doomed = [i for i in finished if (i.last_t or 0) < cutoff_ms]
    for info in doomed:
        _remove(info, dry_run)
    typer.echo(f"{'would delete' if dry_run else 'deleted'} {len(doomed)} of {len(finished)} finished runs under {RUNS}")


def _remove(info: RunEnd, dry_run: bool) -> None:
    typer.echo(f"{'would delete' if dry_run else 'deleted'} {info.run_id or info.dir.name}  {info.dir}")
    if not dry_run:
        shutil.rmtree(info.dir)
