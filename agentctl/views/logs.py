"""``agentctl logs``: a run's events as plain lines, filtered by agent and type.

The lines are those of ``agentctl run --no-ui`` (:func:`~agentctl.views.plain.format_event`).
An event type that the plain format leaves out is printed generically when ``--type``
asks for it by pattern, so ``logs --type 'agent/status'`` shows something.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, TextIO

import orjson

from agentctl.views.plain import format_event, format_time

__all__ = ["LogFilter", "LogPrinter"]

_COMMON = frozenset({"seq", "t", "run_id", "type", "agent_id"})


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Which events to show: of one agent (None: all) whose type matches a glob pattern."""

    agent: str | None = None
    type: str | None = None

    def __call__(self, event: dict[str, Any]) -> bool:
        if self.agent is not None and event.get("agent_id") != self.agent:
            return False
        return self.type is None or fnmatchcase(str(event.get("type")), self.type)


def generic_line(event: dict[str, Any]) -> str:
    """Any event as one line: time, seq, agent, type and its own fields as JSON."""
    fields = {k: v for k, v in event.items() if k not in _COMMON}
    body = orjson.dumps(fields, default=repr).decode()
    return f"{format_time(event.get('t'))} #{event.get('seq')} {event.get('agent_id') or '-'}  {event.get('type')} {body}"


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
        if not self.agent_seen and event.get("agent_id") == self.keep.agent:
            self.agent_seen = True
        if not self.keep(event):
            return
        line = format_event(event)
        if line is None and self.keep.type is not None:
            line = generic_line(event)
        if line is None:
            return
        self.file.write(line + "\n")
        self.file.flush()
        self.printed += 1
