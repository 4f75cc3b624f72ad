"""``agentctl watch``: the live view of a run in another process, read from its log.

Follows the run's ``events.jsonl`` as it grows (:func:`~agentctl.views.follow.follow_run`)
and feeds a :class:`~agentctl.views.live.LiveView`, or prints plain lines. Watching never
touches the running process: it needs only read access to the run directory. Answering
held calls from the view's approval panel is the caller's (``agentctl watch`` gives an
answer over the run's control channel and the terminal's keys).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console

from agentctl.errors import AgentctlError
from agentctl.events.fold import RunState, apply
from agentctl.views.approval_keys import ApprovalKeys
from agentctl.views.follow import FollowEnd, follow_run
from agentctl.views.live import LiveView, wall_clock_ms
from agentctl.views.plain import PlainPrinter

__all__ = ["KeySource", "RUNS_DIR", "Watched", "newest_run", "watch"]

#: ``keys(press)``: calls ``press(key)`` for each key a person presses, until cancelled.
KeySource = Callable[[Callable[[str], None]], Awaitable[None]]

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


@dataclass(frozen=True, slots=True)
class Watched:
    """What watching saw: the state as of the last event, and how the follow ended."""

    state: RunState
    end: FollowEnd


async def watch(
    path: str | Path,
    console: Console,
    *,
    stop: anyio.Event | None = None,
    fps: float = 10,
    poll_interval: float = 0.1,
    plain: bool = False,
    state: RunState | None = None,
    approvals: ApprovalKeys | None = None,
    keys: KeySource | None = None,
) -> Watched:
    """Show a run until it finishes, its process is found gone, or ``stop`` is set.

    Args:
        path: a run directory or its ``events.jsonl`` (waited for if not there yet).
        console: where to draw.
        stop: set it to stop watching early.
        fps: frames per second at most (live view).
        poll_interval: how often to look for new events.
        plain: one line per notable event (the ``--no-ui`` format) instead of the live view.
        state: the state to fold into (a new one when None); an ``approvals`` answer may read it.
        approvals: the live view's panel that answers held calls by key.
        keys: what feeds the panel keys (``keys(press)`` until cancelled, e.g. reading the
            terminal); it is cancelled once the follow ends.

    Raises:
        CorruptLogError: a complete line of the file is not an event.
    """
    state = state if state is not None else RunState()
    if plain:
        printer = PlainPrinter(console.file)  # type: ignore[arg-type]  # any writable text file

        def feed(event: dict[str, Any]) -> None:
            apply(state, event)
            printer.feed(event)

        end = await follow_run(_events_file(path), feed, stop=stop, poll_interval=poll_interval)
        return Watched(state, end)
    view = LiveView(console, state=state, clock=wall_clock_ms, approvals=approvals)
    ended = anyio.Event()
    pressing = anyio.CancelScope()

    async def read_keys(source: KeySource) -> None:
        with pressing:
            await source(view.press)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: view.run(fps=fps, stop=ended))
            if keys is not None:
                tg.start_soon(read_keys, keys)
            try:
                end = await follow_run(_events_file(path), view.feed, stop=stop, poll_interval=poll_interval)
            finally:
                ended.set()
                pressing.cancel()
    except* AgentctlError as group:
        raise group.exceptions[0] from None
    return Watched(view.state, end)
