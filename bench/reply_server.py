"""A keep-alive HTTP/1.1 server that answers every request with one fixed JSON body.

Used by the LLM pool benches (:mod:`bench.llm_pool`, :mod:`bench.llm_stream`, as the model
server; the streaming one reads requests with :func:`requests`) and by
``tests/test_llm_http_client.py`` (keep-alive, the pool's bound, a proxy): both need a
server that reads each request whole (head and ``content-length`` body), waits a set
delay, and answers on the same connection until the client closes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import anyio
import anyio.abc

__all__ = ["requests", "serve_replies"]


async def requests(stream: anyio.abc.ByteStream) -> AsyncIterator[tuple[bytes, bytes]]:
    """Each request on ``stream``, read whole: its head (request line and headers) and its
    body, until the client closes the connection."""
    buffer = b""
    while True:
        try:
            while b"\r\n\r\n" not in buffer:
                buffer += await stream.receive()
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length")), 0)
            while len(buffer) < length:
                buffer += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return  # the client closed the connection
        body, buffer = buffer[:length], buffer[length:]
        yield head, body


async def serve_replies(stream: anyio.abc.ByteStream, body: bytes, delay: float,
                        on_request: Callable[[bytes], object] | None = None) -> None:
    """Answer each request on ``stream`` with ``body`` (``200``, JSON), ``delay`` seconds
    after it is in, until the client closes the connection; ``on_request`` gets each
    request's head (request line and headers). A failed answer raises."""
    reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    async with stream:
        async for head, _ in requests(stream):
            if on_request is not None:
                on_request(head)
            await anyio.sleep(delay)
            await stream.send(reply)
