"""One agent as the events describe it: the :class:`AgentView` record.

Made and updated in place by the reducers (:mod:`agentctl.events.reducers`), held in
:attr:`RunState.agents <agentctl.events.run_state.RunState>`, and drawn by the views
(:mod:`agentctl.views.live`, ``agentctl watch``, ``agentctl replay --at``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["AgentView", "STATUSES"]

#: Every status an :class:`AgentView` can be in, in display order.
STATUSES = ("spawned", "running", "waiting", "sleeping", "blocked", "done", "failed", "stopped")


@dataclass(slots=True)
class AgentView:
    """What the events say about one agent. Mutable: the fold updates it in place."""

    id: str
    parent_id: str | None = None
    depth: int = 0
    model: str | None = None
    kind: str | None = None
    tools: tuple[str, ...] = ()
    #: Its approval gates (``agent/spawned``'s ``approve``).
    approve: tuple[str, ...] = ()
    budget: dict[str, Any] = field(default_factory=dict)
    restart: str | None = None
    #: How it supervises its children (``agent/spawned``, then ``agent/supervision``); empty
    #: in logs written before they carried it.
    supervise: dict[str, Any] = field(default_factory=dict)
    status: str = "spawned"
    activity: str | None = None
    #: The tail of what its latest LLM call has streamed so far (``llm/delta``; views only).
    saying: str | None = None
    steps: int = 0
    tool_calls: int = 0
    llm_calls: int = 0
    tokens: int = 0
    restarts: int = 0
    done_status: str | None = None
    result: Any = None
    error: str | None = None
    locks: dict[str, str] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)
    spawned_t: int | None = None
    ended_t: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy (containers copied, so later folding does not change it)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["tools"] = list(self.tools)
        d["approve"] = list(self.approve)
        d["budget"] = dict(self.budget)
        d["supervise"] = dict(self.supervise)
        d["locks"] = dict(self.locks)
        d["children"] = list(self.children)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AgentView:
        """The inverse of :meth:`to_dict`."""
        d = dict(d)
        d["tools"] = tuple(d.get("tools") or ())
        d["approve"] = tuple(d.get("approve") or ())
        return cls(**d)
