"""Following a run's log to its end: ``agentctl watch`` and ``agentctl logs -f``.

A run ends with ``run/finished``. A process killed outright (SIGKILL, power loss) never
writes it, so while following, the pid that ``run/started`` (or the latest ``run/resumed``)
recorded is checked every ``check_interval`` seconds; once it is gone, what the file holds
is read to the end and the follow reports the run dead. A resume found in that last read
(a new live pid) is followed on.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from agentctl.errors import AgentctlError, CorruptLogError
from agentctl.events.check import first_misfit
from agentctl.events.reader import follow_events
from agentctl.events.types import RunFinished, RunResumed, RunStarted, UnknownEvent, decode
from agentctl.views.runs import process_alive

__all__ = ["FollowEnd", "follow_run"]

_RUN_EVENTS = frozenset({RunStarted.type, RunResumed.type, RunFinished.type})


@dataclass(frozen=True, slots=True)
class FollowEnd:
    """How a follow ended: ``finished`` (the ``run/finished`` event), ``dead_pid`` (the run's
    process is gone without one), or neither (stopped by the caller)."""

    finished: RunFinished | None = None
    dead_pid: int | None = None


async def follow_run(
    path: str | Path,
    feed: Callable[[dict[str, Any]], Any],
    *,
    stop: anyio.Event | None = None,
    poll_interval: float = 0.1,
    check_interval: float = 0.5,
) -> FollowEnd:
    """Feed every event of a run's ``events.jsonl`` (waited for if absent) until the run ends.

    Args:
        path: the events file.
        feed: called with each event, in order.
        stop: set it to stop following early (what the file holds is still fed).
        poll_interval: how often to look for new events.
        check_interval: how often to check that the run's process is alive.

    Raises:
        CorruptLogError: a complete line of the file is not an event, or a ``run/*`` event
            does not fit its definition (its pid or its end cannot be read).
    """
    pid: int | None = None
    finished: RunFinished | None = None
    last_seq = 0

    def note(event: dict[str, Any]) -> bool:
        """Track pid and finish; True when the rest of the file is all there is to read."""
        nonlocal pid, finished
        if event.get("type") not in _RUN_EVENTS:
            return finished is not None  # not decoded: the run's own events are all this reads
        match decode(event):
            case RunStarted(pid=started) | RunResumed(pid=started):
                pid = started or None  # 0: not recorded
                finished = None
            case RunFinished() as e:
                finished = e
            case UnknownEvent():  # its pid or its end unreadable: waiting would never end
                raise first_misfit(Path(path)) or CorruptLogError(
                    str(path), 0, f"event {event.get('seq')!r} ({event.get('type')!r}) does not fit its definition")
        return finished is not None

    async def watchdog(drain: anyio.Event) -> None:
        while True:
            with anyio.move_on_after(check_interval):
                await (stop.wait() if stop is not None else anyio.sleep_forever())
            if (stop is not None and stop.is_set()) or (pid is not None and not process_alive(pid)):
                drain.set()
                return

    while True:
        drain = anyio.Event()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(watchdog, drain)
                events = follow_events(path, start_seq=last_seq + 1, poll_interval=poll_interval, stop=drain)
                async with aclosing(events):
                    async for event in events:
                        last_seq = event.get("seq", last_seq)
                        feed(event)
                        if note(event):
                            drain.set()
                tg.cancel_scope.cancel()
        except* AgentctlError as group:
            # The reader's error alone (the watchdog raises none): callers catch it as it is.
            raise group.exceptions[0] from None
        if finished is not None:
            return FollowEnd(finished=finished)
        if stop is not None and stop.is_set():
            return FollowEnd()
        if pid is not None and not process_alive(pid):
            return FollowEnd(dead_pid=pid)
