"""The pooled HTTP client of the HTTP LLM providers (Ollama, OpenAI-compatible).

Used through :class:`~agentctl.services.llm.http_provider.HTTPProvider`; nothing else
should need it. :class:`PooledHTTP` POSTs JSON to a :class:`~agentctl.services.llm.hosts.HostPool`
through one lazily created ``httpx.AsyncClient`` per provider (shared by every call the
provider makes), retries with exponential backoff and full jitter, and ends every failure
as :class:`LLMHTTPError` (an :class:`~agentctl.errors.LLMError`) with host, status and a
short, redacted body excerpt.

The client speaks httpx's API. By default it sends through aiohttp (``httpx-aiohttp``, the
transport the OpenAI SDK offers for concurrency): its C parser hands over a chunked body in
whole reads, where httpx's own transport (h11) makes one event and five generator steps per
chunk; measured by callgrind, a plain call costs 1.34M instructions against 2.49M and a
streamed one 1.96M against 4.64M (bench/RESULTS.md). ``http2=True`` keeps httpx's own
transport, which speaks HTTP/2 where the server offers it in the TLS handshake
(``httpx[http2]``). Either way: a bounded pool of keep-alive connections, proxies and CA
bundles from the environment (``HTTPS_PROXY``, ``NO_PROXY``, ``SSL_CERT_FILE``).
"""

from __future__ import annotations

import email.utils
import importlib.util
import random
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import httpx
import orjson

from agentctl.errors import LLMError
from agentctl.redact import Redactor
from agentctl.services.llm.hosts import HostPool, HostStatistics

__all__ = ["HTTPStatistics", "LLMHTTPError", "PooledHTTP", "QUOTE_LIMIT", "excerpt", "open_client", "quote"]

T = TypeVar("T")

_EXCERPT = 200
#: Characters of a reply a reader's error may quote before redaction (see :func:`quote`).
QUOTE_LIMIT = 4096
# h2 comes with the httpx[http2] dependency; an environment installed before it was declared
# speaks HTTP/1.1 rather than fail (httpx refuses http2=_HTTP2 without h2).
_HTTP2 = importlib.util.find_spec("h2") is not None


class LLMHTTPError(LLMError):
    """An LLM request that failed over HTTP.

    Attributes:
        host: the base URL of the last host tried (None when none could be tried).
        status: the last HTTP status, or None for connection errors and timeouts.
        attempts: how many attempts were made.
    """

    def __init__(
        self,
        message: str,
        *,
        host: str | None = None,
        status: int | None = None,
        attempts: int = 1,
    ) -> None:
        self.host = host
        self.status = status
        self.attempts = attempts
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class HTTPStatistics:
    """Counters of one provider's HTTP client.

    ``requests`` counts chat calls, ``retries`` extra attempts, ``failures`` calls that
    ended in an error; ``hosts`` is the per-host state.
    """

    requests: int
    retries: int
    failures: int
    hosts: tuple[HostStatistics, ...]


