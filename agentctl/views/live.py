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

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.table import Table
from rich.text import Text

from agentctl.events.fold import AgentView, RunState, apply
from agentctl.views.approval_keys import ApprovalKeys
from agentctl.views.plain import format_event

__all__ = ["LiveView", "LiveViewStatistics", "STATUS_STYLES", "budget_used", "events_per_second", "render_run",
           "wall_clock_ms"]

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
_CHROME_LINES = 10
#: The window (ms of event time) the events/s rate is measured over.
RATE_WINDOW_MS = 5000
#: How often a view with a clock redraws while no event comes (elapsed time and rates tick).
TICK_S = 1.0


def wall_clock_ms() -> int:
    """Now, in the unit of event ``t`` values (ms since the epoch)."""
    return time.time_ns() // 1_000_000


def _now(state: RunState, now_ms: int | None) -> int | None:
    """The time a frame shows: ``now_ms`` while the run is live, its last event's once finished."""
    if now_ms is None or state.finished is not None or state.last_t is None:
        return state.last_t
    return max(now_ms, state.last_t)


def events_per_second(state: RunState, window_ms: int = RATE_WINDOW_MS, now_ms: int | None = None) -> float:
    """Events per second over the ``window_ms`` before ``now_ms`` (ms since the epoch).

    Without ``now_ms`` (a replay) the window ends at the last event, and the rate is that of
    the events in it. With it (a live run), time without events lowers the rate, so it
    falls to 0 while every agent sleeps. Uses the state's recent events only, so it is
    O(200) whatever the run's length.
    """
    recent = state.recent
    now = _now(state, now_ms)
    if now is None or not recent:
        return 0.0
    if now != state.last_t:
        return _rate_until(state, now, window_ms)
    if len(recent) < 2:
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


def _rate_until(state: RunState, now: int, window_ms: int) -> float:
    """Events in the window ending at ``now``, per second of the window (or of the run so far)."""
    recent = state.recent
    start = now - window_ms
    n, oldest = 0, now
    for event in reversed(recent):
        t = event.get("t")
        if t is None or t < start:
            break
        oldest = t
        n += 1
    if n == 0:
        return 0.0
    # When every recent event is in the window, the window reaches back past what is kept.
    begin = oldest if n == len(recent) else max(start, state.started_t or start)
    return n * 1000.0 / max(now - begin, 1)


def budget_used(agent: AgentView) -> str:
    """``steps 3/20  tools 1/-  tok 120/-``: what the agent used of its budget (``-`` = unlimited)."""

    def limit(key: str) -> str:
        value = agent.budget.get(key)
        return "-" if value is None else str(value)

    return (
        f"steps {agent.steps}/{limit('max_steps')}  tools {agent.tool_calls}/{limit('max_tool_calls')}"
        f"  tok {agent.tokens}/{limit('max_tokens')}"
    )


def _elapsed(state: RunState, now_ms: int | None) -> str:
    now = _now(state, now_ms)
    if state.started_t is None or now is None:
        return "0.0s"
    seconds = max(0, now - state.started_t) / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}m{seconds:02d}s"


