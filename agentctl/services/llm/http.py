"""HTTP plumbing shared by the HTTP LLM providers (Ollama, OpenAI-compatible).

Used by :mod:`agentctl.services.llm.ollama` and :mod:`agentctl.services.llm.openai`;
nothing else should need it. It holds:

* :class:`HostPool` — round-robin over several base URLs, with a cool-down for hosts
  that refused a connection;
* :class:`PooledHTTP` — one lazily created ``httpx.AsyncClient`` per provider, retries
  with exponential backoff and full jitter, and errors that always end as
  :class:`LLMHTTPError` (an :class:`~agentctl.errors.LLMError`) with host, status and a
  short, redacted body excerpt;
* :func:`normalize_hosts`, :func:`redact` and :func:`excerpt`, used for URLs and
  error messages.

The wire format helpers (tool names, arguments) are in :mod:`agentctl.services.llm.wire`.
"""

from __future__ import annotations

import email.utils
import json
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import httpx

from agentctl.errors import LLMError
from agentctl.services.llm.base import ChatReply, ChatRequest
from agentctl.services.llm.wire import ToolNames

__all__ = [
    "HTTPStatistics",
    "HostPool",
    "HostStatistics",
    "LLMHTTPError",
    "PooledHTTP",
    "excerpt",
    "normalize_hosts",
    "redact",
]

T = TypeVar("T")

_EXCERPT = 200


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
        retryable: bool = True,
    ) -> None:
        self.host = host
        self.status = status
        self.attempts = attempts
        self.retryable = retryable
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class HostStatistics:
    """One host of a pool: attempts sent to it, failures, and whether it is cooling down."""

    url: str
    requests: int
    failures: int
    alive: bool
    dead_for: float


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


