"""The progress of a batch (``agentctl batch``): one row per run, drawn from that run's own log.

Each run of a batch writes its own ``events.jsonl``; :class:`BatchProgress` follows every one
of them (:func:`~agentctl.events.reader.follow_events`) and folds it into a
:class:`~agentctl.events.run_state.RunState`, as the live view of one run does. The one
other input is how the batch saw a run end (:meth:`BatchProgress.ended`): a run that could
not start, or whose process or cluster worker died, has no ``run/finished`` to say so.
:func:`render_batch` draws the rows; :meth:`BatchProgress.show` keeps a terminal current.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from agentctl.errors import LogError
from agentctl.events.fold import RunState, apply
from agentctl.events.reader import follow_events
from agentctl.views.live import wall_clock_ms
from agentctl.views.plain import format_event

__all__ = ["BatchProgress", "RunRow", "render_batch"]

_STYLE = {"queued": "dim", "running": "bold cyan", "ok": "green", "failed": "red", "error": "red", "lost": "bold red",
          "interrupted": "yellow", "stopped": "yellow"}


@dataclass
class RunRow:
    """One run of the batch as its log tells it so far.

    Attributes:
        name: the run's name in the batch (``03-plan[n=2]``).
        events: its ``events.jsonl``.
        state: its log folded so far.
        ended: its status as the batch saw it end (``ok``, ``failed``, ``error``, ``lost``, ...),
            ``None`` while it runs.
        unreadable: why its log could not be followed, if it could not.
    """

    name: str
    events: Path
    state: RunState = field(default_factory=RunState)
    ended: str | None = None
    unreadable: str | None = None

    @property
    def status(self) -> str:
        """``queued`` (no event yet), ``running``, or how it ended."""
        if self.ended is not None:
            return self.ended
        if self.state.finished is not None:
            return str(self.state.finished.status or "finished")
        return "running" if self.state.started_t is not None else "queued"

    def elapsed_s(self, now_ms: int) -> float | None:
        """Seconds from its first event to its last (to ``now_ms`` while it runs)."""
        s = self.state
        if s.started_t is None:
            return None
        end = s.last_t if (self.ended or s.finished) and s.last_t is not None else now_ms
        return max(0, end - s.started_t) / 1000

    def last_event(self) -> str:
        """Its latest notable event as a plain line (without time and seq), or why there is none."""
        if self.unreadable is not None:
            return self.unreadable
        for event in reversed(self.state.recent):
            line = format_event(event) if event.get("type") != "llm/delta" else None
            if line is not None:
                return line.split(" ", 2)[-1]  # "HH:MM:SS.mmm #seq rest": the rest
        return ""


def render_batch(rows: Sequence[RunRow], now_ms: int, width: int = 120) -> Table:
    """The progress table, ``width`` columns wide: run, state, elapsed, tokens, last event (cut
    at the edge); a caption counts the ended runs."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    name_width = max((len(r.name) for r in rows), default=3)
    for name, right, min_width in (("run", False, name_width), ("state", False, 11), ("elapsed", True, 7),
                                   ("tokens", True, 6), ("last event", False, 10)):
        table.add_column(name, justify="right" if right else "left", no_wrap=True, min_width=min_width)
    # What is left of the width once the other columns (and the gaps between them) have theirs.
    last_width = max(10, width - name_width - 11 - 7 - 6 - 2 * 4)
    for row in rows:
        elapsed = row.elapsed_s(now_ms)
        tokens = row.state.counts["prompt_tokens"] + row.state.counts["completion_tokens"]
        last = Text(row.last_event(), style="dim")
        last.truncate(last_width, overflow="ellipsis")
        table.add_row(Text(row.name), Text(row.status, style=_STYLE.get(row.status, "")),
                      "-" if elapsed is None else f"{elapsed:.1f}s", str(tokens), last)
    ended = sum(r.ended is not None for r in rows)
    ok = sum(r.ended == "ok" for r in rows)
    table.caption = Text(f"{ended}/{len(rows)} runs ended, {ok} ok")  # Text: no highlighting splits it
    return table


class BatchProgress:
    """Every run's row, fed from its log by :meth:`follow` and its end by :meth:`ended`.

    Args:
        runs: each run's name and its ``events.jsonl`` (which may not exist yet).
        clock: the time now in ms since the epoch (elapsed time runs on between events).
    """

    def __init__(self, runs: Sequence[tuple[str, Path]], clock: Callable[[], int] = wall_clock_ms) -> None:
        self.rows = [RunRow(name, Path(events)) for name, events in runs]
        self.clock = clock

    def ended(self, name: str, status: str) -> None:
        """The batch saw run ``name`` end with ``status``."""
        for row in self.rows:
            if row.name == name:
                row.ended = status

    def render(self, width: int = 120) -> Table:
        """The table as of now, ``width`` columns wide."""
        return render_batch(self.rows, self.clock(), width)

    async def follow(self, stop: anyio.Event, poll_interval: float = 0.2) -> None:
        """Fold every run's events as they are written, until ``stop`` (then what is on disk)."""
        async with anyio.create_task_group() as tg:
            for row in self.rows:
                tg.start_soon(self._follow_one, row, stop, poll_interval)

    async def _follow_one(self, row: RunRow, stop: anyio.Event, poll_interval: float) -> None:
        try:
            async with aclosing(follow_events(row.events, stop=stop, poll_interval=poll_interval)) as events:
                async for event in events:
                    apply(row.state, event)
        except LogError as exc:  # one damaged log spoils its own row, not the batch
            row.unreadable = f"log unreadable: {exc}"

    async def show(self, console: Console, stop: anyio.Event, *, fps: float = 4) -> None:
        """Follow the runs and keep ``console`` showing the table until ``stop``; the last frame stays."""
        with Live(self.render(console.width), console=console, auto_refresh=False, redirect_stdout=False,
                  redirect_stderr=False) as live:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.follow, stop)
                while not stop.is_set():
                    with anyio.move_on_after(1 / fps):
                        await stop.wait()
                    live.update(self.render(console.width), refresh=True)  # every frame: elapsed time runs on
            live.update(self.render(console.width), refresh=True)  # every log read to its end
