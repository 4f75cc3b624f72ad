"""The LLM provider interface: requests, replies and the ``Provider`` protocol.

Invoked from the work plane (``agentctl.services.workers``): a provider turns one
:class:`ChatRequest` into one :class:`ChatReply`. Providers are async, keep no agent
state, and report failures by raising :class:`~agentctl.errors.LLMError` (the work plane
turns that into a result value and an ``llm/result`` event; nothing crashes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool offered to the model: its agentctl name, description and JSON Schema."""

    name: str
    description: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call the model asked for; ``arguments`` already decoded to a dict.

    ``error`` is set (and ``arguments`` empty) when the model's arguments could not be
    decoded, so the step function can feed the problem back to the model.
    """

    id: str
    name: str
    arguments: Mapping[str, Any]
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat completion request."""

    model: str
    messages: Sequence[Mapping[str, Any]]
    tools: Sequence[ToolSpec] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class ChatReply:
    """The model's answer: text, tool calls and token counts."""

    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str | None = None

    def to_message(self) -> dict[str, Any]:
        """The reply as an assistant chat message (for the log and the next prompt)."""
        msg: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            msg["tool_calls"] = [
                {"id": c.id, "name": c.name, "arguments": dict(c.arguments), **({"error": c.error} if c.error else {})}
                for c in self.tool_calls
            ]
        return msg


#: Called by a streaming provider with each fragment of the reply as it arrives: the text,
#: and the text of tool calls (a name, then pieces of its JSON arguments). Either may be "".
OnDelta = Callable[[str, str], None]


@runtime_checkable
class Provider(Protocol):
    """Anything that answers chat requests."""

    name: str

    async def chat(self, request: ChatRequest) -> ChatReply:
        """Answer ``request``; raise ``LLMError`` on failure."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class StreamingProvider(Provider, Protocol):
    """A provider that can hand over its reply's fragments as they arrive.

    ``stream`` says whether it streams at all (a plan can turn streaming off); when it does,
    the work plane passes ``on_delta`` and logs the fragments (see
    :mod:`agentctl.services.deltas`). The returned reply is whole either way.
    """

    stream: bool

    async def chat(self, request: ChatRequest, on_delta: OnDelta | None = None) -> ChatReply:
        """Answer ``request``, calling ``on_delta`` with each fragment when streaming."""
        ...
