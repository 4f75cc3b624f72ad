"""``agentctl ps``: one row per run, as a table or as one JSON object.

Built from :class:`~agentctl.views.runs.RunInfo` records (a run's log and whether its
process is alive). The JSON shape is documented in ``docs/cli.md``; its keys are stable.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from rich.table import Table

from agentctl.views.runs import RunInfo, run_phase

__all__ = ["ps_object", "render_ps", "run_row"]


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


def render_ps(rows: Sequence[dict[str, Any]]) -> Table:
    """The ``ps`` table."""
    table = Table(header_style="bold", box=None, pad_edge=False)
    for name in ("RUN", "PLAN", "STATUS", "STARTED", "DURATION", "AGENTS", "PID", "APPROVAL"):
        table.add_column(name, no_wrap=name not in ("AGENTS", "APPROVAL"))
    for r in rows:
        status = r["status"] if r["reason"] in (None, "completed", r["status"]) else f"{r['status']} ({r['reason']})"
        pid = "-" if r["pid"] is None else f"{r['pid']}{'' if r['alive'] else ' (gone)'}"
        table.add_row(
            r["id"] or r["dir"],
            r["plan"] or "-",
            f"[{_STYLE.get(r['status'], '')}]{status}[/]",
            (r["started"] or "-").replace("T", " ").replace("+00:00", "Z"),
            "-" if r["duration_s"] is None else f"{r['duration_s']:.1f}s",
            " ".join(f"{k} {v}" for k, v in r["agents"].items()) or "-",
            pid,
            " ".join(f"{a['call_id']} ({a['agent_id']} {a['tool']})" for a in r["approvals"]) or "-",
        )
    return table
