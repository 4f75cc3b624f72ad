"""How the HTTP LLM providers' requests get on the wire: :func:`default_transport`.

:class:`HTTP11Transport` is a lean HTTP/1.1 transport for httpx (keep-alive connections on
anyio, framed by h11) that :class:`~agentctl.services.llm.http.PooledHTTP` sends through
in place of an ``httpx.AsyncClient``, whose default transport (httpcore) cost about 1 ms
of CPU per request on a 2-core machine, most of it in ways that do not depend on the
reply: per request it scans every pooled connection (a ``getpeername`` and a ``poll``
system call for each idle one), retries a failed ``import sniffio`` several times, and
writes the head and the body separately with an event-loop turn between them, so the
server's clock starts late. Here a request is one write, and a free connection is popped
off a per-origin stack after one check that the server has not closed it.

What it leaves out: proxies (:func:`default_transport` keeps httpx's client where the
environment names one), HTTP/2, and a cap on connections (the work plane's LLM pool
already bounds how many calls run at once).
"""

from __future__ import annotations

import select
import socket
import ssl
import time
import urllib.request
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import anyio
import anyio.abc
import h11
import httpx

__all__ = ["HTTP11Transport", "default_transport"]

_READ_SIZE = 65536
_Origin = tuple[str, str, int]


@dataclass(frozen=True, slots=True)
class _Idle:
    """A connection waiting for its next request, and since when."""

    connection: _Connection
    since: float


class _Connection:
    """One keep-alive connection: an anyio byte stream and the h11 state machine over it."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        # Looked up once: anyio builds every socket attribute (a getpeername call among them) per lookup.
        self.socket = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        self.h11 = h11.Connection(h11.CLIENT)

    def closed_by_server(self) -> bool:
        """Whether the idle connection has something to read: only EOF can come unasked."""
        return _readable(self.socket)

    async def send(self, request: httpx.Request, body: bytes, timeout: float | None) -> None:
        """The whole request in one write (see the module docstring)."""
        data = self.h11.send(h11.Request(method=request.method, target=request.url.raw_path, headers=request.headers.raw))
        if body:
            data += self.h11.send(h11.Data(data=body))
        data += self.h11.send(h11.EndOfMessage())
        with anyio.fail_after(timeout):
            await self.stream.send(data)

    async def next_event(self, timeout: float | None) -> h11.Event:
        """The next response event, reading as much as it needs (``timeout`` per read)."""
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            with anyio.fail_after(timeout):
                try:
                    data = await self.stream.receive(_READ_SIZE)
                except anyio.EndOfStream:
                    if self.h11.their_state is h11.SEND_RESPONSE:
                        raise h11.RemoteProtocolError("server disconnected without sending a response") from None
                    data = b""
            self.h11.receive_data(data)

    async def response_head(self, timeout: float | None) -> h11.Response:
        """The final response's status line and headers (informational ones skipped)."""
        while True:
            event = await self.next_event(timeout)
            if isinstance(event, h11.Response):
                return event

    def reusable(self) -> bool:
        """After a whole exchange: whether both sides left the connection open; if so, reset it."""
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            return True
        return False

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await self.stream.aclose()


class _Body(httpx.AsyncByteStream):
    """A response body read off its connection, which goes back to the pool once it is all read."""

    def __init__(self, transport: HTTP11Transport, origin: _Origin, connection: _Connection, request: httpx.Request,
                 timeout: float | None) -> None:
        self._transport = transport
        self._origin = origin
        self._connection: _Connection | None = connection
        self._request = request
        self._timeout = timeout
        self._complete = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None:
            raise httpx.StreamClosed()
        with _mapped(self._request, httpx.ReadTimeout, httpx.ReadError):
            while True:
                event = await connection.next_event(self._timeout)
                if isinstance(event, h11.Data):
                    yield bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    self._complete = True
                    return

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._complete and connection.reusable():
            await self._transport._release(self._origin, connection)
        else:
            await connection.aclose()


