"""The OpenAI-compatible provider: ``POST {base}/chat/completions``, plain or SSE streaming.

Speaks to OpenAI and to the many servers that copy its API (llama.cpp's server, vLLM,
LM Studio, ...). Built by :func:`agentctl.services.llm.config.provider_from_config` (or
directly) and called by the work plane through the
:class:`~agentctl.services.llm.base.Provider` protocol. What it shares with the Ollama
provider is in :mod:`agentctl.services.llm.http_provider`; retries and error wording in
:mod:`agentctl.services.llm.http`, the host pool in :mod:`agentctl.services.llm.hosts`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec

from agentctl.errors import LLMError
from agentctl.frozen import thaw
from agentctl.services.llm.base import ChatReply, ChatRequest, OnDelta, ToolCall
from agentctl.services.llm.hosts import normalize_hosts
from agentctl.services.llm.http import PooledHTTP, quote
from agentctl.services.llm.http_provider import HTTPProvider, StreamReader, WireChunk, decode_chunk
from agentctl.services.llm.wire import ToolNames, decode_arguments, function_tools, text_content

__all__ = ["OpenAIProvider", "to_openai_messages"]

_RESERVED = frozenset({"model", "messages", "tools", "stream", "stream_options"})


class OpenAIProvider(HTTPProvider):
    """Chat with an OpenAI-compatible API at one or more base URLs.

    Args:
        base_urls: base URLs ending in the API version (``http://host:8000/v1``), a list
            or a comma-separated string.
        api_key: sent as ``Authorization: Bearer``; never appears in errors or repr.
        model: model used when a request names none.
        timeout: seconds allowed for connecting and between bytes of the reply.
        retries: extra attempts after the first on connection errors, timeouts, 429, 5xx.
        backoff: base seconds of the exponential backoff (full jitter).
        stream: ask for SSE streaming (with usage in the last chunk); the reply's fragments
            reach ``chat``'s ``on_delta`` as they arrive.
        transport: an httpx transport to send through instead of the network (tests).
        cooldown: seconds a host that refused a connection is skipped.
        http2: speak HTTP/2 where a TLS server offers it (see :class:`PooledHTTP`).
    """

    name = "openai"
    path = "/chat/completions"

    def __init__(
        self,
        base_urls: Sequence[str] | str = "http://localhost:8000/v1",
        *,
        api_key: str | None = None,
        model: str | None = None,
        timeout: float = 300.0,
        retries: int = 3,
        backoff: float = 0.5,
        stream: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
        cooldown: float = 30.0,
        http2: bool = False,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        super().__init__(
            PooledHTTP(normalize_hosts(base_urls), timeout=timeout, retries=retries, backoff=backoff, cooldown=cooldown,
                       headers=headers, secrets=(api_key,) if api_key else (), transport=transport, http2=http2),
            model, stream,
        )

    def __repr__(self) -> str:
        return f"OpenAIProvider(base_urls={self.http.pool.hosts!r}, model={self.model!r})"

    def _body(self, model: str, request: ChatRequest, names: ToolNames) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "messages": to_openai_messages(request.messages, names)}
        if request.tools:
            body["tools"] = function_tools(request.tools, names)
            # "auto" is OpenAI's default, but llama-cpp-python's server leaves the tools out
            # of the prompt unless the request names a choice: say it (an option overrides).
            body["tool_choice"] = "auto"
        # Options are extra top-level fields (temperature, max_tokens, seed, ...).
        body.update({k: thaw(v) for k, v in request.options.items() if k not in _RESERVED})
        body["stream"] = self.stream
        if self.stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def _parse_reply(self, data: Mapping[str, Any], names: ToolNames, model: str) -> ChatReply:
        return _parse_reply(data, names, model)

    def _stream_reader(self, names: ToolNames, model: str, on_delta: OnDelta | None) -> StreamReader:
        return _SSEReader(names, model, on_delta)


def to_openai_messages(messages: Sequence[Mapping[str, Any]], names: ToolNames) -> list[dict[str, Any]]:
    """agentctl conversation messages in OpenAI's wire format."""
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role", "user")
        msg: dict[str, Any] = {"role": role, "content": text_content(m.get("content"))}
        if role == "assistant" and m.get("tool_calls"):
            # content must be "" and not null: llama.cpp's server answers HTTP 500 to null.
            msg["tool_calls"] = [
                {
                    "id": c.get("id") or f"call_{i}",
                    "type": "function",
                    "function": {"name": names.to_wire(c["name"]), "arguments": json.dumps(thaw(c.get("arguments") or {}))},
                }
                for i, c in enumerate(m["tool_calls"])
            ]
        if role == "tool":
            msg["tool_call_id"] = m.get("tool_call_id") or ""
        out.append(msg)
    return out


def _call(call_id: str | None, name: str | None, arguments: Any, names: ToolNames) -> ToolCall:
    if not name:
        raise LLMError("malformed tool call without a function name")
    decoded, error = decode_arguments(arguments)
    return ToolCall(id=call_id or f"call_{uuid.uuid4().hex[:12]}", name=names.from_wire(name), arguments=decoded, error=error)


def _parse_reply(data: Mapping[str, Any], names: ToolNames, model: str) -> ChatReply:
    choices = data.get("choices")
    if not choices or not isinstance(choices[0].get("message"), Mapping):
        raise LLMError(f"malformed reply, no choices[0].message: {quote(json.dumps(data))}")
    message = choices[0]["message"]
    calls = [
        _call(c.get("id"), (c.get("function") or {}).get("name"), (c.get("function") or {}).get("arguments"), names)
        for c in message.get("tool_calls") or ()
    ]
    usage = data.get("usage") or {}
    return ChatReply(
        content=message.get("content") or "",
        tool_calls=tuple(calls),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        model=data.get("model") or model,
    )


@dataclass(slots=True)
class _PartialCall:
    """A streamed tool call being assembled from its fragments."""

    id: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class _Delta(msgspec.Struct):
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    finish_reason: Any = None


class _Chunk(WireChunk):
    """What the reader uses of a streamed chunk."""

    choices: list[_Choice] | None = None
    model: str | None = None
    usage: dict[str, Any] | None = None


_DECODER = msgspec.json.Decoder(_Chunk)


class _SSEReader:
    """A streamed reply from its ``data:`` chunks, until ``data: [DONE]`` (or a finish reason
    and the end of the body); what each read adds goes to ``on_delta`` once."""

    __slots__ = ("_chunks", "_content", "_finished", "_model", "_names", "_on_delta", "_partial", "_seen_model",
                 "_usage", "done")

    def __init__(self, names: ToolNames, model: str, on_delta: OnDelta | None) -> None:
        self._names, self._model, self._on_delta = names, model, on_delta
        self._content: list[str] = []
        self._partial: dict[int, _PartialCall] = {}
        self._usage: Mapping[str, Any] = {}
        self._seen_model: str | None = None
        self._finished = self._chunks = self.done = False

    def feed(self, lines: list[bytes]) -> None:
        # One loop per read, not a call per line, and one on_delta per read, not per fragment.
        content = self._content
        start = len(content)
        tools: list[str] = []
        for line in lines:
            if not line:
                continue  # SSE's event separators
            if not line.startswith(b"data:"):
                line = line.strip()  # an indented line is read all the same
                if not line.startswith(b"data:"):
                    continue  # ": keep-alive" comments, "event:" lines
            payload = line[5:]
            self._chunks = True
            if b"[DONE]" in payload and payload.strip() == b"[DONE]":
                self.done = True
                break
            chunk = decode_chunk(_DECODER, payload)
            if chunk.model:
                self._seen_model = chunk.model
            if chunk.usage:
                self._usage = chunk.usage
            for choice in chunk.choices or ():
                delta = choice.delta
                if delta is None:
                    continue
                if delta.content:
                    content.append(delta.content)
                if delta.tool_calls:
                    for piece in delta.tool_calls:
                        _merge(self._partial, piece)
                        tools.append(_fragment_text(piece, self._names))
                if choice.finish_reason:
                    self._finished = True
        if self._on_delta is not None:
            text, tool_text = "".join(content[start:]), "".join(tools)
            if text or tool_text:
                self._on_delta(text, tool_text)

    def reply(self) -> ChatReply:
        if not self._chunks:
            # llama-cpp-python, for one, answers 200 and an empty stream to a request it cannot stream.
            raise LLMError("the server sent an empty stream: it may not stream this request (tools?); "
                           "set stream: false for this provider")
        if not (self.done or self._finished):
            raise LLMError("stream ended without [DONE] or a finish reason")
        calls = [_call(p.id, p.name, "".join(p.arguments), self._names) for _, p in sorted(self._partial.items())]
        usage = self._usage
        return ChatReply(
            content="".join(self._content),
            tool_calls=tuple(calls),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            model=self._seen_model or self._model,
        )


def _fragment_text(piece: Mapping[str, Any], names: ToolNames) -> str:
    """A tool-call fragment as the views are shown it: a new call's name on a line, never its arguments.

    Argument pieces are partial JSON, so a value under a secret-looking key (``"token":``)
    cannot be recognised in them; the call's ``tool/requested`` logs the whole arguments,
    redacted.
    """
    fn = piece.get("function") or {}
    return f"{names.from_wire(fn['name'])}\n" if fn.get("name") else ""


def _merge(partial: dict[int, _PartialCall], piece: Mapping[str, Any]) -> None:
    """Fold one streamed tool-call fragment into the call at its ``index``."""
    index = int(piece.get("index", len(partial)))
    call = partial.setdefault(index, _PartialCall())
    call.id = piece.get("id") or call.id
    fn = piece.get("function") or {}
    # The name comes whole in the first fragment; some servers repeat it later.
    if fn.get("name") and not call.name:
        call.name = fn["name"]
    if fn.get("arguments"):
        call.arguments.append(fn["arguments"])
