"""``agentctl logs``: a run's events as plain lines, filtered by agent and type.

The lines are those of ``agentctl run --no-ui`` (:func:`~agentctl.views.plain.format_value`).
An event type that the plain format leaves out is printed generically when ``--type``
asks for it by pattern, so ``logs --type 'agent/status'`` shows something.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, TextIO

import msgspec
import orjson

from agentctl.events.reader import last_event
from agentctl.events.types import Event, UnknownEvent, decode
from agentctl.views.plain import format_time, format_value

__all__ = ["LogFilter", "LogPrinter", "tail_start"]

_COMMON = frozenset({"seq", "t", "run_id", "type", "agent_id"})


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Which events to show: of one agent (None: all) whose type matches a glob pattern."""

    agent: str | None = None
    type: str | None = None

    def __call__(self, event: Event | UnknownEvent) -> bool:
        if self.agent is not None and event.agent_id != self.agent:
            return False
        return self.type is None or fnmatchcase(event.type, self.type)


def generic_line(event: Event | UnknownEvent) -> str:
    """Any event as one line: time, seq, agent, type and its own fields as JSON."""
    logged = event.data if isinstance(event, UnknownEvent) else msgspec.to_builtins(event)
    fields = {k: v for k, v in logged.items() if k not in _COMMON}
    body = orjson.dumps(fields, default=repr).decode()
    return f"{format_time(event.t or None)} #{event.seq} {event.agent_id or '-'}  {event.type} {body}"


class LogPrinter:
    """Prints the lines of the events a :class:`LogFilter` lets through (feed it every event)."""

    def __init__(self, keep: LogFilter, file: TextIO) -> None:
        self.keep = keep
        self.file = file
        self.printed = 0
        #: Whether any event of the filter's agent went by (to tell an unknown agent).
        self.agent_seen = keep.agent is None

    def feed(self, event: dict[str, Any]) -> None:
        """Print the event's line if it passes the filter and has one."""
        e = decode(event)
        if not self.agent_seen and e.agent_id == self.keep.agent:
            self.agent_seen = True
        if not self.keep(e):
            return
        line = format_value(e)
        if line is None and self.keep.type is not None:
            line = generic_line(e)
        if line is None:
            return
        self.file.write(line + "\n")
        self.file.flush()
        self.printed += 1


def tail_start(path: str | Path, n: int) -> int:
    """The seq of the first of the last ``n`` events of the log at ``path`` (by seq, which
    grows by one per event, across resumes too), found from the log's last event alone; 0
    (the whole log) when that event has no seq.

    Raises:
        LogError, CorruptLogError: as :func:`~agentctl.events.reader.last_event`.
    """
    last = last_event(path)
    seq = None if last is None else last.get("seq")
    return max(seq - n + 1, 1) if type(seq) is int else 0
