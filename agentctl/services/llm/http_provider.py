"""What the Ollama and OpenAI-compatible providers share: the pooled client, the model, and
reading a reply whole or streamed.

:class:`HTTPProvider` is the base of :class:`~agentctl.services.llm.ollama.OllamaProvider`
and :class:`~agentctl.services.llm.openai.OpenAIProvider`, which give the path and the wire
format; :func:`json_object` decodes a reply body or one streamed chunk.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from agentctl.errors import LLMError
from agentctl.services.llm.base import ChatReply, ChatRequest, OnDelta
from agentctl.services.llm.http import HTTPStatistics, PooledHTTP, excerpt
from agentctl.services.llm.wire import ToolNames

__all__ = ["HTTPProvider", "json_object"]


def json_object(data: str | bytes) -> dict[str, Any]:
    """A reply body as a JSON object, or ``LLMError`` (not JSON, not an object, an error)."""
    try:
        value = json.loads(data)
    except ValueError:
        raise LLMError(f"malformed reply, not JSON: {excerpt(_text(data))}") from None
    if not isinstance(value, dict):
        raise LLMError(f"malformed reply, not a JSON object: {excerpt(_text(data))}")
    if value.get("error"):
        error = value["error"]
        detail = error.get("message", error) if isinstance(error, Mapping) else error
        raise LLMError(f"server error: {excerpt(str(detail))}")
    return value


def _text(data: str | bytes) -> str:
    return data if isinstance(data, str) else data.decode("utf-8", "replace")


class HTTPProvider:
    """What the Ollama and OpenAI providers share: the model to use, the pooled client, and
    reading a reply whole or streamed. Subclasses give ``name``, ``path`` and the wire format
    (``_body``, ``_parse_reply``, ``_read_stream``)."""

    name: str
    path: str

    def __init__(self, http: PooledHTTP, model: str | None, stream: bool) -> None:
        self.http = http
        self.model = model
        self.stream = stream

    async def chat(self, request: ChatRequest, on_delta: OnDelta | None = None) -> ChatReply:
        """Send ``request`` and decode the reply; when streaming, hand each fragment to ``on_delta``.

        Raises:
            LLMError: no model, every attempt failed, or the reply is unusable.
        """
        model = request.model or self.model
        if not model:
            raise LLMError(f"{self.name}: no model given (set it on the request or the provider)")
        names = ToolNames(t.name for t in request.tools)
        body = self._body(model, request, names)

        async def read(response: httpx.Response) -> ChatReply:
            if self.stream:
                return await self._read_stream(response, names, model, on_delta)
            return self._parse_reply(json_object(await response.aread()), names, model)

        return await self.http.post(self.path, body, read, timeout=request.timeout)

    def _body(self, model: str, request: ChatRequest, names: ToolNames) -> dict[str, Any]:
        raise NotImplementedError

    def _parse_reply(self, data: Mapping[str, Any], names: ToolNames, model: str) -> ChatReply:
        raise NotImplementedError

    async def _read_stream(self, response: httpx.Response, names: ToolNames, model: str,
                           on_delta: OnDelta | None) -> ChatReply:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.http.aclose()

    def statistics(self) -> HTTPStatistics:
        """Requests, retries, failures and per-host state."""
        return self.http.statistics()
