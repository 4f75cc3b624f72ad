"""``agentctl ps``: one row per run, as a table or as one JSON object.

Built from :class:`~agentctl.views.runs.RunInfo` records (a run's log and whether its
process is alive). The JSON shape is documented in ``docs/cli.md``; its keys are stable.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from rich.table import Table
from rich.text import Text

from agentctl.views.runs import RunInfo, run_phase

__all__ = ["ps_object", "render_ps", "run_row", "span"]


def iso(t: int | None) -> str | None:
    """An event time (ms since the epoch) as ISO 8601 UTC, None for None."""
    if t is None:
        return None
    return datetime.fromtimestamp(t / 1000, tz=timezone.utc).isoformat(timespec="seconds")


def run_row(info: RunInfo) -> dict[str, Any]:
    """One run as a JSON-able object (the ``runs[]`` items of ``ps -o json``)."""
    s = info.state
    finished = info.finished
    return {
        "id": s.run_id,
        "dir": str(info.dir),
        "plan": s.plan_name,
        "plan_file": s.plan_file,
        "status": run_phase(info),
        "reason": finished.reason if finished else None,
        "started": iso(s.started_t),
        "duration_s": None if info.duration_ms is None else round(info.duration_ms / 1000, 3),
        "agents": {status: n for status, n in s.status_counts().items() if n},
        "pid": info.pid,
        "alive": info.alive,
        "events": s.last_seq,
        "approvals": [{k: a[k] for k in ("call_id", "agent_id", "tool", "gate", "seq")} for a in s.held()],
    }


def ps_object(infos: Sequence[RunInfo]) -> dict[str, Any]:
    """The ``ps -o json`` object: ``{"runs": [row, ...]}``, in the order given."""
    return {"runs": [run_row(i) for i in infos]}


_STYLE = {"running": "bold cyan", "dead": "bold red", "ok": "green", "failed": "red", "stopped": "yellow"}


def span(seconds: float) -> str:
    """A duration as people read it: ``4.2s``, ``12m05s``, ``3h07m``, ``2d04h``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _duration(row: dict[str, Any], now: datetime) -> str:
    """How long the run took; a running one: how long it has been running (its log may be quiet)."""
    if row["status"] == "running" and row["started"] is not None:
        return span(max(0.0, (now - datetime.fromisoformat(row["started"])).total_seconds()))
    return "-" if row["duration_s"] is None else span(row["duration_s"])


def _pid(row: dict[str, Any]) -> str:
    """The process of a run that has not finished (``(gone)`` when it died); a finished one's is history."""
    if row["pid"] is None or row["reason"] is not None:
        return "-"
    return f"{row['pid']}{'' if row['alive'] else ' (gone)'}"


def render_ps(rows: Sequence[dict[str, Any]], now: datetime | None = None) -> Table:
    """The ``ps`` table (``now``: for how long running runs have run; default: the clock).

    Run ids are never cut, whatever the width: they are what the other commands take. The
    APPROVAL column is there when some run holds a call for approval.
    """
    now = now or datetime.now(timezone.utc)
    approvals = any(r["approvals"] for r in rows)
    table = Table(header_style="bold", box=None, pad_edge=False)
    id_width = max((len(r["id"] or r["dir"]) for r in rows), default=3)
    table.add_column("RUN", no_wrap=True, min_width=id_width)
    for name in ("PLAN", "STATUS", "STARTED", "DURATION", "AGENTS", "PID", *(("APPROVAL",) if approvals else ())):
        table.add_column(name, no_wrap=name not in ("AGENTS", "APPROVAL"))
    for r in rows:
        status = r["status"] if r["reason"] in (None, "completed", r["status"]) else f"{r['status']} ({r['reason']})"
        cells = [
            Text(r["id"] or r["dir"]),
            Text(r["plan"] or "-"),
            Text(status, style=_STYLE.get(r["status"], "")),
            Text((r["started"] or "-").replace("T", " ").replace("+00:00", "Z")),
            Text(_duration(r, now)),
            Text(" ".join(f"{k} {v}" for k, v in r["agents"].items()) or "-"),
            Text(_pid(r)),
        ]
        if approvals:
            cells.append(Text(" ".join(f"{a['call_id']} ({a['agent_id']} {a['tool']})" for a in r["approvals"]) or "-"))
        table.add_row(*cells)
    return table