class HTTP11Transport(httpx.AsyncBaseTransport):
    """Sends httpx requests over pooled HTTP/1.1 keep-alive connections, one request at a time each.

    Args:
        keepalive_expiry: seconds an idle connection is kept (as httpx's default, 5 s:
            closing it before a typical server's own keep-alive timeout avoids writing
            to a connection the server is closing).
        ssl_context: for ``https``; default httpx's (certifi, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``).
    """

    def __init__(self, *, keepalive_expiry: float = 5.0, ssl_context: ssl.SSLContext | None = None) -> None:
        self.keepalive_expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._idle: dict[_Origin, deque[_Idle]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and return the response with its body still to be read."""
        timeouts = request.extensions.get("timeout", {})
        url = request.url
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        body = await request.aread()
        connection = await self._connection(request, origin, timeouts.get("connect"))
        try:
            with _mapped(request, httpx.WriteTimeout, httpx.WriteError):
                await connection.send(request, body, timeouts.get("write"))
            with _mapped(request, httpx.ReadTimeout, httpx.ReadError):
                head = await connection.response_head(timeouts.get("read"))
        except BaseException:
            await connection.aclose()
            raise
        return httpx.Response(
            head.status_code,
            headers=head.headers.raw_items(),
            stream=_Body(self, origin, connection, request, timeouts.get("read")),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": head.reason},
        )

    async def _connection(self, request: httpx.Request, origin: _Origin, timeout: float | None) -> _Connection:
        """The most recently used idle connection to ``origin`` still open and not expired, or a new one."""
        idle = self._idle.get(origin)
        fresh = time.monotonic() - self.keepalive_expiry
        while idle:
            entry = idle.pop()
            if entry.since >= fresh and not entry.connection.closed_by_server():
                return entry.connection
            await entry.connection.aclose()
        scheme, host, port = origin
        tls = scheme == "https"
        with _mapped(request, httpx.ConnectTimeout, httpx.ConnectError), anyio.fail_after(timeout):
            stream = await anyio.connect_tcp(
                host, port, ssl_context=self._tls_context() if tls else None, tls_standard_compatible=False
            )
        return _Connection(stream)

    def _tls_context(self) -> ssl.SSLContext:
        # Made on first use: loading the CA bundle takes milliseconds a plain-HTTP server never needs.
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()
        return self._ssl_context

    async def _release(self, origin: _Origin, connection: _Connection) -> None:
        """Put ``connection`` back, closing the ones idle for longer than ``keepalive_expiry``."""
        now = time.monotonic()
        idle = self._idle.setdefault(origin, deque())
        idle.append(_Idle(connection, now))
        while idle[0].since < now - self.keepalive_expiry:
            await idle.popleft().connection.aclose()

    async def aclose(self) -> None:
        """Close every idle connection."""
        idle, self._idle = self._idle, {}
        for stack in idle.values():
            for entry in stack:
                await entry.connection.aclose()


class _ClientTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncClient`` as a transport: it picks the proxy for each URL (and honours ``NO_PROXY``)."""

    def __init__(self) -> None:
        self._client = httpx.AsyncClient()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the proxy the environment names for it, if any."""
        return await self._client.send(request, stream=True)

    async def aclose(self) -> None:
        """Close the client."""
        await self._client.aclose()


def default_transport() -> httpx.AsyncBaseTransport:
    """:class:`HTTP11Transport`, or where the environment names a proxy httpx's client, which
    alone speaks to proxies."""
    return _ClientTransport() if urllib.request.getproxies() else HTTP11Transport()


def _readable(sock: socket.socket) -> bool:
    if not hasattr(select, "poll"):  # Windows
        return bool(select.select([sock], [], [], 0)[0])
    # poll, not select: select() cannot watch a descriptor numbered 1024 or above.
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


@contextmanager
def _mapped(request: httpx.Request, timeout: type[httpx.TimeoutException], failure: type[httpx.TransportError]) -> Iterator[None]:
    """Network and protocol errors as the httpx exceptions callers of a transport expect."""
    try:
        yield
    except TimeoutError as exc:
        raise timeout(str(exc) or "timed out", request=request) from exc
    except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream) as exc:
        raise failure(str(exc) or type(exc).__name__, request=request) from exc
    except h11.RemoteProtocolError as exc:
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc
    except h11.LocalProtocolError as exc:
        raise httpx.LocalProtocolError(str(exc), request=request) from exc
