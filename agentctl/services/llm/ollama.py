"""The Ollama provider: ``POST {host}/api/chat``, plain or NDJSON streaming.

Built by :func:`agentctl.services.llm.config.provider_from_config` (or directly) and
called by the work plane through the :class:`~agentctl.services.llm.base.Provider`
protocol. What it shares with the OpenAI-compatible provider is in
:mod:`agentctl.services.llm.http_provider`; retries and error wording in
:mod:`agentctl.services.llm.http`, the host pool in :mod:`agentctl.services.llm.hosts`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import msgspec

from agentctl.errors import LLMError
from agentctl.frozen import thaw
from agentctl.services.llm.base import ChatReply, ChatRequest, OnDelta, ToolCall
from agentctl.services.llm.hosts import normalize_hosts
from agentctl.services.llm.http import PooledHTTP, quote
from agentctl.services.llm.http_provider import (
    HTTPProvider,
    StreamReader,
    WireChunk,
    decode_chunk,
)
from agentctl.services.llm.wire import ToolNames, decode_arguments, function_tools, text_content

__all__ = ["OllamaProvider", "to_ollama_messages"]

# Request options Ollama takes at the top level of the body rather than in ``options``.
_TOP_LEVEL = frozenset({"format", "keep_alive", "think"})
_RENAMED = {"max_tokens": "num_predict"}


class OllamaProvider(HTTPProvider):
    """Chat with one or more Ollama servers.

    Args:
        hosts: base URLs (``http://host:11434``), a list or a comma-separated string.
        model: model used when a request names none.
        timeout: seconds allowed for connecting and between bytes of the reply.
        retries: extra attempts after the first on connection errors, timeouts, 429, 5xx.
        backoff: base seconds of the exponential backoff (full jitter).
        stream: ask for NDJSON streaming (the reply's fragments reach ``chat``'s
            ``on_delta`` as they arrive; keeps long generations from hitting proxies' idle
            timeouts).
        keep_alive: how long Ollama keeps the model loaded (``"5m"``, ``"-1"``).
        think: turn a thinking model's reasoning on or off; None leaves Ollama's default.
        transport: an httpx transport to send through instead of the network (tests).
        cooldown: seconds a host that refused a connection is skipped.
        http2: speak HTTP/2 where a TLS server offers it (see :class:`PooledHTTP`).
    """

    name = "ollama"
    path = "/api/chat"

    def __init__(
        self,
        hosts: Sequence[str] | str = "http://localhost:11434",
        *,
        model: str | None = None,
        timeout: float = 300.0,
        retries: int = 3,
        backoff: float = 0.5,
        stream: bool = False,
        keep_alive: str | None = None,
        think: bool | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        cooldown: float = 30.0,
        http2: bool = False,
    ) -> None:
        super().__init__(
            PooledHTTP(normalize_hosts(hosts, default_port=11434), timeout=timeout, retries=retries, backoff=backoff,
                       cooldown=cooldown, transport=transport, http2=http2),
            model, stream,
        )
        self.keep_alive = keep_alive
        self.think = think

    def __repr__(self) -> str:
        return f"OllamaProvider(hosts={self.http.pool.hosts!r}, model={self.model!r})"

    def _body(self, model: str, request: ChatRequest, names: ToolNames) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "messages": to_ollama_messages(request.messages, names),
            "stream": self.stream,
        }
        if request.tools:
            body["tools"] = function_tools(request.tools, names)
        if self.think is not None:
            body["think"] = self.think
        if self.keep_alive is not None:
            body["keep_alive"] = self.keep_alive
        options: dict[str, Any] = {}
        for key, value in request.options.items():
            if key in _TOP_LEVEL:
                body[key] = thaw(value)
            else:
                options[_RENAMED.get(key, key)] = thaw(value)
        if options:
            body["options"] = options
        return body

    def _parse_reply(self, data: Mapping[str, Any], names: ToolNames, model: str) -> ChatReply:
        return _parse_reply(data, names, model)

    def _stream_reader(self, names: ToolNames, model: str, on_delta: OnDelta | None) -> StreamReader:
        return _NDJSONReader(names, model, on_delta)


def to_ollama_messages(messages: Sequence[Mapping[str, Any]], names: ToolNames) -> list[dict[str, Any]]:
    """agentctl conversation messages in Ollama's wire format."""
    out: list[dict[str, Any]] = []
    for m in messages:
        msg: dict[str, Any] = {"role": m.get("role", "user"), "content": text_content(m.get("content"))}
        if msg["role"] == "assistant" and m.get("tool_calls"):
            msg["tool_calls"] = [
                {"function": {"name": names.to_wire(c["name"]), "arguments": thaw(c.get("arguments") or {})}}
                for c in m["tool_calls"]
            ]
        if msg["role"] == "tool" and m.get("name"):
            msg["tool_name"] = names.to_wire(m["name"])
        if m.get("images"):
            msg["images"] = list(m["images"])
        out.append(msg)
    return out


def _tool_calls(raw: Any, names: ToolNames) -> list[ToolCall]:
    calls: list[ToolCall] = []
    for item in raw or ():
        fn = item.get("function") or {}
        if not fn.get("name"):
            raise LLMError(f"malformed tool call without a name: {quote(json.dumps(item))}")
        arguments, error = decode_arguments(fn.get("arguments"))
        call_id = item.get("id") or f"call_{uuid.uuid4().hex[:12]}"
        calls.append(ToolCall(id=call_id, name=names.from_wire(fn["name"]), arguments=arguments, error=error))
    return calls


def _parse_reply(data: Mapping[str, Any], names: ToolNames, model: str) -> ChatReply:
    message = data.get("message")
    if not isinstance(message, Mapping):
        raise LLMError(f"malformed reply, no message: {quote(json.dumps(data))}")
    return ChatReply(
        content=message.get("content") or "",
        tool_calls=tuple(_tool_calls(message.get("tool_calls"), names)),
        prompt_tokens=int(data.get("prompt_eval_count") or 0),
        completion_tokens=int(data.get("eval_count") or 0),
        model=data.get("model") or model,
    )


class _Message(msgspec.Struct):
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class _Chunk(WireChunk):
    """What the reader uses of a streamed chunk."""

    message: _Message | None = None
    done: Any = None
    model: str | None = None
    prompt_eval_count: Any = None
    eval_count: Any = None


_DECODER = msgspec.json.Decoder(_Chunk)


class _NDJSONReader:
    """A streamed reply from its NDJSON chunks, until the one with ``done: true``; what each
    read adds goes to ``on_delta`` once."""

    __slots__ = ("_calls", "_content", "_last", "_model", "_names", "_on_delta", "done")

    def __init__(self, names: ToolNames, model: str, on_delta: OnDelta | None) -> None:
        self._names, self._model, self._on_delta = names, model, on_delta
        self._content: list[str] = []
        self._calls: list[ToolCall] = []
        self._last = _Chunk()
        self.done = False

    def feed(self, lines: list[bytes]) -> None:
        # One loop per read, not a call per line, and one on_delta per read, not per fragment.
        content = self._content
        start = len(content)
        tools: list[str] = []
        for line in lines:
            if not line or line.isspace():
                continue
            chunk = decode_chunk(_DECODER, line)
            message = chunk.message
            if message is not None:
                if message.content:
                    content.append(message.content)
                if message.tool_calls:
                    # Ollama sends each tool call whole, in one chunk. Only the names stream, as from
                    # the OpenAI provider: the arguments are logged, redacted, by tool/requested.
                    new = _tool_calls(message.tool_calls, self._names)
                    self._calls.extend(new)
                    tools.extend(f"{c.name}\n" for c in new)
            if chunk.done:
                self._last, self.done = chunk, True
                break
        if self._on_delta is not None and (len(content) > start or tools):
            self._on_delta("".join(content[start:]), "".join(tools))

    def reply(self) -> ChatReply:
        if not self.done:
            raise LLMError("stream ended before a chunk with done: true")
        last = self._last
        return ChatReply(
            content="".join(self._content),
            tool_calls=tuple(self._calls),
            prompt_tokens=int(last.prompt_eval_count or 0),
            completion_tokens=int(last.eval_count or 0),
            model=last.model or self._model,
        )