def normalize_hosts(hosts: Sequence[str] | str, *, default_port: int | None = None) -> list[str]:
    """Turn ``"a:1,b:2"``, ``"http://a/"`` or a list of those into clean base URLs.

    A host without scheme gets ``http://``; ``0.0.0.0`` (a server bind address people
    put in ``OLLAMA_HOST``) becomes ``127.0.0.1``; trailing slashes go.
    """
    items = hosts.split(",") if isinstance(hosts, str) else [h for part in hosts for h in part.split(",")]
    out: list[str] = []
    for raw in items:
        host = raw.strip().rstrip("/")
        if not host:
            continue
        if "://" not in host:
            host = "http://" + host
        url = httpx.URL(host)
        if url.host == "0.0.0.0":
            url = url.copy_with(host="127.0.0.1")
        if url.port is None and default_port is not None and url.scheme == "http":
            url = url.copy_with(port=default_port)
        out.append(str(url).rstrip("/"))
    if not out:
        raise LLMError(f"no hosts given (got {hosts!r})")
    return out


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every non-empty secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class HostPool:
    """Round-robin over base URLs, skipping hosts in their cool-down.

    A host is marked dead after a connection error and skipped until ``cooldown``
    seconds have passed; when every host is dead the one that recovers first is tried
    anyway, since failing without trying helps nobody.
    """

    def __init__(self, hosts: Sequence[str], *, cooldown: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.hosts = list(hosts)
        self.cooldown = cooldown
        self._clock = clock
        self._next = 0
        self._dead_until: dict[str, float] = {}
        self._requests = dict.fromkeys(self.hosts, 0)
        self._failures = dict.fromkeys(self.hosts, 0)

    def alive(self, host: str) -> bool:
        """Whether ``host`` is outside its cool-down."""
        return self._dead_until.get(host, 0.0) <= self._clock()

    def pick(self) -> str:
        """The next host to send an attempt to."""
        n = len(self.hosts)
        for i in range(n):
            host = self.hosts[(self._next + i) % n]
            if self.alive(host):
                self._next = (self._next + i + 1) % n
                return host
        return min(self.hosts, key=lambda h: self._dead_until.get(h, 0.0))

    def any_alive(self) -> bool:
        """Whether at least one host is outside its cool-down."""
        return any(self.alive(h) for h in self.hosts)

    def sent(self, host: str) -> None:
        """Count an attempt sent to ``host``."""
        self._requests[host] += 1

    def failed(self, host: str, *, dead: bool) -> None:
        """Count a failed attempt; ``dead`` starts the host's cool-down."""
        self._failures[host] += 1
        if dead:
            self._dead_until[host] = self._clock() + self.cooldown

    def succeeded(self, host: str) -> None:
        """A host that answered is alive again."""
        self._dead_until.pop(host, None)

    def statistics(self) -> tuple[HostStatistics, ...]:
        """Per-host counters and cool-down state."""
        now = self._clock()
        return tuple(
            HostStatistics(
                url=h,
                requests=self._requests[h],
                failures=self._failures[h],
                alive=self.alive(h),
                dead_for=max(0.0, self._dead_until.get(h, 0.0) - now),
            )
            for h in self.hosts
        )


class _Fatal(Exception):
    """Internal: an attempt failed in a way another try will not fix."""

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
        transport: an httpx transport (tests, proxies).
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
        self._headers = dict(headers or {})
        self._secrets = tuple(s for s in secrets if s)
        self._transport = transport
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._client: httpx.AsyncClient | None = None
        self._requests = 0
        self._retries = 0
        self._failures = 0

    def __repr__(self) -> str:
        return f"PooledHTTP(hosts={self.pool.hosts!r})"

    def _get_client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(headers=self._headers, transport=self._transport)
        return self._client

    async def aclose(self) -> None:
        """Close the client (a later request opens a new one)."""
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
                    raise self._fail(exc.message, host, exc.status, attempt + 1, retryable=False) from None
                attempt += 1
                self._retries += 1
                await self._sleep(delay)
            except _Fatal as exc:
                self.pool.failed(host, dead=False)
                raise self._fail(exc.message, host, exc.status, attempt + 1, retryable=False) from None

    def _delay(self, attempt: int, exc: _Retry) -> float | None:
        """Seconds to wait before the next attempt, or None to give up now."""
        if exc.wait is not None:
            return exc.wait if exc.wait <= self.max_retry_after else None
        if exc.dead and self.pool.any_alive():
            return 0.0  # another host is up: fail over without waiting
        return self._rng.uniform(0.0, min(self.max_backoff, self.backoff * 2**attempt))

    def _fail(self, message: str, host: str | None, status: int | None, attempts: int, *, retryable: bool = True) -> LLMHTTPError:
        self._failures += 1
        return LLMHTTPError(redact(message, self._secrets), host=host, status=status, attempts=attempts, retryable=retryable)

    async def _attempt(
        self,
        host: str,
        path: str,
        body: Mapping[str, Any],
        read: Callable[[httpx.Response], Awaitable[T]],
        timeout: float | None,
    ) -> T:
        url = f"{host}{path}"
        client = self._get_client()
        self.pool.sent(host)
        try:
            request = client.build_request("POST", url, json=body, timeout=httpx.Timeout(timeout or self.timeout))
        except (TypeError, ValueError) as exc:
            raise _Fatal(f"POST {url}: request is not JSON-serializable: {exc}") from None
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
            raise _Retry(f"POST {url}: cannot connect: {_describe(exc)}", dead=True) from None
        except httpx.TimeoutException as exc:
            raise _Retry(f"POST {url}: timed out after {timeout or self.timeout:g}s ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise _Retry(f"POST {url}: connection failed: {_describe(exc)}") from None
        except httpx.HTTPError as exc:
            raise _Fatal(f"POST {url}: {type(exc).__name__}: {_describe(exc)}") from None
        except LLMError as exc:
            raise _Fatal(f"POST {url}: {exc}") from None
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            # A reply shaped differently from what the reader expects is unusable, not a crash.
            raise _Fatal(f"POST {url}: malformed reply ({type(exc).__name__}: {exc})") from None
        self.pool.succeeded(host)
        return result

    def _raise_status(self, url: str, response: httpx.Response) -> None:
        status = response.status_code
        message = f"POST {url}: HTTP {status}: {excerpt(response.text)}"
        if status == 429:
            raise _Retry(message, status=status, wait=_retry_after(response.headers.get("retry-after")))
        if status >= 500:
            raise _Retry(message, status=status)
        raise _Fatal(message, status=status)


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


def json_object(text: str) -> dict[str, Any]:
    """A reply body as a JSON object, or ``LLMError`` (not JSON, not an object, an error)."""
    try:
        value = json.loads(text)
    except ValueError:
        raise LLMError(f"malformed reply, not JSON: {excerpt(text)}") from None
    if not isinstance(value, dict):
        raise LLMError(f"malformed reply, not a JSON object: {excerpt(text)}")
    if value.get("error"):
        error = value["error"]
        detail = error.get("message", error) if isinstance(error, Mapping) else error
        raise LLMError(f"server error: {excerpt(str(detail))}")
    return value


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

    async def chat(self, request: ChatRequest) -> ChatReply:
        """Send ``request`` and decode the reply.

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
                return await self._read_stream(response, names, model)
            await response.aread()
            return self._parse_reply(json_object(response.text), names, model)

        return await self.http.post(self.path, body, read, timeout=request.timeout)

    def _body(self, model: str, request: ChatRequest, names: ToolNames) -> dict[str, Any]:
        raise NotImplementedError

    def _parse_reply(self, data: Mapping[str, Any], names: ToolNames, model: str) -> ChatReply:
        raise NotImplementedError

    async def _read_stream(self, response: httpx.Response, names: ToolNames, model: str) -> ChatReply:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.http.aclose()

    def statistics(self) -> HTTPStatistics:
        """Requests, retries, failures and per-host state."""
        return self.http.statistics()
