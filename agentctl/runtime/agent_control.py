"""The runtime's side of the ``agent/*`` bridge tools: :class:`RuntimeAgentControl`.

The tools (:mod:`agentctl.services.tools.bridge`) run on the tool pool with a
:class:`~agentctl.services.tools.registry.ToolContext`; what they may do to the tree comes
through its ``agents`` field, one of these per runtime, made by
:class:`~agentctl.runtime.runtime.Runtime`. Tools never see the runtime itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import AgentctlError, ToolError
from .spec import AgentSpec

if TYPE_CHECKING:
    from ..services.bus import SendResult

__all__ = ["ControlledRuntime", "LLMChildFactory", "RuntimeAgentControl"]

#: Builds the spec of an ``llm`` child (``agentctl.agents.llm.llm_child_spec`` in a run): the
#: runtime cannot import agent kinds, which sit above it, so whoever opens it passes this in.
LLMChildFactory = Callable[..., AgentSpec]


class ControlledRuntime(Protocol):
    """The runtime's public calls the bridge answers from (:class:`~agentctl.runtime.runtime.Runtime`
    has them; naming them here keeps this module from importing the runtime that holds it)."""

    def spawn(self, spec: AgentSpec, parent_id: str | None = None) -> str:
        """Start an agent under ``parent_id``."""
        ...

    def send(self, sender: str, to: str, kind: str = "chat", body: Any = None) -> SendResult:
        """Send a message through the bus."""
        ...

    def spec_of(self, agent_id: str) -> AgentSpec | None:
        """The spec of live agent ``agent_id``."""
        ...

    def parent_of(self, agent_id: str) -> str | None:
        """The parent of live agent ``agent_id``."""
        ...

    def finish_soon(self, agent_id: str, status: str, result: Any) -> None:
        """End an agent on the timer task's next turn."""
        ...

    def on_agent_end(self, fn: Callable[[str], Any]) -> None:
        """Call ``fn(agent_id)`` whenever an agent ends."""
        ...


class RuntimeAgentControl:
    """:class:`~agentctl.services.tools.registry.AgentControl` over one runtime."""

    def __init__(self, runtime: ControlledRuntime, llm_child: LLMChildFactory | None) -> None:
        self._rt = runtime
        self._llm_child = llm_child

    def spawn_llm_child(self, parent_id: str, child_id: str, instructions: str, *, model: str | None,
                        tools: Sequence[str] | None, budget: Mapping[str, Any] | None) -> str:
        """Start an ``llm`` child with the parent's provider; refusals are ToolErrors."""
        if self._llm_child is None:
            raise ToolError("agent/spawn: this runtime was opened without an llm_child factory")
        parent = self._spec(parent_id)
        spec = self._llm_child(child_id, instructions, model=model, tools=tools, budget=budget, provider=parent.provider)
        try:
            return self._rt.spawn(spec, parent_id)
        except AgentctlError as exc:
            raise ToolError(f"agent/spawn refused: {exc}") from None

    def parent_of(self, agent_id: str) -> str | None:
        """The parent of live agent ``agent_id``."""
        self._spec(agent_id)
        return self._rt.parent_of(agent_id)

    def send(self, sender: str, to: str, kind: str, body: Any) -> str:
        """Send through the bus; an undelivered message is a ToolError."""
        sent = self._rt.send(sender, to, kind, body)
        if not sent.ok:
            raise ToolError(f"message to {to!r} not delivered: {sent.status.value}")
        return str(sent.msg_id)

    def finish_soon(self, agent_id: str, status: str, result: Any) -> None:
        """End the agent on the timer task's next turn: finishing inline would cancel the very
        task running the calling tool before its result is logged."""
        self._spec(agent_id)
        self._rt.finish_soon(agent_id, status, result)

    def on_agent_end(self, fn: Callable[[str], Any]) -> None:
        """See :meth:`Runtime.on_agent_end`."""
        self._rt.on_agent_end(fn)

    def _spec(self, agent_id: str) -> AgentSpec:
        spec = self._rt.spec_of(agent_id)
        if spec is None:
            raise ToolError(f"agent {agent_id!r} is not live")
        return spec
