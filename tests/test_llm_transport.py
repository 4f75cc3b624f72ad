"""HTTP11Transport against real keep-alive servers on 127.0.0.1 (plain and TLS)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSListener

from agentctl.services.llm.transport import HTTP11Transport, default_transport

pytestmark = pytest.mark.anyio

BODY = b'{"ok":true}'


class KeepAliveServer:
    """Answers every request with BODY and keeps the connection open, unless told otherwise.

    Records the connections it accepted and, per request, how many reads its head and
    body took. ``close_after`` requests on a connection it closes without saying so
    (as a server does at its keep-alive timeout); ``hang`` makes it never answer.
    """

    def __init__(self) -> None:
        self.port = 0
        self.connections = 0
        self.reads_per_request: list[int] = []
        self.close_after: int | None = None
        self.hang = False

    async def handle(self, stream: anyio.abc.ByteStream) -> None:
        self.connections += 1
        async with stream:
            served = 0
            buffer = b""
            while self.close_after is None or served < self.close_after:
                reads = 0
                try:
                    while b"\r\n\r\n" not in buffer:
                        buffer += await stream.receive()
                        reads += 1
                    head, _, buffer = buffer.partition(b"\r\n\r\n")
                    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length")), 0)
                    while len(buffer) < length:
                        buffer += await stream.receive()
                        reads += 1
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                buffer = buffer[length:]
                self.reads_per_request.append(reads)
                if self.hang:
                    await anyio.sleep_forever()
                await stream.send(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                                  % (len(BODY), BODY))
                served += 1


@asynccontextmanager
async def serving(tls: ssl.SSLContext | None = None) -> AsyncIterator[KeepAliveServer]:
    server = KeepAliveServer()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    server.port = listener.extra(SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon((TLSListener(listener, tls, standard_compatible=False) if tls else listener).serve, server.handle)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()


async def post(transport: httpx.AsyncBaseTransport, url: str, timeout: float = 5.0) -> bytes:
    request = httpx.Request("POST", url, json={"q": 1}, extensions={"timeout": httpx.Timeout(timeout).as_dict()})
    response = await transport.handle_async_request(request)
    try:
        assert response.status_code == 200
        return await response.aread()
    finally:
        await response.aclose()


async def test_one_connection_serves_request_after_request_and_each_request_is_one_write() -> None:
    async with serving() as server:
        transport = HTTP11Transport()
        url = f"http://127.0.0.1:{server.port}/v1/chat/completions"
        assert [await post(transport, url) for _ in range(5)] == [BODY] * 5
        await transport.aclose()
    assert server.connections == 1
    # Head and body in one write arrive in one read: the server's clock starts on time.
    assert server.reads_per_request == [1] * 5


async def test_concurrent_requests_open_a_connection_each_and_reuse_them() -> None:
    async with serving() as server:
        transport = HTTP11Transport()
        url = f"http://127.0.0.1:{server.port}/"
        for _ in range(3):
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(post, transport, url)
        await transport.aclose()
    assert server.connections == 4 and len(server.reads_per_request) == 12


async def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    async with serving() as server:
        server.close_after = 1
        transport = HTTP11Transport()
        url = f"http://127.0.0.1:{server.port}/"
        await post(transport, url)
        await anyio.sleep(0.05)  # the server's FIN arrives
        assert await post(transport, url) == BODY
        await transport.aclose()
    assert server.connections == 2


async def test_connections_idle_past_the_expiry_are_not_reused() -> None:
    async with serving() as server:
        transport = HTTP11Transport(keepalive_expiry=0.05)
        url = f"http://127.0.0.1:{server.port}/"
        await post(transport, url)
        await anyio.sleep(0.1)
        await post(transport, url)
        await post(transport, url)
        await transport.aclose()
    assert server.connections == 2


async def test_network_failures_are_httpx_errors() -> None:
    async with serving() as server:
        transport = HTTP11Transport()
        server.hang = True
        with pytest.raises(httpx.ReadTimeout):
            await post(transport, f"http://127.0.0.1:{server.port}/", timeout=0.1)
        server.hang, server.close_after = False, 0
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await post(transport, f"http://127.0.0.1:{server.port}/")
        await transport.aclose()
    with pytest.raises(httpx.ConnectError):
        await post(HTTP11Transport(), f"http://127.0.0.1:{server.port}/")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


async def test_https_goes_over_tls_with_the_given_context(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    async with serving(server_context) as server:
        transport = HTTP11Transport(ssl_context=ssl.create_default_context(cafile=str(cert)))
        url = f"https://127.0.0.1:{server.port}/"
        assert [await post(transport, url) for _ in range(2)] == [BODY] * 2
        await transport.aclose()
        with pytest.raises(httpx.ConnectError):  # httpx's default trust store does not know this certificate
            await post(HTTP11Transport(), url)
    assert server.connections == 1  # both requests on one connection; the refused handshake never got that far


def test_a_proxy_in_the_environment_keeps_httpx_which_speaks_to_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(default_transport(), HTTP11Transport)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert not isinstance(default_transport(), HTTP11Transport)
