"""A deterministic LLM provider that answers from a script.

Used by tests, benchmarks and demo plans (provider ``scripted``) through the work plane,
like any other :class:`~agentctl.services.llm.base.Provider`. Replies come from a list,
in order, or from a function called per request. Tokens are counted as
whitespace-separated words, so token budgets can be tested without a model.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Union

import anyio

from ...errors import UsageError
from .base import ChatReply, ChatRequest, OnDelta

__all__ = ["ScriptedProvider", "ScriptedStatistics", "count_words"]

Reply = Union[ChatReply, str, BaseException, Callable[[ChatRequest], Any]]


@dataclass(frozen=True, slots=True)
class ScriptedStatistics:
    """Calls answered so far and replies left in the script (``None`` for a function)."""

    calls: int
    remaining: int | None


def count_words(text: Any) -> int:
    """Whitespace-separated words in ``text`` (non-strings are stringified; ``None`` is 0)."""
    if text is None:
        return 0
    return len((text if isinstance(text, str) else str(text)).split())


def _prompt_words(messages: Sequence[Mapping[str, Any]]) -> int:
    return sum(count_words(m.get("content")) for m in messages)


class ScriptedProvider:
    """Answers chat requests from ``replies``.

    Args:
        replies: a sequence whose items are a ``ChatReply``, a ``str`` (becomes the
            reply's content), an exception instance (raised, to test errors) or a
            function of the request returning one of those (may be async); or a single
            such function used for every request. Once a sequence is used up, every
            further request gets ``ChatReply(content="done")``.
        name: the provider's name in events.
        latency: seconds to sleep before each answer.
        stream: hand the reply's text to ``chat``'s ``on_delta`` word by word before
            returning it, as a streaming server would.
    """

    def __init__(
        self,
        replies: Sequence[Reply] | Callable[[ChatRequest], Any],
        *,
        name: str = "scripted",
        latency: float = 0.0,
        stream: bool = False,
    ) -> None:
        self.name = name
        self.latency = latency
        self.stream = stream
        self._fn = replies if callable(replies) and not isinstance(replies, Sequence) else None
        self._replies: list[Reply] = [] if self._fn is not None else list(replies)  # type: ignore[arg-type]
        self._next = 0
        self.requests: list[ChatRequest] = []

    async def chat(self, request: ChatRequest, on_delta: OnDelta | None = None) -> ChatReply:
        """The next scripted reply, with word-count tokens filled in where unset."""
        self.requests.append(request)
        if self.latency > 0:
            await anyio.sleep(self.latency)
        item = await self._resolve(self._take(), request)
        if isinstance(item, BaseException):
            raise item
        reply = ChatReply(content=item) if isinstance(item, str) else item
        if not isinstance(reply, ChatReply):
            raise UsageError(f"scripted reply must be a ChatReply or str, got {type(reply).__name__}")
        if self.stream and on_delta is not None:
            for word in re.findall(r"\s*\S+|\s+$", reply.content):
                on_delta(word, "")
        return replace(
            reply,
            prompt_tokens=reply.prompt_tokens or _prompt_words(request.messages),
            completion_tokens=reply.completion_tokens or count_words(reply.content),
            model=reply.model or request.model,
        )

    def _take(self) -> Reply:
        if self._fn is not None:
            return self._fn
        if self._next >= len(self._replies):
            return ChatReply(content="done")
        item = self._replies[self._next]
        self._next += 1
        return item

    @staticmethod
    async def _resolve(item: Reply, request: ChatRequest) -> Any:
        if isinstance(item, (ChatReply, str, BaseException)):
            return item
        out = item(request)
        if inspect.isawaitable(out):
            out = await out
        return out

    def statistics(self) -> ScriptedStatistics:
        """Calls so far and replies left."""
        remaining = None if self._fn is not None else max(0, len(self._replies) - self._next)
        return ScriptedStatistics(calls=len(self.requests), remaining=remaining)

    async def aclose(self) -> None:
        """Nothing to release."""
