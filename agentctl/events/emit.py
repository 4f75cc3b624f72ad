"""The one signature by which events are recorded: :class:`Emit`.

Every service, the runtime and the reconciler are given an ``Emit`` (a run passes
:meth:`agentctl.events.log.EventLog.emit`; tests pass a recorder) and never hold the log.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["Emit"]


class Emit(Protocol):
    """Record one event of ``type`` (by ``agent_id``, with fields as one dict and/or keywords)
    and return it as logged, ``seq`` included."""

    def __call__(self, type: str, agent_id: str | None = None, fields: dict[str, Any] | None = None, /,
                 **more: Any) -> dict[str, Any]: ...
