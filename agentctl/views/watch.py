"""``agentctl watch``: the live view of a run in another process, read from its log.

Follows the run's ``events.jsonl`` as it grows (:func:`~agentctl.events.reader.follow_events`)
and feeds a :class:`~agentctl.views.live.LiveView`. Watching never touches the running
process: it needs only read access to the run directory.
"""

from __future__ import annotations

from contextlib import aclosing
from pathlib import Path

import anyio
from rich.console import Console

from agentctl.events.fold import RunState
from agentctl.events.reader import follow_events
from agentctl.views.live import LiveView, wall_clock_ms

__all__ = ["RUNS_DIR", "newest_run", "watch"]

#: Where runs live, relative to the project directory.
RUNS_DIR = Path(".agentctl/runs")


def newest_run(root: Path = RUNS_DIR) -> Path | None:
    """The most recently modified run directory under ``root`` that has an ``events.jsonl``."""
    try:
        runs = [d for d in Path(root).iterdir() if d.is_dir() and (d / "events.jsonl").is_file()]
    except FileNotFoundError:
        return None
    if not runs:
        return None
    return max(runs, key=lambda d: d.stat().st_mtime)


def _events_file(path: str | Path) -> Path:
    # The file may not exist yet (a run just starting): follow_events waits for it.
    path = Path(path)
    return path / "events.jsonl" if path.is_dir() else path


async def watch(
    path: str | Path,
    console: Console,
    *,
    stop: anyio.Event | None = None,
    fps: float = 10,
    poll_interval: float = 0.1,
) -> RunState:
    """Show a run live until it finishes (``run/finished`` seen) or ``stop`` is set.

    Args:
        path: a run directory or its ``events.jsonl`` (waited for if not there yet).
        console: where to draw.
        stop: set it to stop watching early.
        fps: frames per second at most.
        poll_interval: how often to look for new events.

    Returns:
        The state as of the last event seen (the final frame shows it).

    Raises:
        CorruptLogError: a complete line of the file is not an event.
    """
    view = LiveView(console, clock=wall_clock_ms)
    ended = anyio.Event()
    relay_scope = anyio.CancelScope()

    async def relay_stop(outer: anyio.Event) -> None:
        with relay_scope:
            await outer.wait()
            ended.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: view.run(fps=fps, stop=ended))
        if stop is not None:
            tg.start_soon(relay_stop, stop)
        try:
            events = follow_events(_events_file(path), poll_interval=poll_interval, stop=ended)
            async with aclosing(events):  # type: ignore[type-var]
                async for event in events:
                    view.feed(event)
                    if event.get("type") == "run/finished":
                        break
        finally:
            ended.set()
            relay_scope.cancel()
    return view.state
