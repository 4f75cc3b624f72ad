"""The end-of-run summary: what every agent ended as, how long it took, what it cost.

Printed by ``agentctl run`` when a run finishes and by ``agentctl replay --summary``;
built from a folded :class:`~agentctl.events.fold.RunState` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from agentctl.events.fold import RunState
from agentctl.views.live import STATUS_STYLES
from agentctl.views.plain import one_line

__all__ = ["AgentSummary", "Failure", "Summary", "render_summary", "summarize", "summary_object"]


@dataclass(frozen=True, slots=True)
class AgentSummary:
    """One agent's outcome; ``duration_ms`` is None while it has not ended."""

    id: str
    status: str
    done_status: str | None
    duration_ms: int | None
    steps: int
    tool_calls: int
    llm_calls: int
    tokens: int
    restarts: int
    error: str | None


@dataclass(frozen=True, slots=True)
class Failure:
    """One thing that went wrong: an agent's error or a failed tool or LLM call.

    ``where`` is the agent error's ``where`` (``step``, ``spawn``, …) or ``tool NAME`` /
    ``llm``; ``error`` is the whole text of the error.
    """

    seq: int | None
    agent_id: str | None
    where: str | None
    error_type: str | None
    error: str


@dataclass(frozen=True, slots=True)
class Summary:
    """A run's outcome (see :func:`summarize`)."""

    run_id: str | None
    plan_name: str | None
    reason: str | None
    status: str | None
    duration_ms: int | None
    agents: tuple[AgentSummary, ...]
    by_status: Mapping[str, int]
    tool_calls: int
    tool_failures: int
    llm_calls: int
    llm_failures: int
    prompt_tokens: int
    completion_tokens: int
    messages: int
    undelivered: int
    denied: int
    refused: int
    failures: tuple[Failure, ...]


def summarize(state: RunState) -> Summary:
    """Summarise a folded run.

    Args:
        state: the state after the run's events (normally up to ``run/finished``).
    """
    agents = tuple(
        AgentSummary(
            id=a.id,
            status=a.status,
            done_status=a.done_status,
            duration_ms=None if a.ended_t is None or a.spawned_t is None else a.ended_t - a.spawned_t,
            steps=a.steps,
            tool_calls=a.tool_calls,
            llm_calls=a.llm_calls,
            tokens=a.tokens,
            restarts=a.restarts,
            error=a.error,
        )
        for a in state.agents.values()
    )
    by_status = {status: n for status, n in state.status_counts().items() if n}
    failures = tuple(
        Failure(e.seq, e.agent_id, e.where, e.error_type, one_line(e.error)) for e in state.errors
    )
    c = state.counts
    finished = state.finished
    duration = None
    if state.started_t is not None and state.last_t is not None:
        duration = state.last_t - state.started_t
    return Summary(
        run_id=state.run_id,
        plan_name=state.plan_name,
        reason=finished.reason if finished else None,
        status=finished.status if finished else None,
        duration_ms=duration,
        agents=agents,
        by_status=by_status,
        tool_calls=c["tool_calls"],
        tool_failures=c["tool_failures"],
        llm_calls=c["llm_calls"],
        llm_failures=c["llm_failures"],
        prompt_tokens=c["prompt_tokens"],
        completion_tokens=c["completion_tokens"],
        messages=c["messages"],
        undelivered=c["undelivered"],
        denied=c["denied"],
        refused=c["refused"],
        failures=failures,
    )


def summary_object(summary: Summary) -> dict[str, Any]:
    """The ``replay --summary -o json`` object: the :class:`Summary` fields, ``agents`` a list of objects."""
    return asdict(summary)


def _seconds(ms: int | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.2f}s"


def render_summary(summary: Summary, *, max_failures: int = 20) -> RenderableType:
    """A Rich rendering: totals line, one table row per agent, then the latest failures
    with their causes in full."""
    outcome = f"{summary.reason or 'unfinished'} {summary.status or ''}".strip()
    style = "bold green" if summary.status == "ok" else "bold red"
    totals = Text.assemble(
        ("run ", "bold"),
        (summary.run_id or "?", "bold"),
        f"  plan {summary.plan_name}  " if summary.plan_name else "  ",
        (outcome, style),
        f"  in {_seconds(summary.duration_ms)}\n",
        "agents: " + ("  ".join(f"{s} {n}" for s, n in summary.by_status.items()) or "none") + "\n",
        f"tool calls {summary.tool_calls} (failed {summary.tool_failures})"
        f"  llm calls {summary.llm_calls} (failed {summary.llm_failures})"
        f"  tokens {summary.prompt_tokens}+{summary.completion_tokens}"
        f"  messages {summary.messages} (undelivered {summary.undelivered}, denied {summary.denied})"
        f"  refused spawns {summary.refused}",
    )
    table = Table(title=None, header_style="bold")
    for name in ("agent", "status", "duration", "steps", "tools", "llm", "tokens", "restarts"):
        table.add_column(name, justify="left" if name in ("agent", "status") else "right", no_wrap=True)
    for a in summary.agents:
        status = a.status if a.done_status in (None, "ok") else f"{a.status} ({a.done_status})"
        table.add_row(
            a.id,
            Text(status, style=STATUS_STYLES.get(a.status, "")),
            _seconds(a.duration_ms),
            str(a.steps),
            str(a.tool_calls),
            str(a.llm_calls),
            str(a.tokens),
            str(a.restarts),
        )
    parts: list[RenderableType] = [totals, table]
    if summary.failures:
        parts.append(_failures_table(summary.failures, max_failures))
    return Group(*parts)


def _failures_table(failures: tuple[Failure, ...], limit: int) -> Table:
    shown = failures[-limit:]
    more = f", the latest {len(shown)} shown" if len(shown) < len(failures) else ""
    table = Table(title=f"failures ({len(failures)}{more})", title_style="bold red", title_justify="left",
                  header_style="bold")
    table.add_column("seq", justify="right", no_wrap=True)
    table.add_column("agent", no_wrap=True)
    table.add_column("what", no_wrap=True)
    table.add_column("cause", overflow="fold")
    for f in shown:
        what = f"{f.where or '-'}" + (f" ({f.error_type})" if f.error_type else "")
        table.add_row(f"#{f.seq}" if f.seq is not None else "-", f.agent_id or "-", what, Text(f.error, style="red"))
    return table
