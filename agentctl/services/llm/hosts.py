"""The base URLs an HTTP LLM provider sends to: cleaning them up, and taking turns.

Used by :class:`~agentctl.services.llm.http.PooledHTTP`: :func:`normalize_hosts` turns
what a user wrote (``OLLAMA_HOST``, a list of URLs) into base URLs, and :class:`HostPool`
hands them out round-robin, skipping hosts that refused a connection until their
cool-down has passed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from agentctl.errors import LLMError

__all__ = ["HostPool", "HostStatistics", "normalize_hosts"]


@dataclass(frozen=True, slots=True)
class HostStatistics:
    """One host of a pool: attempts sent to it, failures, and whether it is cooling down."""

    url: str
    requests: int
    failures: int
    alive: bool
    dead_for: float


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
