"""The shared HTTP layer (host pool, retries, backoff), wire-name mapping and config."""

from __future__ import annotations

import random

import pytest
from llm_servers import Behaviour, free_port, running_server

from agentctl.errors import LLMError
from agentctl.services.llm.base import ChatRequest, Provider
from agentctl.services.llm.config import provider_from_config
from agentctl.services.llm.hosts import HostPool, normalize_hosts
from agentctl.services.llm.http import LLMHTTPError, PooledHTTP
from agentctl.services.llm.ollama import OllamaProvider
from agentctl.services.llm.openai import OpenAIProvider
from agentctl.services.llm.wire import ToolNames

REQUEST = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}])


async def read_json(response) -> dict:
    await response.aread()
    return response.json()


class Sleeps:
    """Records the waits PooledHTTP asks for instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.mark.anyio
async def test_dead_host_is_skipped_after_its_first_failure() -> None:
    async with running_server() as live:
        dead = f"http://127.0.0.1:{free_port()}"
        provider = OllamaProvider([dead, live.url], retries=2, backoff=10.0)
        replies = [await provider.chat(REQUEST) for _ in range(5)]
        stats = provider.statistics()
        await provider.aclose()
    assert [r.content for r in replies] == ["hello"] * 5
    assert len(live.requests) == 5
    dead_stats, live_stats = stats.hosts
    assert (dead_stats.url, dead_stats.requests, dead_stats.failures, dead_stats.alive) == (dead, 1, 1, False)
    assert dead_stats.dead_for > 0
    assert (live_stats.requests, live_stats.failures, live_stats.alive) == (5, 0, True)
    assert (stats.requests, stats.retries, stats.failures) == (5, 1, 0)


@pytest.mark.anyio
async def test_requests_are_spread_round_robin_across_live_hosts() -> None:
    async with running_server() as a, running_server() as b:
        provider = OpenAIProvider([f"{a.url}/v1", f"{b.url}/v1"])
        for _ in range(4):
            await provider.chat(REQUEST)
        await provider.aclose()
    assert (len(a.requests), len(b.requests)) == (2, 2)


@pytest.mark.anyio
async def test_all_hosts_dead_ends_in_llm_error_naming_the_host() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    provider = OllamaProvider(dead, retries=2, backoff=0.001)
    with pytest.raises(LLMHTTPError, match="cannot connect.*3 attempts") as info:
        await provider.chat(REQUEST)
    await provider.aclose()
    assert dead in str(info.value) and info.value.status is None


def test_dead_host_comes_back_after_cooldown() -> None:
    now = [100.0]
    pool = HostPool(["http://a", "http://b"], cooldown=30.0, clock=lambda: now[0])
    assert pool.pick() == "http://a"
    pool.failed("http://a", dead=True)
    assert [pool.pick() for _ in range(3)] == ["http://b"] * 3
    now[0] += 29.0
    assert not pool.alive("http://a")
    now[0] += 1.5
    assert pool.alive("http://a") and {pool.pick(), pool.pick()} == {"http://a", "http://b"}


def test_when_every_host_is_dead_the_first_to_recover_is_tried() -> None:
    now = [0.0]
    pool = HostPool(["http://a", "http://b"], cooldown=10.0, clock=lambda: now[0])
    pool.failed("http://b", dead=True)
    now[0] = 1.0
    pool.failed("http://a", dead=True)
    assert pool.pick() == "http://b"


@pytest.mark.anyio
async def test_backoff_is_exponential_with_full_jitter() -> None:
    sleeps = Sleeps()
    async with running_server() as server:
        server.default = Behaviour(status=502)
        http = PooledHTTP([server.url], retries=4, backoff=1.0, max_backoff=5.0, sleep=sleeps, rng=random.Random(7))
        with pytest.raises(LLMHTTPError, match="HTTP 502"):
            await http.post("/api/chat", {}, read_json)
        await http.aclose()
    assert len(sleeps.waits) == 4 and len(server.requests) == 5
    for n, wait in enumerate(sleeps.waits):
        assert 0.0 <= wait <= min(5.0, 2.0**n)
    assert len(set(sleeps.waits)) == 4  # jittered, not fixed steps


@pytest.mark.anyio
async def test_small_retry_after_is_honoured_and_large_one_fails_at_once() -> None:
    sleeps = Sleeps()
    async with running_server() as server:
        server.then(Behaviour(status=429, headers={"Retry-After": "7"}), Behaviour(status=429, headers={"Retry-After": "3600"}))
        http = PooledHTTP([server.url], retries=5, backoff=0.5, sleep=sleeps)
        with pytest.raises(LLMHTTPError, match="HTTP 429") as info:
            await http.post("/api/chat", {}, read_json)
        await http.aclose()
    assert sleeps.waits == [7.0]
    assert len(server.requests) == 2 and info.value.status == 429


@pytest.mark.anyio
async def test_client_is_reopened_after_aclose() -> None:
    async with running_server() as server:
        provider = OllamaProvider(server.url)
        await provider.chat(REQUEST)
        await provider.aclose()
        await provider.aclose()
        assert (await provider.chat(REQUEST)).content == "hello"
        await provider.aclose()


def test_tool_names_are_reversible_and_collision_safe() -> None:
    long_a, long_b = "x/" + "a" * 80, "x/" + "a" * 79 + "b"
    tools = ["fs/write", "fs__write", "web.fetch", "web_fetch", long_a, long_b, "ok-name_1"]
    names = ToolNames(tools)
    wire = [names.to_wire(t) for t in tools]
    assert len(set(wire)) == len(tools)
    assert all(len(w) <= 64 and w.replace("_", "").replace("-", "").isalnum() for w in wire)
    assert names.to_wire("fs__write") == "fs__write" and names.to_wire("ok-name_1") == "ok-name_1"
    assert names.to_wire("fs/write") != "fs__write"
    assert [names.from_wire(w) for w in wire] == tools
    assert ToolNames(["fs/write"]).to_wire("fs/write") == "fs__write"
    assert ToolNames(["fs/write"]).from_wire(" fs__write:") == "fs/write"


def test_hosts_are_normalised() -> None:
    assert normalize_hosts("gpu1:11434, http://gpu2:8080/ ,0.0.0.0", default_port=11434) == [
        "http://gpu1:11434",
        "http://gpu2:8080",
        "http://127.0.0.1:11434",
    ]
    with pytest.raises(LLMError):
        normalize_hosts(" , ")


def test_ollama_config_reads_ollama_host_from_env() -> None:
    provider = provider_from_config("ollama", model="qwen3", env={"OLLAMA_HOST": "gpu1:1234,gpu2"})
    assert isinstance(provider, OllamaProvider) and isinstance(provider, Provider)
    assert provider.http.pool.hosts == ["http://gpu1:1234", "http://gpu2:11434"] and provider.model == "qwen3"
    default = provider_from_config("ollama", env={})
    assert isinstance(default, OllamaProvider) and default.http.pool.hosts == ["http://localhost:11434"]
    explicit = provider_from_config("Ollama", base_url="http://h:1", env={"OLLAMA_HOST": "other"}, retries=0, stream=True)
    assert isinstance(explicit, OllamaProvider)
    assert explicit.http.pool.hosts == ["http://h:1"] and explicit.http.retries == 0 and explicit.stream


def test_openai_config_defaults_and_unknown_names() -> None:
    provider = provider_from_config("openai", env={})
    assert isinstance(provider, OpenAIProvider) and provider.http.pool.hosts == ["https://api.openai.com/v1"]
    with pytest.raises(LLMError, match="unknown LLM provider 'claude'.*ollama, openai"):
        provider_from_config("claude", env={})
    with pytest.raises(LLMError, match="bad option"):
        provider_from_config("openai", env={}, temprature=0.1)


@pytest.mark.anyio
async def test_openai_config_from_env_talks_to_the_server_with_the_key() -> None:
    async with running_server() as server:
        env = {"OPENAI_BASE_URL": f"{server.url}/v1", "OPENAI_API_KEY": "sk-env"}
        provider = provider_from_config("openai", model="m", env=env)
        assert (await provider.chat(REQUEST)).content == "hello"
        await provider.aclose()
        override = provider_from_config("openai", base_url=f"{server.url}/v1", api_key="sk-arg", env=env)
        await override.chat(REQUEST)
        await override.aclose()
    assert [r.headers["authorization"] for r in server.requests] == ["Bearer sk-env", "Bearer sk-arg"]
