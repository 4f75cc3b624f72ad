"""The live view: a Rich rendering of a :class:`~agentctl.events.fold.RunState`.

Used by ``agentctl run`` (fed by the event log's subscription), ``agentctl watch``
(fed by :func:`~agentctl.events.reader.follow_events`) and ``agentctl replay``. It sees
events only: whatever it shows can be rebuilt from ``events.jsonl``.

:func:`render_run` is a pure function of the state and costs O(``max_agents``) rows, so
a run of thousands of agents stays responsive. :class:`LiveView` folds events as they
are fed (cheap) and redraws from an anyio loop at most ``fps`` times a second, and only
when something changed. Rich's own auto-refresh runs in a thread, so it is turned off.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from agentctl.events.fold import AgentView, RunState
from agentctl.views.plain import format_event

__all__ = ["LiveView", "LiveViewStatistics", "STATUS_STYLES", "budget_used", "events_per_second", "render_run"]

#: Rich style of each agent status.
STATUS_STYLES: dict[str, str] = {
    "spawned": "magenta",
    "running": "green",
    "waiting": "dim",
    "sleeping": "blue",
    "blocked": "yellow",
    "done": "cyan",
    "failed": "red",
    "stopped": "grey50",
}
#: Lines of a frame that are not agent rows or latest events (header, blanks, table head, "more").
_CHROME_LINES = 9
#: The window (ms of event time) the events/s rate is measured over.
RATE_WINDOW_MS = 5000


def events_per_second(state: RunState, window_ms: int = RATE_WINDOW_MS) -> float:
    """Events per second over the last ``window_ms`` of event time (from ``t`` values).

    Uses the state's recent events only, so it is O(200) whatever the run's length.
    """
    recent = state.recent
    if len(recent) < 2 or state.last_t is None:
        return 0.0
    newest = state.last_t
    oldest = newest
    n = 0
    for event in reversed(recent):
        t = event.get("t")
        if t is None or t < newest - window_ms:
            break
        oldest = t
        n += 1
    span = newest - oldest
    if n < 2 or span <= 0:
        return 0.0
    return (n - 1) * 1000.0 / span


def budget_used(agent: AgentView) -> str:
    """``steps 3/20  tools 1/-  tok 120/-``: what the agent used of its budget (``-`` = unlimited)."""

    def limit(key: str) -> str:
        value = agent.budget.get(key)
        return "-" if value is None else str(value)

    return (
        f"steps {agent.steps}/{limit('max_steps')}  tools {agent.tool_calls}/{limit('max_tool_calls')}"
        f"  tok {agent.tokens}/{limit('max_tokens')}"
    )


def _elapsed(state: RunState) -> str:
    if state.started_t is None or state.last_t is None:
        return "0.0s"
    seconds = max(0, state.last_t - state.started_t) / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}m{seconds:02d}s"


def _header(state: RunState) -> RenderableType:
    lines: list[Text] = []
    title = Text.assemble(("run ", "bold"), (state.run_id or "?", "bold"))
    if state.plan_name is not None:
        title.append(f"  plan {state.plan_name} v{state.plan_version}")
    title.append(f"  elapsed {_elapsed(state)}  seq {state.last_seq}")
    if state.finished is not None:
        ok = state.finished.get("status") == "ok"
        title.append(
            f"  finished: {state.finished.get('reason')} {state.finished.get('status')}",
            style="bold green" if ok else "bold red",
        )
    lines.append(title)

    counts = Text(f"agents {len(state.agents)}:")
    for status, n in state.status_counts().items():
        if n:
            counts.append(f"  {status} {n}", style=STATUS_STYLES.get(status, ""))
    lines.append(counts)

    pending_tools = sum(1 for c in state.pending_calls.values() if c.get("kind") == "tool")
    pending_llm = len(state.pending_calls) - pending_tools
    c = state.counts
    lines.append(
        Text(
            f"queue depth: tool {pending_tools}  llm {pending_llm}   events/s {events_per_second(state):.1f}"
            f"   messages {c['messages']} (undelivered {c['undelivered']}, denied {c['denied']})"
            f"   tools {c['tool_calls']} (failed {c['tool_failures']})"
            f"   llm {c['llm_calls']} (failed {c['llm_failures']})"
            f"   tokens {c['prompt_tokens']}+{c['completion_tokens']}"
        )
    )
    if state.plan_invalid is not None:
        err = state.plan_invalid
        where = err.get("file") or "<plan>"
        if err.get("line") is not None:
            where += f":{err['line']}"
        at = f" at {err['path']}" if err.get("path") else ""
        keeping = f" (still running v{state.plan_version})" if state.plan_version is not None else ""
        lines.append(Text(f"PLAN INVALID: {where}{at}: {err.get('message')}{keeping}", style="bold white on red"))
    return Group(*lines)


def _walk(state: RunState) -> Iterator[AgentView]:
    """Agents depth first under their parents, in spawn order (lazy: callers stop early)."""
    agents = state.agents
    seen: set[str] = set()
    stack = [agents[r] for r in reversed(state.roots())]
    while stack:
        agent = stack.pop()
        if agent.id in seen:
            continue
        seen.add(agent.id)
        yield agent
        stack.extend(agents[c] for c in reversed(agent.children) if c in agents)


def _agent_table(state: RunState, max_agents: int) -> Table:
    table = Table(expand=False, box=None, pad_edge=False, header_style="bold")
    for name, justify in (
        ("id", "left"),
        ("status", "left"),
        ("depth", "right"),
        ("model", "left"),
        ("activity", "left"),
        ("steps", "right"),
        ("budget used", "left"),
        ("locks", "left"),
    ):
        table.add_column(name, justify=justify, no_wrap=True, overflow="ellipsis")  # type: ignore[arg-type]
    shown = 0
    for agent in _walk(state):
        if shown >= max_agents:
            break
        shown += 1
        style = STATUS_STYLES.get(agent.status, "")
        status = agent.status
        if agent.done_status is not None and agent.done_status != "ok":
            status += f" ({agent.done_status})"
        table.add_row(
            "  " * agent.depth + agent.id,
            Text(status, style=style),
            str(agent.depth),
            agent.model or "",
            agent.activity or "",
            str(agent.steps),
            budget_used(agent),
            " ".join(f"{path}({mode[:1]})" for path, mode in agent.locks.items()),
        )
    more = len(state.agents) - shown
    if more > 0:
        table.add_row(Text(f"… {more} more", style="dim"), "", "", "", "", "", "", "")
    return table


def _recent_lines(state: RunState, n: int) -> list[Text]:
    lines: list[str] = []
    for event in reversed(state.recent):
        if len(lines) >= n:
            break
        line = format_event(event)
        if line is not None:
            lines.append(line)
    return [Text(line, style="dim") for line in reversed(lines)]


def render_run(state: RunState, *, max_agents: int = 200, recent: int = 8) -> RenderableType:
    """Render a run: header, agent tree (at most ``max_agents`` rows), latest events.

    Args:
        state: the folded state.
        max_agents: agent rows to show; the rest are summed up in a "… N more" line.
        recent: how many of the latest notable events to show at the bottom.
    """
    parts: list[RenderableType] = [_header(state), Text(""), _agent_table(state, max_agents)]
    if recent > 0:
        lines = _recent_lines(state, recent)
        if lines:
            parts.append(Text(""))
            parts.extend(lines)
    return Group(*parts)


@dataclass(frozen=True, slots=True)
class LiveViewStatistics:
    """What a :class:`LiveView` did: events folded and frames drawn."""

    events: int
    renders: int
    agents: int


class LiveView:
    """A run's live display: ``feed`` events into it, ``run`` it to keep the screen current."""

    def __init__(
        self,
        console: Console,
        *,
        state: RunState | None = None,
        max_agents: int = 200,
        recent: int = 8,
    ) -> None:
        """Args:
        console: where to draw (tests pass a recording console).
        state: a state to start from (e.g. a prefix already folded); a new one when None.
        max_agents: agent rows per frame.
        recent: latest-event lines per frame.
        """
        self.console = console
        self.state = state if state is not None else RunState()
        self.max_agents = max_agents
        self.recent = recent
        self._events = 0
        self._renders = 0

    def feed(self, event: dict[str, Any]) -> None:
        """Fold one event into the view's state (no drawing: that is ``run``'s job)."""
        self.state.apply(event)
        self._events += 1

    def noted(self, event: dict[str, Any]) -> None:
        """An event its owner already folded into the state this view shares: redraw."""
        self._events += 1

    def render(self) -> RenderableType:
        """The current frame (on a terminal, only as many agent rows as fit the screen)."""
        rows = self.max_agents
        if self.console.is_terminal:
            # Rows below the screen's edge are cropped anyway; not building them keeps a
            # frame of a thousand-agent run cheap (Rich tables cost ~0.4 ms a row).
            rows = min(rows, max(3, self.console.height - self.recent - _CHROME_LINES))
        return render_run(self.state, max_agents=rows, recent=self.recent)

    def statistics(self) -> LiveViewStatistics:
        """Events fed, frames drawn and agents known so far."""
        return LiveViewStatistics(events=self._events, renders=self._renders, agents=len(self.state.agents))

    async def run(self, *, fps: float = 10, stop: anyio.Event | None = None) -> None:
        """Redraw whenever the state changed, at most ``fps`` times a second.

        Returns when ``stop`` is set (or runs until cancelled), after drawing the final
        state, which stays on the console.
        """
        interval = 1.0 / fps if fps > 0 else 0.0
        with Live(
            self.render(),
            console=self.console,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
        ) as live:
            drawn = self._events
            self._renders += 1
            try:
                while stop is None or not stop.is_set():
                    if self._events != drawn:
                        drawn = self._events
                        live.update(self.render(), refresh=True)
                        self._renders += 1
                    if stop is None:
                        await anyio.sleep(interval)
                    else:
                        with anyio.move_on_after(interval):
                            await stop.wait()
            finally:
                # The frame left on screen must include every event fed, even the last few.
                if self._events != drawn:
                    live.update(self.render(), refresh=True)
                    self._renders += 1
