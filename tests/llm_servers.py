"""Small but real HTTP/1.1 servers speaking Ollama's and OpenAI's chat protocols, for tests.

Used by ``tests/test_llm_*.py``: :func:`running_server` starts an anyio TCP listener on
127.0.0.1 (port 0) inside the test's own event loop, answers ``POST /api/chat`` in
Ollama's format and ``POST .../chat/completions`` in OpenAI's, plain or streaming
(NDJSON / SSE, sent with chunked transfer encoding), following a per-test script of
:class:`Behaviour` values, and records every request it got so tests can assert the
wire format. Run ``python tests/llm_servers.py --port 0`` for a standalone server that
prints its port and always answers "hello".
"""

from __future__ import annotations

import argparse
import gzip
import json
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}


@dataclass(frozen=True)
class Behaviour:
    """What the server does for one request.

    ``tool_calls`` are ``(wire_name, arguments)``; arguments that are a ``str`` are sent
    verbatim (so tests can send bad JSON). ``body`` replaces the whole reply body (for
    malformed replies); ``delay`` is slept before answering.

    A streamed reply is sent in pieces of ``piece`` characters, ``gap`` seconds apart; with
    ``hold`` (a ``threading.Event``, so that a test in another thread or process driver can
    set it), the server sends the first ``hold_after`` chunks and then holds the rest of the
    stream until the event is set. ``gate`` (also a ``threading.Event``) holds the whole
    answer until it is set. ``linger`` is slept after the last chunk, before the end
    of the chunked body. ``cut``, when set, sends the streamed body in transfer chunks of
    that many bytes, wherever lines end, and ``line_end`` ends each of its lines; with
    ``gzip`` the streamed body is compressed first (``Content-Encoding: gzip``). A ``body``
    with ``cut`` is sent as it is, chunked likewise (a hostile stream, byte for byte).
    """

    content: str = "hello"
    tool_calls: Sequence[tuple[str, Any]] = ()
    status: int = 200
    body: str | None = None
    delay: float = 0.0
    headers: Mapping[str, str] = field(default_factory=dict)
    prompt_tokens: int = 11
    completion_tokens: int = 5
    piece: int = 3
    gap: float = 0.0
    hold: threading.Event | None = None
    hold_after: int = 2
    gate: threading.Event | None = None
    linger: float = 0.0
    cut: int | None = None
    line_end: str = "\n"
    gzip: bool = False


@dataclass(frozen=True)
class Recorded:
    """One request the server got: lower-cased headers and the JSON body (or raw text)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: Any


class LLMServer:
    """Answers chat requests from a script; ``default`` once the script runs out.

    ``reply_for``, when set, chooses the answer from the request itself instead (for a
    conversation that a crash makes ask one question twice).

    One request per connection, unless ``keep_alive`` is set: then a connection serves
    request after request until the client closes it. ``connections`` counts those accepted.
    """

    def __init__(self) -> None:
        self.port = 0
        self.script: deque[Behaviour] = deque()
        self.default = Behaviour()
        self.requests: list[Recorded] = []
        self.reply_for: Callable[[Recorded], Behaviour] | None = None
        self.keep_alive = False
        self.connections = 0

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:43123``."""
        return f"http://127.0.0.1:{self.port}"

    def then(self, *behaviours: Behaviour) -> LLMServer:
        """Queue behaviours for the next requests, in order."""
        self.script.extend(behaviours)
        return self

    async def handle(self, stream: SocketStream) -> None:
        """Serve one connection: one request and its response, then close (or the next, with ``keep_alive``)."""
        self.connections += 1
        async with stream:
            buffered = BufferedByteReceiveStream(stream)
            while True:
                try:
                    request = await _read_request(buffered)
                except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, anyio.DelimiterNotFound):
                    return
                self.requests.append(request)
                if self.reply_for is not None:
                    behaviour = self.reply_for(request)
                else:
                    behaviour = self.script.popleft() if self.script else self.default
                while behaviour.gate is not None and not behaviour.gate.is_set():
                    await anyio.sleep(0.01)
                if behaviour.delay:
                    await anyio.sleep(behaviour.delay)
                try:
                    await self._respond(stream, request, behaviour)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return  # the client gave up (timeout): nothing to answer
                if not self.keep_alive:
                    return

    async def _respond(self, stream: SocketStream, request: Recorded, b: Behaviour) -> None:
        ollama = request.path == "/api/chat"
        if not ollama and not request.path.endswith("/chat/completions"):
            await _send(stream, 404, "application/json", json.dumps({"error": "not found"}), close=not self.keep_alive)
            return
        if b.status == 200 and b.body is not None and b.cut is not None:  # a scripted body, in transfer chunks
            await _send_chunked(stream, "text/event-stream", [b.body], b, close=not self.keep_alive)
            return
        if b.status != 200 or b.body is not None:
            text = b.body if b.body is not None else json.dumps({"error": f"scripted HTTP {b.status}"})
            await _send(stream, b.status, "application/json", text, b.headers, close=not self.keep_alive)
            return
        body = request.body if isinstance(request.body, dict) else {}
        model = body.get("model", "test-model")
        cap = (body.get("options") or {}).get("num_predict") if ollama else body.get("max_tokens")
        if isinstance(cap, int) and cap < b.completion_tokens:
            b = replace(b, completion_tokens=cap)  # as real servers do: max_tokens caps the completion
        if not body.get("stream"):
            reply = _ollama_reply(b, model) if ollama else _openai_reply(b, model)
            await _send(stream, 200, "application/json", json.dumps(reply), b.headers, close=not self.keep_alive)
            return
        end = b.line_end
        if ollama:
            chunks = [json.dumps(c) + end for c in _ollama_chunks(b, model)]
            await _send_chunked(stream, "application/x-ndjson", chunks, b, close=not self.keep_alive)
        else:
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            chunks = [f"data: {json.dumps(c)}{end}{end}" for c in _openai_chunks(b, model, usage)]
            await _send_chunked(stream, "text/event-stream", [*chunks, f"data: [DONE]{end}{end}"], b,
                                close=not self.keep_alive)