class _Fatal(LLMError):
    """Internal, never escapes :meth:`PooledHTTP.post`: an attempt failed in a way another try will not fix."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class _Retry(_Fatal):
    """Internal: an attempt failed in a way worth another try."""

    def __init__(self, message: str, *, status: int | None = None, dead: bool = False, wait: float | None = None) -> None:
        super().__init__(message, status=status)
        self.dead = dead
        self.wait = wait


class PooledHTTP:
    """POSTs JSON to a pool of hosts with retries; one per provider.

    Args:
        hosts: base URLs (already normalised).
        timeout: default seconds allowed for connecting and between bytes read.
        retries: extra attempts after the first.
        backoff: base of the exponential backoff (seconds); each wait is uniform in
            ``[0, min(max_backoff, backoff * 2**n)]`` (full jitter).
        max_backoff: cap of one backoff wait.
        cooldown: seconds a host that refused a connection is skipped.
        max_retry_after: the largest ``Retry-After`` honoured; a 429 asking for more
            fails at once.
        headers: headers sent with every request (e.g. ``Authorization``).
        secrets: strings scrubbed from every error message.
        max_connections: the pool's bound on open connections (idle ones included); a
            call beyond it waits for a free connection. Keep it at least the number of
            LLM workers that use this provider.
        http2: speak HTTP/2 where a TLS server offers it, through httpx's own transport
            (default: HTTP/1.1 through aiohttp, about half the CPU per call).
        transport: an httpx transport to send through instead of the network (tests);
            proxies from the environment then do not apply.
        sleep, rng, clock: injectable for tests.
    """

    def __init__(
        self,
        hosts: Sequence[str],
        *,
        timeout: float = 300.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        cooldown: float = 30.0,
        max_retry_after: float = 30.0,
        headers: Mapping[str, str] | None = None,
        secrets: Sequence[str] = (),
        max_connections: int = 100,
        http2: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = HostPool(hosts, cooldown=cooldown, clock=clock)
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self._json_headers = {**(headers or {}), "Content-Type": "application/json"}
        self._redactor = Redactor(secrets)
        self.max_connections = max_connections
        self.http2 = http2
        self._transport = transport
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._client: httpx.AsyncClient | None = None
        # Each URL parsed once: parsing was a fifth of a request's own CPU.
        self._urls: dict[str, httpx.URL] = {}
        self._requests = 0
        self._retries = 0
        self._failures = 0

    def __repr__(self) -> str:
        return f"PooledHTTP(hosts={self.pool.hosts!r})"

    def _get_client(self) -> httpx.AsyncClient:
        # Made on first use, inside the event loop that will use it.
        if self._client is None:
            self._client = open_client(self.max_connections, self._transport, http2=self.http2)
        return self._client

    async def aclose(self) -> None:
        """Close the client's connections (a later request opens a new client)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def statistics(self) -> HTTPStatistics:
        """Counters so far."""
        return HTTPStatistics(self._requests, self._retries, self._failures, self.pool.statistics())

    async def post(
        self,
        path: str,
        body: Mapping[str, Any],
        read: Callable[[httpx.Response], Awaitable[T]],
        *,
        timeout: float | None = None,
    ) -> T:
        """POST ``body`` to ``{host}{path}`` and hand the streamed 2xx response to ``read``.

        ``read`` may raise ``LLMError`` for an unusable reply (not retried); network
        errors while it reads are retried like any other.

        Raises:
            LLMHTTPError: when every attempt failed or one failed for good.
        """
        self._requests += 1
        attempt = 0
        while True:
            host = self.pool.pick()
            try:
                return await self._attempt(host, path, body, read, timeout)
            except _Retry as exc:
                self.pool.failed(host, dead=exc.dead)
                if attempt >= self.retries:
                    raise self._fail(f"{exc.message} (after {attempt + 1} attempts)", host, exc.status, attempt + 1) from None
                delay = self._delay(attempt, exc)
                if delay is None:
                    raise self._fail(exc.message, host, exc.status, attempt + 1) from None
                attempt += 1
                self._retries += 1
                await self._sleep(delay)
            except _Fatal as exc:
                self.pool.failed(host, dead=False)
                raise self._fail(exc.message, host, exc.status, attempt + 1) from None

    def _delay(self, attempt: int, exc: _Retry) -> float | None:
        """Seconds to wait before the next attempt, or None to give up now."""
        if exc.wait is not None:
            return exc.wait if exc.wait <= self.max_retry_after else None
        if exc.dead and self.pool.any_alive():
            return 0.0  # another host is up: fail over without waiting
        return self._rng.uniform(0.0, min(self.max_backoff, self.backoff * 2**attempt))

    def _fail(self, message: str, host: str | None, status: int | None, attempts: int) -> LLMHTTPError:
        self._failures += 1
        return LLMHTTPError(self._redactor.text(message), host=host, status=status, attempts=attempts)

    async def _attempt(
        self,
        host: str,
        path: str,
        body: Mapping[str, Any],
        read: Callable[[httpx.Response], Awaitable[T]],
        timeout: float | None,
    ) -> T:
        url = f"{host}{path}"
        target = self._urls.get(url) or self._urls.setdefault(url, httpx.URL(url))
        client = self._get_client()
        self.pool.sent(host)
        try:
            # orjson, not httpx's json= (the standard library's encoder): 1.4% of a plain call's instructions.
            content = orjson.dumps(body)
        except TypeError as exc:
            raise _Fatal(f"POST {url}: request is not JSON-serializable: {exc}") from None
        request = httpx.Request("POST", target, content=content, headers=self._json_headers,
                                extensions={"timeout": httpx.Timeout(timeout or self.timeout).as_dict()})
        try:
            response = await client.send(request, stream=True)
            try:
                if response.status_code >= 400:
                    await response.aread()
                    self._raise_status(url, response)
                result = await read(response)
            finally:
                await response.aclose()
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            if _connected(exc):
                raise _Retry(f"POST {url}: connection failed: {_describe(exc)}") from None
            raise _Retry(f"POST {url}: cannot connect: {_describe(exc)}", dead=True) from None
        except httpx.TimeoutException as exc:
            raise _Retry(f"POST {url}: timed out after {timeout or self.timeout:g}s ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise _Retry(f"POST {url}: connection failed: {_describe(exc)}") from None
        except httpx.HTTPError as exc:
            raise _Fatal(f"POST {url}: {type(exc).__name__}: {_describe(exc)}") from None
        except _Fatal:
            raise  # already decided (an HTTP status); it is an LLMError too
        except LLMError as exc:
            # A reader quotes the reply uncut (up to QUOTE_LIMIT): redacted before the cut, as
            # an error status's body is, so a secret the cut falls inside is still recognised.
            raise _Fatal(f"POST {url}: {excerpt(self._redactor.text(str(exc)), _EXCERPT + 100)}") from None
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            # A reply shaped differently from what the reader expects is unusable, not a crash.
            raise _Fatal(f"POST {url}: malformed reply ({type(exc).__name__}: {exc})") from None
        self.pool.succeeded(host)
        return result

    def _raise_status(self, url: str, response: httpx.Response) -> None:
        status = response.status_code
        # Redacted before the cut: a secret cut in two would leave its first half unrecognised.
        message = f"POST {url}: HTTP {status}: {excerpt(self._redactor.text(response.text))}"
        if status == 429:
            raise _Retry(message, status=status, wait=_retry_after(response.headers.get("retry-after")))
        if status >= 500:
            raise _Retry(message, status=status)
        raise _Fatal(message, status=status)


def open_client(max_connections: int, transport: httpx.AsyncBaseTransport | None = None, *,
                http2: bool = False) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for LLM calls: ``max_connections`` pooled connections, all of
    which may stay alive between calls (a pool of LLM workers reuses every one), proxies from
    the environment, no redirects; through aiohttp unless ``http2`` (or a ``transport``) is given."""
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    if transport is not None or http2:
        return httpx.AsyncClient(limits=limits, http2=http2 and _HTTP2, transport=transport, trust_env=True)
    # Imported here: a run whose models are all scripted never pays for aiohttp's import.
    from httpx_aiohttp import HttpxAiohttpClient

    return HttpxAiohttpClient(limits=limits, trust_env=True)


def _connected(exc: httpx.TransportError) -> bool:
    """Whether ``exc``, though httpx calls it a connect error, came after the connection was
    made: httpx-aiohttp maps every aiohttp connection error to ``ConnectTimeout``, a server
    that drops a kept-alive connection or resets it mid-reply included. Such a host is up:
    the call is retried, but the host is not set aside as one that refused."""
    aiohttp = sys.modules.get("aiohttp")  # not loaded: the error is httpx's own, and means what it says
    if aiohttp is None or not isinstance(exc.__cause__, aiohttp.ClientConnectionError):
        return False
    return not isinstance(exc.__cause__, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError))


def quote(text: str) -> str:
    """Reply text for a reader's error, up to :data:`QUOTE_LIMIT` characters, unredacted.

    :class:`PooledHTTP` redacts the error and only then cuts it to an :func:`excerpt`; a
    secret that this first, longer cut falls inside lies past the excerpt's end.
    """
    return text[:QUOTE_LIMIT]


def excerpt(text: str, limit: int = _EXCERPT) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date); None if absent."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
