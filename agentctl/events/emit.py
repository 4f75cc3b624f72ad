"""The one signature by which events are recorded: :class:`Emit`.

Every service, the runtime and the reconciler are given an ``Emit`` (a run passes
:meth:`agentctl.events.log.EventLog.emit`; tests pass a recorder) and never hold the log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .types import Event

__all__ = ["Emit"]


class Emit(Protocol):
    """Record one event and return it as logged (a dict, ``seq`` included).

    Either the typed value, ``emit(ToolRecovered(agent_id=..., call_id=..., ...))`` (one of
    :mod:`agentctl.events.types`; the way for new events), or the ``type``, the ``agent_id``
    and the fields as one dict and/or keywords (the hot paths' form), which must be exactly
    the fields of that type's definition.
    """

    def __call__(self, type: str | Event, agent_id: str | None = None, fields: dict[str, Any] | None = None, /,
                 **more: Any) -> dict[str, Any]: ...