def _header(state: RunState, now_ms: int | None) -> RenderableType:
    lines: list[Text] = []
    title = Text.assemble(("run ", "bold"), (state.run_id or "?", "bold"))
    if state.plan_name is not None:
        title.append(f"  plan {state.plan_name} v{state.plan_version}")
    title.append(f"  elapsed {_elapsed(state, now_ms)}  seq {state.last_seq}")
    if state.finished is not None:
        ok = state.finished.status == "ok"
        title.append(
            f"  finished: {state.finished.reason} {state.finished.status}",
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
    # Two lines, each under 80 columns while the counts are small.
    lines.append(
        Text(
            f"queue depth: tool {pending_tools}  llm {pending_llm}   events/s {events_per_second(state, now_ms=now_ms):.1f}"
            f"   tokens {c['prompt_tokens']}+{c['completion_tokens']}"
        )
    )
    lines.append(
        Text(
            f"messages {c['messages']} (undelivered {c['undelivered']}, denied {c['denied']})"
            f"   tools {c['tool_calls']} (failed {c['tool_failures']})"
            f"   llm {c['llm_calls']} (failed {c['llm_failures']})"
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


def _walk(state: RunState) -> Iterator[tuple[AgentView, str]]:
    """Agents depth first under their parents, in spawn order, each with its tree guide
    (``├─ `` / ``└─ `` after ``│  ``); lazy: callers stop early."""
    agents = state.agents
    seen: set[str] = set()
    stack = [(agents[r], "", "") for r in reversed(state.roots())]
    while stack:
        agent, guide, inner = stack.pop()
        if agent.id in seen:
            continue
        seen.add(agent.id)
        yield agent, guide
        kids = [c for c in dict.fromkeys(agent.children) if c in agents and c not in seen]
        for i in reversed(range(len(kids))):
            last = i == len(kids) - 1
            stack.append((agents[kids[i]], inner + ("└─ " if last else "├─ "), inner + ("   " if last else "│  ")))


#: The agent table's columns: name, justification, and whether it may be cut or left out
#: when the console is narrow (ids, statuses and step counts never are).
_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("id", "left", False),
    ("status", "left", False),
    ("depth", "right", True),
    ("model", "left", True),
    ("activity", "left", True),
    ("steps", "right", False),
    ("budget used", "left", True),
    ("locks", "left", True),
    ("saying", "left", True),
)
#: Columns left out, in this order, while the table is wider than the console.
_DROP_FIRST = ("depth", "locks", "model")
#: Cells between two columns (one space of padding on each side).
_GAP = 2
#: Narrowest a cut column gets.
_MIN_CUT = 6


@dataclass(frozen=True, slots=True)
class _AgentTable:
    """The agent rows, laid out for the console's width when rendered.

    At any width ids (with their tree guides), statuses and step counts are shown whole:
    first ``depth``, ``locks`` and ``model`` are left out, then the other columns are cut
    (``…``), widest first.
    """

    rows: tuple[tuple[str, ...], ...]
    styles: tuple[str, ...]
    more: int

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.table(options.max_width)

    def widths(self, width: int) -> dict[str, int]:
        """Each shown column's width for a console ``width`` cells wide."""
        widths = {
            name: max([cell_len(name)] + [cell_len(row[i]) for row in self.rows])
            for i, (name, _, _) in enumerate(_COLUMNS)
        }
        widths["id"] = max(widths["id"], cell_len(self.more_line))
        if not any(row[_SAYING] for row in self.rows):
            del widths["saying"]  # nobody is streaming a reply: no room kept for it

        def excess() -> int:
            return sum(widths.values()) + _GAP * (len(widths) - 1) - width

        for name in _DROP_FIRST:
            if excess() <= 0:
                break
            del widths[name]
        cut = [name for name, _, may_cut in _COLUMNS if may_cut and name in widths]
        while excess() > 0:
            widest = max(cut, key=lambda name: widths[name], default=None)
            if widest is None or widths[widest] <= _MIN_CUT:
                break
            widths[widest] -= 1
        return widths

    def table(self, width: int) -> Table:
        """The table for a console ``width`` cells wide."""
        widths = self.widths(width)
        table = Table(expand=False, box=None, pad_edge=False, header_style="bold")
        shown = [i for i, (name, _, _) in enumerate(_COLUMNS) if name in widths]
        for i in shown:
            name, justify, _ = _COLUMNS[i]
            table.add_column(name, justify=justify, no_wrap=True, overflow="ellipsis",  # type: ignore[arg-type]
                             width=widths[name])
        for row, style in zip(self.rows, self.styles, strict=True):
            table.add_row(*(Text(row[i], style=style) if i == 1 else _tail(row[i], widths["saying"]) if i == _SAYING
                            else row[i] for i in shown))
        if self.more > 0:
            table.add_row(Text(self.more_line, style="dim"), *[""] * (len(shown) - 1))
        return table

    @property
    def more_line(self) -> str:
        """What stands for the agents not shown."""
        return f"… {self.more} more" if self.more > 0 else ""


_SAYING = len(_COLUMNS) - 1


def _tail(text: str, width: int) -> str:
    """The end of ``text`` in ``width`` cells: what a model said last matters most."""
    if cell_len(text) <= width:
        return text
    out = ""
    for ch in reversed(text):
        if cell_len(ch + out) > width - 1:
            break
        out = ch + out
    return "…" + out


def _saying(agent: AgentView) -> str:
    return " ".join(agent.saying.split()) if agent.saying else ""


def _agent_table(state: RunState, max_agents: int) -> _AgentTable:
    rows: list[tuple[str, ...]] = []
    styles: list[str] = []
    for agent, guide in _walk(state):
        if len(rows) >= max_agents:
            break
        status = agent.status
        if agent.done_status is not None and agent.done_status != "ok":
            status += f" ({agent.done_status})"
        rows.append((
            guide + agent.id,
            status,
            str(agent.depth),
            agent.model or "",
            agent.activity or "",
            str(agent.steps),
            budget_used(agent),
            " ".join(f"{path}({mode[:1]})" for path, mode in agent.locks.items()),
            _saying(agent),
        ))
        styles.append(STATUS_STYLES.get(agent.status, ""))
    return _AgentTable(tuple(rows), tuple(styles), len(state.agents) - len(rows))


def _recent_lines(state: RunState, n: int) -> list[Text]:
    lines: list[str] = []
    for event in reversed(state.recent):
        if len(lines) >= n:
            break
        # A streamed reply shows in its agent's row, not as lines.
        line = format_event(event) if event.get("type") != "llm/delta" else None
        if line is not None:
            lines.append(line)
    # Plain output prints errors in full; here a long line is cut at the console's edge.
    return [Text(line, style="dim", no_wrap=True, overflow="ellipsis") for line in reversed(lines)]


def render_run(state: RunState, *, max_agents: int = 200, recent: int = 8, now_ms: int | None = None,
               approvals: ApprovalKeys | None = None) -> RenderableType:
    """Render a run: header, agent tree (at most ``max_agents`` rows), calls held for approval,
    latest events.

    Args:
        state: the folded state.
        max_agents: agent rows to show; the rest are summed up in a "… N more" line.
        recent: how many of the latest notable events to show at the bottom.
        now_ms: the time now (ms since the epoch) for a run being watched live: elapsed
            time and events/s run on while no event comes. None for a replay: the time of
            the last event.
        approvals: the panel that answers held calls by key; without it (a replay), held
            calls are listed with the command that answers them.
    """
    parts: list[RenderableType] = [_header(state, now_ms), Text(""), _agent_table(state, max_agents)]
    panel = approvals.render(state) if approvals is not None else _held_lines(state)
    if panel is not None:
        parts += [Text(""), panel]
    if recent > 0:
        lines = _recent_lines(state, recent)
        if lines:
            parts.append(Text(""))
            parts.extend(lines)
    return Group(*parts)


def _held_lines(state: RunState) -> RenderableType | None:
    held = state.held()
    if not held:
        return None
    return Group(Text(f"waiting for approval ({len(held)}): agentctl approve|deny CALL", style="bold yellow"),
                 *(Text(f"  {h['call_id']}  {h['agent_id']}  {h['tool']}  (gate {h['gate']})", no_wrap=True,
                        overflow="ellipsis") for h in held))


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
        clock: Callable[[], int] | None = None,
        tick: float = TICK_S,
        approvals: ApprovalKeys | None = None,
    ) -> None:
        """Args:
        console: where to draw (tests pass a recording console).
        state: a state to start from (e.g. a prefix already folded); a new one when None.
        max_agents: agent rows per frame.
        recent: latest-event lines per frame.
        clock: the time now in ms since the epoch (:func:`wall_clock_ms` for a live run),
            so that elapsed time and events/s run on while no event comes, redrawn every
            ``tick`` seconds; None (a replay) shows the time of the last event.
        tick: seconds between redraws without events, when there is a clock.
        approvals: the panel that answers held calls by key (fed by :meth:`press`).
        """
        self.console = console
        self.state = state if state is not None else RunState()
        self.max_agents = max_agents
        self.recent = recent
        self.clock = clock
        self.tick = tick
        self.approvals = approvals
        self._events = 0
        self._keys = 0
        self._renders = 0

    def feed(self, event: dict[str, Any]) -> None:
        """Fold one event into the view's state (no drawing: that is ``run``'s job)."""
        apply(self.state, event)
        self._events += 1

    def noted(self, event: dict[str, Any]) -> None:
        """An event its owner already folded into the state this view shares: redraw."""
        self._events += 1

    def press(self, key: str) -> None:
        """A key the person pressed (a name from :func:`~agentctl.views.approval_keys.decode_keys`)."""
        if self.approvals is not None:
            self.approvals.key(self.state, key)
            self._keys += 1

    def render(self) -> RenderableType:
        """The current frame (on a terminal, only as many agent rows as fit the screen)."""
        rows = self.max_agents
        if self.console.is_terminal:
            # Rows below the screen's edge are cropped anyway; not building them keeps a
            # frame of a thousand-agent run cheap (Rich tables cost ~0.4 ms a row).
            held = len(self.state.held())
            panel = held + 3 if held else 0
            rows = min(rows, max(3, self.console.height - self.recent - _CHROME_LINES - panel))
        now_ms = self.clock() if self.clock is not None else None
        return render_run(self.state, max_agents=rows, recent=self.recent, now_ms=now_ms, approvals=self.approvals)

    def statistics(self) -> LiveViewStatistics:
        """Events fed, frames drawn and agents known so far."""
        return LiveViewStatistics(events=self._events, renders=self._renders, agents=len(self.state.agents))

    async def run(self, *, fps: float = 10, stop: anyio.Event | None = None) -> None:
        """Redraw whenever the state changed, at most ``fps`` times a second (and every
        ``tick`` seconds without a change, when the view has a clock).

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
            drawn, drawn_at = self._events + self._keys, anyio.current_time()
            self._renders += 1
            try:
                while stop is None or not stop.is_set():
                    ticked = self.clock is not None and anyio.current_time() - drawn_at >= self.tick
                    if self._events + self._keys != drawn or ticked:
                        drawn, drawn_at = self._events + self._keys, anyio.current_time()
                        live.update(self.render(), refresh=True)
                        self._renders += 1
                    if stop is None:
                        await anyio.sleep(interval)
                    else:
                        with anyio.move_on_after(interval):
                            await stop.wait()
            finally:
                # The frame left on screen must include every event fed, even the last few.
                if self._events + self._keys != drawn:
                    live.update(self.render(), refresh=True)
                    self._renders += 1
