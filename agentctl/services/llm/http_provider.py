"""What the Ollama and OpenAI-compatible providers share: the pooled client, the model, and
reading a reply whole or streamed.

:class:`HTTPProvider` is the base of :class:`~agentctl.services.llm.ollama.OllamaProvider`
and :class:`~agentctl.services.llm.openai.OpenAIProvider`, which give the path and the wire
format (a :class:`StreamReader` per streamed reply); :func:`json_object` decodes a reply
body or one streamed chunk.

A streamed body is read as raw chunks, cut into lines here (:class:`Lines`) and handed to
the wire format's reader line by line: httpx's ``aiter_lines`` decodes every chunk to text
and back through two more generators, which was most of what a streamed call cost over a
plain one. Once the reader has seen the format's last chunk, the rest of the body (the
chunked encoding's end, usually in the same read) is drained briefly so that the
connection goes back to the pool: closing a response read only part way closes its
connection, and the next call paid for a new one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol, TypeVar

import anyio
import httpx
import msgspec
import orjson

from agentctl.errors import LLMError
from agentctl.services.llm.base import ChatReply, ChatRequest, OnDelta
from agentctl.services.llm.http import HTTPStatistics, PooledHTTP, quote
from agentctl.services.llm.wire import ToolNames

__all__ = ["HTTPProvider", "Lines", "StreamReader", "WireChunk", "decode_chunk", "json_object"]

#: Seconds, and bytes, a streamed body is read on for after its last chunk, to keep its
#: connection (a server that sends more, or nothing, loses the connection, not the reply).
DRAIN_SECONDS = 0.5
DRAIN_BYTES = 65536
_LINE_ENDS = b"\n\r"


def json_object(data: str | bytes) -> dict[str, Any]:
    """A reply body as a JSON object, or ``LLMError`` (not JSON, not an object, an error)."""
    try:
        value = orjson.loads(data)
    except ValueError:
        raise LLMError(f"malformed reply, not JSON: {quote(_text(data))}") from None
    if not isinstance(value, dict):
        raise LLMError(f"malformed reply, not a JSON object: {quote(_text(data))}")
    if value.get("error"):
        error = value["error"]
        detail = error.get("message", error) if isinstance(error, Mapping) else error
        raise LLMError(f"server error: {quote(str(detail))}")
    return value


class WireChunk(msgspec.Struct):
    """The base of a wire format's streamed chunk: the fields a reader uses, typed as loosely
    as the format allows (what is not named is skipped unread)."""

    error: Any = None


C = TypeVar("C", bound=WireChunk)


def decode_chunk(decoder: msgspec.json.Decoder[C], data: bytes) -> C:
    """One streamed chunk through its format's schema, or ``LLMError`` saying what is wrong:
    not JSON, not an object, a server's error, or where it differs from the schema.

    Typed decoding skips the fields a reader does not use and says where a chunk differs
    from the schema; it parses about as fast as orjson's dicts (bench/RESULTS.md).
    """
    try:
        chunk = decoder.decode(data)
    except msgspec.DecodeError as exc:  # ValidationError included
        json_object(data)  # not JSON, not an object, an error: says so
        raise LLMError(f"malformed reply ({exc}): {quote(_text(data))}") from None
    if chunk.error:  # an "error": null passes
        json_object(data)
    return chunk


def _text(data: str | bytes) -> str:
    return data if isinstance(data, str) else data.decode("utf-8", "replace")


class Lines:
    """Cuts a body that arrives in chunks into its lines (bytes, without their ends).

    A line ends at ``\n``, ``\r\n`` or ``\r`` (as SSE allows). Empty lines (SSE's event
    separators, or the ``\n`` of a ``\r\n`` split between two chunks) may be among them:
    the readers skip them, which costs less than leaving them out here. Splitting bytes is
    safe for UTF-8: no byte of a multi-byte character is a line end.
    """

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []  # a line begun in earlier chunks

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines ``chunk`` completes."""
        if self._parts:
            self._parts.append(chunk)
            if b"\n" not in chunk and b"\r" not in chunk:
                return []  # kept as pieces: a long line is joined once, not once per chunk
            chunk = b"".join(self._parts)
            self._parts.clear()
        lines = chunk.splitlines()
        if lines and chunk[-1] not in _LINE_ENDS:  # an int in bytes: no call, unlike endswith
            self._parts.append(lines.pop())
        return lines

    def end(self) -> list[bytes]:
        """The last line, if the body did not end with a line end."""
        rest = b"".join(self._parts)
        self._parts.clear()
        return [rest] if rest else []


class StreamReader(Protocol):
    """One streamed reply being assembled from its lines (one per wire format)."""

    #: Set once the format's last chunk has come: what follows it is not read.
    done: bool

    def feed(self, lines: list[bytes]) -> None:
        """Take the lines of one read of the body (some may be empty) and hand what they add
        to ``on_delta`` in one call; raise ``LLMError`` for a line that cannot be used."""
        ...

    def reply(self) -> ChatReply:
        """The whole reply, once the body has ended; ``LLMError`` if it ended too early."""
        ...


async def read_stream(response: httpx.Response, reader: StreamReader) -> ChatReply:
    """Feed ``response``'s body to ``reader`` line by line and return its reply."""
    lines = Lines()
    # The body as the transport hands it over, unless the server compressed it: aiter_raw
    # adds a generator step per chunk, aiter_bytes's decoder another.
    body = response.stream
    if isinstance(body, httpx.AsyncByteStream) and "content-encoding" not in response.headers:
        chunks: AsyncIterator[bytes] = aiter(body)
    else:
        chunks = response.aiter_bytes()
    async for chunk in chunks:
        reader.feed(lines.feed(chunk))
        if reader.done:  # what follows the format's last chunk is not read
            await _drain(chunks)
            return reader.reply()
    reader.feed(lines.end())
    return reader.reply()


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    left = DRAIN_BYTES
    with anyio.move_on_after(DRAIN_SECONDS):
        async for rest in chunks:
            left -= len(rest)
            if left < 0:
                return


class HTTPProvider:
    """What the Ollama and OpenAI providers share: the model to use, the pooled client, and
    reading a reply whole or streamed. Subclasses give ``name``, ``path`` and the wire format
    (``_body``, ``_parse_reply``, ``_stream_reader``)."""

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
                return await read_stream(response, self._stream_reader(names, model, on_delta))
            return self._parse_reply(json_object(await response.aread()), names, model)

        return await self.http.post(self.path, body, read, timeout=request.timeout)

    def _body(self, model: str, request: ChatRequest, names: ToolNames) -> dict[str, Any]:
        raise NotImplementedError

    def _parse_reply(self, data: Mapping[str, Any], names: ToolNames, model: str) -> ChatReply:
        raise NotImplementedError

    def _stream_reader(self, names: ToolNames, model: str, on_delta: OnDelta | None) -> StreamReader:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.http.aclose()

    def statistics(self) -> HTTPStatistics:
        """Requests, retries, failures and per-host state."""
        return self.http.statistics()
