"""How a run ended and what failed in it: records of :class:`~agentctl.events.run_state.RunState`.

The reducers (:mod:`agentctl.events.reducers`) make them from ``run/finished``,
``agent/error`` and failed calls; checkpoints store them as dicts (:meth:`to_dict`,
``RunState.from_dict``); the views read their attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Failure", "Finished"]


@dataclass(frozen=True, slots=True)
class Finished:
    """How the run ended, from its ``run/finished`` (``None`` fields in a damaged log)."""

    reason: str | None
    status: str | None

    def to_dict(self) -> dict[str, Any]:
        """As a checkpoint stores it."""
        return {"reason": self.reason, "status": self.status}


@dataclass(frozen=True, slots=True)
class Failure:
    """What failed, where and why: an ``agent/error``, or a failed tool or LLM call
    (``where``: the error's place, ``tool NAME`` or ``llm``; ``call_id``: the call's)."""

    seq: int | None
    agent_id: str | None
    error: Any
    error_type: str | None
    where: str | None
    call_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """As a checkpoint stores it."""
        return {"seq": self.seq, "agent_id": self.agent_id, "error": self.error, "error_type": self.error_type,
                "where": self.where, "call_id": self.call_id}
