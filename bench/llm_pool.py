"""The LLM pool: N concurrent LLM agents against bare httpx making the same calls at the same concurrency.

A minimal OpenAI-compatible server runs in its own process on 127.0.0.1 and answers
``POST /v1/chat/completions`` a fixed latency after the request is in (its event loop waits
with select(), whose timeout counts microseconds: see :func:`exact_timer_loop`). N agents
(N = 16 and 64; replies of 50 ms and of 1 s) each make calls through the real work plane and
``OpenAIProvider``; the baseline is N tasks posting the same calls through one
``httpx.AsyncClient`` with the same pool bound. The figure is agentctl's calls/s over httpx's.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import selectors
import sys
import time

import anyio
import httpx
import orjson

from agentctl import actions as act
from agentctl.events.log import open_event_log
from agentctl.runtime import AgentSpec, StepContext, open_runtime
from agentctl.services.llm.openai import OpenAIProvider
from agentctl.services.tools import default_registry
from agentctl.services.workers import LocalWorkPlane

from .harness import Figure, alternate, figure, stop_server
from .reply_server import serve_replies

REPLY = orjson.dumps({"choices": [{"message": {"role": "assistant", "content": "ok"}}],
                      "usage": {"prompt_tokens": 3, "completion_tokens": 1}})


async def _serve(latency: float, stream: anyio.abc.ByteStream) -> None:
    """Answer every request on a keep-alive connection after ``latency``; end with the client."""
    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
        await serve_replies(stream, REPLY, latency)


async def _server_main(latency: float) -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", backlog=256)
    print(listener.extra(anyio.abc.SocketAttribute.local_port), flush=True)
    await listener.serve(functools.partial(_serve, latency))


async def _calls_per_second(latency: float, n_agents: int, calls_each: int, *, raw: bool = False) -> float:
    # The server is another process, as a model server is: it does not share our core.
    async with await anyio.open_process([sys.executable, "-m", "bench.llm_pool", "--serve", str(latency)]) as server:
        assert server.stdout is not None
        port = int((await server.stdout.receive()).split()[0])
        try:
            run = _run_raw if raw else run_agents
            return await run(port, n_agents, calls_each)
        finally:
            await stop_server(server)


async def _run_raw(port: int, n_agents: int, calls_each: int) -> float:
    """The baseline: the same calls straight through httpx, no agents, pools or events."""
    limits = httpx.Limits(max_connections=n_agents, max_keepalive_connections=n_agents)
    async with httpx.AsyncClient(limits=limits) as client:
        async def worker() -> None:
            for _ in range(calls_each):
                await client.post(f"http://127.0.0.1:{port}/v1/chat/completions", content=b"{}")

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(n_agents):
                tg.start_soon(worker)
        return n_agents * calls_each / (time.perf_counter() - start)


async def run_agents(port: int, n_agents: int, calls_each: int, *, stream: bool = False) -> float:
    """N agents making ``calls_each`` calls each through the real work plane; calls/s."""
    provider = OpenAIProvider(f"http://127.0.0.1:{port}/v1", model="bench", retries=0, stream=stream)
    async with open_event_log(None, "bench", durability="none") as log:
        tools = default_registry()
        plane = LocalWorkPlane(log.emit, tools=tools, providers={"openai": provider}, default_provider="openai",
                               llm_workers=max(n_agents, 4))

        def caller(ctx: StepContext) -> list:
            if ctx.step_no > calls_each:
                return [act.done()]
            return [act.call_llm([{"role": "user", "content": "hi"}])]

        async with open_runtime(log.emit, tools=tools, plane=plane) as rt:
            start = time.perf_counter()
            for i in range(n_agents):
                rt.spawn(AgentSpec(f"a{i}", caller, provider="openai", model="bench"))
            await rt.wait_idle()
            elapsed = time.perf_counter() - start
    await provider.aclose()
    return n_agents * calls_each / elapsed


def _rate(latency: float, n_agents: int, calls_each: int, *, raw: bool) -> float:
    return anyio.run(functools.partial(_calls_per_second, latency, n_agents, calls_each, raw=raw))


def run(quick: bool, rounds: int) -> list[Figure]:
    """Achieved calls/s against bare httpx's, for N = 16 and 64 and replies of 50 ms and 1 s."""
    figures = []
    for latency, calls in ((0.05, 8 if quick else 40), (1.0, 2 if quick else 5)):
        for n in (16, 64):
            rates = alternate(rounds, {
                "agentctl": functools.partial(_rate, latency, n, calls, raw=False),
                "httpx": functools.partial(_rate, latency, n, calls, raw=True),
            })
            figures.append(figure(f"LLM pool, {n} agents, {latency * 1000:g} ms server", "/s", rates["agentctl"],
                                  "bare httpx, same N", rates["httpx"], 0.97,
                                  note=f"ideal N/latency: {n / latency:.1f}/s"))
    return figures


def exact_timer_loop() -> asyncio.AbstractEventLoop:
    """An event loop whose sleeps end on time: epoll's timeout counts whole milliseconds,
    rounded up, so each 50 ms answer came 0-1 ms late and answers due within the same
    millisecond went out together; select() counts microseconds."""
    return asyncio.SelectorEventLoop(selectors.SelectSelector())


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"]:
    anyio.run(_server_main, float(sys.argv[2]), backend_options={"loop_factory": exact_timer_loop})
