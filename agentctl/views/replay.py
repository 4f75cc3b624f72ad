"""``agentctl replay``: play a finished (or crashed) run's ``events.jsonl`` back.

Either animates the run through a :class:`~agentctl.views.live.LiveView`, keeping the
gaps between events (scaled by ``speed``), or, with ``at``, shows the state as of one
event. ``svg`` also saves the final frame as an SVG, e.g. for a bug report.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console, RenderableType

from agentctl.events.fold import RunState, fold
from agentctl.events.reader import EventStream, read_events, read_run_events
from agentctl.views.live import LiveView, render_run

__all__ = ["MAX_GAP_S", "gap_seconds", "replay", "save_svg"]

#: The longest pause between two events at speed 1 (an idle hour replays in 2 s).
MAX_GAP_S = 2.0
#: Events read per trip to the worker thread.
_BATCH = 1000


def save_svg(renderable: RenderableType, svg: Path, *, title: str = "agentctl") -> None:
    """Render to a recording console 120 columns wide and save it as an SVG file."""
    recorder = Console(record=True, width=120, file=io.StringIO(), force_terminal=True)
    recorder.print(renderable)
    recorder.save_svg(str(svg), title=title)


def gap_seconds(previous_t: int | None, t: int | None, speed: float) -> float:
    """How long to pause before an event at ``t`` after one at ``previous_t`` (ms times).

    The gap divided by ``speed``, each gap capped at ``MAX_GAP_S / speed``; 0 when
    ``speed`` is 0 (as fast as possible) or the times are missing or out of order.
    """
    if speed <= 0 or previous_t is None or t is None or t <= previous_t:
        return 0.0
    return min((t - previous_t) / 1000, MAX_GAP_S) / speed


def _take(events: Iterator[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    batch: list[dict[str, Any]] = []
    for event in events:
        batch.append(event)
        if len(batch) >= n:
            break
    return batch


async def _play(stream: EventStream, view: LiveView, speed: float) -> None:
    """Feed the view every event, sleeping the (scaled, capped) gaps between them."""
    events = iter(stream)
    previous_t: int | None = None
    while True:
        # Reading the file is blocking work: do it in a worker thread, a batch at a time.
        batch = await anyio.to_thread.run_sync(_take, events, _BATCH)
        if not batch:
            return
        for event in batch:
            t = event.get("t")
            gap = gap_seconds(previous_t, t, speed)
            if gap > 0:
                await anyio.sleep(gap)
            if t is not None:
                previous_t = t
            view.feed(event)
        if speed <= 0:
            await anyio.sleep(0)  # let the view draw between batches


def _torn_notice(console: Console, stream: EventStream) -> None:
    if stream.torn_line is not None:
        console.print(
            f"[yellow]notice:[/] {stream.path}: line {stream.torn_line} is a torn final line"
            " (the run crashed mid-write); it was skipped"
        )


async def replay(
    path: str | Path,
    console: Console,
    *,
    speed: float = 1.0,
    at: int | None = None,
    svg: Path | None = None,
    live: bool = True,
    fps: float = 10,
) -> RunState:
    """Replay a run's events on ``console``.

    Args:
        path: a run directory or its ``events.jsonl``.
        console: where to draw.
        speed: replay speed; 0 = as fast as possible. Each gap is capped at
            ``MAX_GAP_S / speed``.
        at: show the state as of this seq once, instead of animating.
        svg: also save the final (or ``at``) frame as an SVG file here.
        live: animate; when False the events are folded at once and the final frame printed.
        fps: frames per second of the animation.

    Returns:
        The state the replay ended with.

    Raises:
        LogError: there is no such run or events file.
        CorruptLogError: a line before the last is not an event.
    """
    stream = read_events(read_run_events(path))
    if at is not None or not live:
        state = await anyio.to_thread.run_sync(lambda: fold(stream, until_seq=at, journals=False))
        frame = render_run(state)
        console.print(frame)
    else:
        view = LiveView(console)
        finished = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: view.run(fps=fps, stop=finished))
            try:
                await _play(stream, view, speed)
            finally:
                finished.set()
        state = view.state
        frame = view.render()
    _torn_notice(console, stream)
    if svg is not None:
        title = f"agentctl replay {state.run_id or ''}" + (f" at #{at}" if at is not None else "")
        save_svg(frame, Path(svg), title=title.strip())
    return state
