"""The LLM providers' HTTP client against real servers on 127.0.0.1: keep-alive, the pool's
bound, a proxy named by the environment, a dropped connection, TLS with the CA bundle from the
environment (HTTP/1.1 through aiohttp by default) and HTTP/2 offered in a TLS handshake (httpx's
own transport, with ``http2=True``)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import h2.config
import h2.connection
import h2.events
import pytest
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSListener, TLSStream

from agentctl.services.llm.http import LLMHTTPError, PooledHTTP
from bench.reply_server import serve_replies

pytestmark = pytest.mark.anyio

BODY = b'{"ok":true}'
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy",
               "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


class HTTP11Server:
    """Answers every request with BODY on a keep-alive connection, after ``delay``.

    Records the connections it accepted, the most open at once, and each request line.
    """

    def __init__(self, delay: float = 0.0) -> None:
        self.port = 0
        self.delay = delay
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.request_lines: list[bytes] = []

    async def handle(self, stream: anyio.abc.ByteStream) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            await serve_replies(stream, BODY, self.delay, lambda head: self.request_lines.append(head.split(b"\r\n")[0]))
        finally:
            self.open -= 1


@asynccontextmanager
async def serving(server: HTTP11Server) -> AsyncIterator[HTTP11Server]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    server.port = listener.extra(SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, server.handle)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()


async def read_body(response: object) -> bytes:
    return await response.aread()  # type: ignore[attr-defined,no-any-return]


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in _PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


async def test_one_keep_alive_connection_serves_call_after_call(no_proxy_env: pytest.MonkeyPatch) -> None:
    async with serving(HTTP11Server()) as server:
        http = PooledHTTP([f"http://127.0.0.1:{server.port}"], retries=0)
        assert [await http.post("/v1/chat", {"q": i}, read_body) for i in range(5)] == [BODY] * 5
        await http.aclose()
    assert server.connections == 1


async def test_the_body_goes_as_json_and_one_that_is_not_json_goes_nowhere(no_proxy_env: pytest.MonkeyPatch) -> None:
    heads: list[bytes] = []

    async def handle(stream: anyio.abc.ByteStream) -> None:
        await serve_replies(stream, BODY, 0.0, heads.append)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        http = PooledHTTP([f"http://127.0.0.1:{listener.extra(SocketAttribute.local_port)}"], retries=0,
                          headers={"Authorization": "Bearer k"})
        assert await http.post("/v1/chat", {"q": "é", "n": [1, 2.5]}, read_body) == BODY
        with pytest.raises(LLMHTTPError, match="request is not JSON-serializable"):
            await http.post("/v1/chat", {"q": object()}, read_body)
        await http.aclose()
        tg.cancel_scope.cancel()
    assert len(heads) == 1  # the second call sent nothing
    head = heads[0].lower()
    assert b"content-type: application/json" in head and b"authorization: bearer k" in head
    assert b'content-length: %d' % len('{"q":"é","n":[1,2.5]}'.encode()) in head


async def test_concurrent_calls_beyond_the_pool_bound_wait_for_a_connection(no_proxy_env: pytest.MonkeyPatch) -> None:
    async with serving(HTTP11Server(delay=0.05)) as server:
        http = PooledHTTP([f"http://127.0.0.1:{server.port}"], retries=0, max_connections=3)
        results: list[bytes] = []

        async def call() -> None:
            results.append(await http.post("/v1/chat", {}, read_body))

        async with anyio.create_task_group() as tg:
            for _ in range(12):
                tg.start_soon(call)
        await http.aclose()
    assert results == [BODY] * 12
    assert server.most_open == 3 and server.connections == 3


async def test_a_proxy_named_by_the_environment_carries_the_calls(no_proxy_env: pytest.MonkeyPatch) -> None:
    async with serving(HTTP11Server()) as proxy:
        no_proxy_env.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        http = PooledHTTP(["http://model.invalid:8000"], retries=0)
        assert await http.post("/v1/chat/completions", {}, read_body) == BODY
        await http.aclose()
        # NO_PROXY is honoured: the same call to a listed host goes direct (and fails, no such host).
        no_proxy_env.setenv("NO_PROXY", "model.invalid")
        direct = PooledHTTP(["http://model.invalid:8000"], retries=0)
        with pytest.raises(LLMHTTPError, match="cannot connect"):
            await direct.post("/v1/chat/completions", {}, read_body)
        await direct.aclose()
    # A proxy gets the absolute URL in the request line.
    assert proxy.request_lines == [b"POST http://model.invalid:8000/v1/chat/completions HTTP/1.1"]


async def test_a_dropped_connection_is_retried_without_setting_the_host_aside(no_proxy_env: pytest.MonkeyPatch) -> None:
    """The server reads the request on each of its first two connections and closes them
    unanswered. That host is up: the call fails as a failed connection (retried), not as a host
    that refused."""
    connections = 0

    async def handle(stream: anyio.abc.ByteStream) -> None:
        nonlocal connections
        connections += 1
        if connections <= 2:
            async with stream:
                await stream.receive()
            return
        await serve_replies(stream, BODY, 0.0)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    url = f"http://127.0.0.1:{listener.extra(SocketAttribute.local_port)}"
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        once = PooledHTTP([url], retries=0, cooldown=30.0)
        with pytest.raises(LLMHTTPError, match="connection failed") as failed:
            await once.post("/v1/chat", {}, read_body)
        assert "cannot connect" not in str(failed.value)
        assert once.statistics().hosts[0].alive
        await once.aclose()
        again = PooledHTTP([url], retries=1, backoff=0.0)
        assert await again.post("/v1/chat", {}, read_body) == BODY
        assert again.statistics().retries == 1
        await again.aclose()
        tg.cancel_scope.cancel()
    assert connections == 3


async def test_a_refused_connection_sets_the_host_aside(no_proxy_env: pytest.MonkeyPatch) -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    url = f"http://127.0.0.1:{listener.extra(SocketAttribute.local_port)}"
    await listener.aclose()  # nothing listens there now
    http = PooledHTTP([url], retries=0, cooldown=30.0)
    with pytest.raises(LLMHTTPError, match="cannot connect"):
        await http.post("/v1/chat", {}, read_body)
    host = http.statistics().hosts[0]
    assert not host.alive and host.dead_for > 25
    await http.aclose()


async def test_tls_with_the_ca_bundle_from_the_environment_over_http11_by_default(
        certificate: tuple[Path, Path], no_proxy_env: pytest.MonkeyPatch) -> None:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    versions: list[str] = []

    async def read(response: object) -> bytes:
        versions.append(response.http_version)  # type: ignore[attr-defined]
        return await read_body(response)

    async with serving(HTTP11Server()) as plain:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        url = f"https://127.0.0.1:{listener.extra(SocketAttribute.local_port)}"
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(TLSListener(listener, context, standard_compatible=False).serve, plain.handle)
            untrusted = PooledHTTP([url], retries=0)
            with pytest.raises(LLMHTTPError, match="cannot connect"):  # the default trust store does not know it
                await untrusted.post("/v1/chat", {}, read_body)
            await untrusted.aclose()
            no_proxy_env.setenv("SSL_CERT_FILE", str(cert))
            http = PooledHTTP([url], retries=0)
            assert [await http.post("/v1/chat", {}, read) for _ in range(3)] == [BODY] * 3
            await http.aclose()
            tg.cancel_scope.cancel()
    assert versions == ["HTTP/1.1"] * 3
    assert plain.connections == 1  # one kept-alive connection (the refused handshake never reached it)


async def _serve_h2(stream: TLSStream) -> None:
    """A minimal HTTP/2 server: BODY for every request, on one connection."""
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    async with stream:
        await stream.send(conn.data_to_send())
        while True:
            try:
                data = await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.StreamEnded):
                    conn.send_headers(event.stream_id, [(":status", "200"), ("content-length", str(len(BODY)))])
                    conn.send_data(event.stream_id, BODY, end_stream=True)
            await stream.send(conn.data_to_send())


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


async def test_http2_when_asked_and_the_server_offers_it_with_the_ca_bundle_from_the_environment(
        certificate: tuple[Path, Path], no_proxy_env: pytest.MonkeyPatch) -> None:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["h2"])
    versions: list[str] = []

    async def read(response: object) -> bytes:
        versions.append(response.http_version)  # type: ignore[attr-defined]
        return await read_body(response)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(TLSListener(listener, context, standard_compatible=False).serve, _serve_h2)
        url = f"https://127.0.0.1:{port}"
        untrusted = PooledHTTP([url], retries=0, http2=True)
        with pytest.raises(LLMHTTPError, match="cannot connect"):  # the default trust store does not know it
            await untrusted.post("/v1/chat", {}, read_body)
        await untrusted.aclose()
        no_proxy_env.setenv("SSL_CERT_FILE", str(cert))
        http = PooledHTTP([url], retries=0, http2=True)
        assert [await http.post("/v1/chat", {}, read) for _ in range(2)] == [BODY] * 2
        await http.aclose()
        tg.cancel_scope.cancel()
    assert versions == ["HTTP/2", "HTTP/2"]
