"""Shared fixtures: the anyio backend, an event recorder for service tests, a scripted LLM server, and the
private Docker engine of the container tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import private_dockerd
import pytest
from llm_servers import LLMServer, running_server

from agentctl.events.types import Event, loose


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Recorder:
    """Collects emitted events in memory, numbering them like the real log does."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(
        self, type: str | Event, agent_id: str | None = None, fields: dict[str, Any] | None = None, /, **more: Any
    ) -> dict[str, Any]:
        if not isinstance(type, str):
            type, agent_id, fields = loose(type)
        event = {"seq": len(self.events) + 1, "t": 0, "run_id": "test", "type": type, "agent_id": agent_id,
                 **(fields or {}), **more}
        self.events.append(event)
        return event

    def of_type(self, type: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == type]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def server() -> AsyncIterator[LLMServer]:
    """A scripted LLM server on 127.0.0.1 (``server.then(Behaviour(...))``), for async tests."""
    async with running_server() as srv:
        yield srv


@pytest.fixture(scope="session")
def engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """A private dockerd for this session (:func:`private_dockerd.engine`); its DOCKER_HOST, also set in the environment."""
    yield from private_dockerd.engine(request)