@asynccontextmanager
async def running_server() -> AsyncIterator[LLMServer]:
    """A started :class:`LLMServer`, stopped (with its handlers) on exit."""
    server = LLMServer()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    server.port = listener.extra(SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, server.handle)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()
    await listener.aclose()


def free_port() -> int:
    """A local port nothing listens on (bound then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _read_request(buffered: BufferedByteReceiveStream) -> Recorded:
    head = (await buffered.receive_until(b"\r\n\r\n", 65536)).decode("latin-1")
    request_line, *header_lines = head.split("\r\n")
    method, path, _ = request_line.split(" ", 2)
    headers = {}
    for line in header_lines:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    raw = await buffered.receive_exactly(int(headers.get("content-length", "0"))) if headers.get("content-length") else b""
    try:
        body: Any = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode("utf-8", "replace")
    return Recorded(method, path, headers, body)


async def _send(stream: SocketStream, status: int, ctype: str, body: str, headers: Mapping[str, str] = {}, *,
                close: bool = True) -> None:
    data = body.encode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + ("Connection: close\r\n" if close else "")
    head = f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\nContent-Type: {ctype}\r\nContent-Length: {len(data)}\r\n{extra}\r\n"
    await stream.send(head.encode() + data)


async def _send_chunked(stream: SocketStream, ctype: str, pieces: Sequence[str], b: Behaviour = Behaviour(), *,
                        close: bool = True) -> None:
    extra = ("Connection: close\r\n" if close else "") + ("Content-Encoding: gzip\r\n" if b.gzip else "")
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nTransfer-Encoding: chunked\r\n{extra}\r\n"
    await stream.send(head.encode())
    datas = [piece.encode() for piece in pieces]
    if b.gzip:
        datas = [gzip.compress(b"".join(datas))]
    if b.cut is not None:
        whole = b"".join(datas)
        datas = [whole[i : i + b.cut] for i in range(0, len(whole), b.cut)]
    for i, data in enumerate(datas):
        if b.hold is not None and i == b.hold_after:
            while not b.hold.is_set():
                await anyio.sleep(0.01)
        elif b.gap and i:
            await anyio.sleep(b.gap)
        await stream.send(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    if b.linger:
        await anyio.sleep(b.linger)
    await stream.send(b"0\r\n\r\n")


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _args_text(arguments: Any) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def _ollama_reply(b: Behaviour, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": b.content}
    if b.tool_calls:
        message["tool_calls"] = [{"function": {"name": n, "arguments": a}} for n, a in b.tool_calls]
    return {
        "model": model,
        "created_at": "2024-01-01T00:00:00Z",
        "message": message,
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": b.prompt_tokens,
        "eval_count": b.completion_tokens,
    }


def _ollama_chunks(b: Behaviour, model: str) -> list[dict[str, Any]]:
    chunks = [{"model": model, "message": {"role": "assistant", "content": p}, "done": False} for p in _pieces(b.content, b.piece)]
    if b.tool_calls:
        calls = [{"function": {"name": n, "arguments": a}} for n, a in b.tool_calls]
        chunks.append({"model": model, "message": {"role": "assistant", "content": "", "tool_calls": calls}, "done": False})
    final = _ollama_reply(Behaviour(content="", prompt_tokens=b.prompt_tokens, completion_tokens=b.completion_tokens), model)
    return [*chunks, final]


def _openai_reply(b: Behaviour, model: str) -> dict[str, Any]:
    # Real servers send content null next to tool calls; the client must cope.
    message: dict[str, Any] = {"role": "assistant", "content": None if b.tool_calls and not b.content else b.content}
    if b.tool_calls:
        message["tool_calls"] = [
            {"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": _args_text(a)}}
            for i, (n, a) in enumerate(b.tool_calls)
        ]
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if b.tool_calls else "stop"}],
        "usage": {"prompt_tokens": b.prompt_tokens, "completion_tokens": b.completion_tokens, "total_tokens": b.prompt_tokens + b.completion_tokens},
    }


def _openai_chunks(b: Behaviour, model: str, usage: bool) -> list[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "chatcmpl-test", "object": "chat.completion.chunk", "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": p}) for p in _pieces(b.content, b.piece)]
    for i, (name, arguments) in enumerate(b.tool_calls):
        head = {"index": i, "id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": ""}}
        chunks.append(chunk({"tool_calls": [head]}))
        chunks += [chunk({"tool_calls": [{"index": i, "function": {"arguments": p}}]}) for p in _pieces(_args_text(arguments), 4)]
    chunks.append(chunk({}, "tool_calls" if b.tool_calls else "stop"))
    if usage:
        chunks.append({"id": "chatcmpl-test", "object": "chat.completion.chunk", "model": model, "choices": [], "usage": {"prompt_tokens": b.prompt_tokens, "completion_tokens": b.completion_tokens}})
    return chunks


async def _main(port: int) -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
    server = LLMServer()
    server.port = listener.extra(SocketAttribute.local_port)
    print(server.port, flush=True)
    await listener.serve(server.handle)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    anyio.run(_main, parser.parse_args().port)
