"""The event log: writing ``events.jsonl`` (:mod:`.log`) and reading it back (:mod:`.reader`).

The runtime opens the log and passes ``log.emit`` to every service; views, replay and
resume read events back through the reader.
"""

from agentctl.events.log import Durability, EventLog, EventLogStatistics, open_event_log
from agentctl.events.reader import EventStream, follow_events, read_events, read_run_events

__all__ = [
    "Durability",
    "EventLog",
    "EventLogStatistics",
    "EventStream",
    "follow_events",
    "open_event_log",
    "read_events",
    "read_run_events",
]
