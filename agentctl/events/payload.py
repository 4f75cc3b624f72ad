"""Which fields of each event type carry data the runtime did not make itself.

Used by :meth:`agentctl.events.log.EventLog.emit`: the redactor's key rule
(:mod:`agentctl.redact`) walks these fields only, since every other documented field is a
scalar or a list of strings the runtime fills in (ids, names, statuses, counts). A type
missing here (a plugin's own events, say) is walked whole; the value rule always searches
the whole event. The table follows the ``object`` and ``any`` fields of ``docs/events.md``;
``tests/test_redact.py`` keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["PAYLOAD_FIELDS"]

PAYLOAD_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "agent/done": ("result", "unread_from"),
        "agent/error": ("unread_from",),
        "agent/message": ("body",),
        "agent/replayed": (),
        "agent/restarted": (),
        "agent/resumed": (),
        "agent/spawned": ("budget", "supervise"),
        "agent/status": (),
        "agent/stopped": ("unread_from",),
        "agent/supervision": (),
        "approval/denied": (),
        "approval/granted": (),
        "approval/requested": ("arguments",),
        "budget/charged": (),
        "bus/denied": (),
        "conflict/opened": (),
        "conflict/resolved": (),
        "llm/requested": (),
        "llm/delta": (),
        "llm/result": ("reply",),
        "lock/acquired": (),
        "lock/conflict": (),
        "lock/released": (),
        "mcp/exited": (),
        "mcp/started": (),
        "plan/diff": (),
        "plan/invalid": ("error",),
        "plan/loaded": (),
        "plan/refused": ("error",),
        "policy/refused": (),
        "run/finished": (),
        "run/resumed": (),
        "run/started": (),
        "tool/prepared": ("record",),
        "tool/recovered": ("result",),
        "tool/requested": ("arguments",),
        "tool/result": ("result",),
    }
)
