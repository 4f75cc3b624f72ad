"""Streaming's cost on the LLM pool: the same calls with replies streamed and not, and through bare httpx.

A minimal OpenAI-compatible server in its own process on 127.0.0.1 answers every call with
the same 24-token reply, spread over the same time either way: the first token 50 ms after
the request, then one token every 5 ms (about 165 ms a call). Asked with ``"stream": true``
it sends each token as an SSE chunk when it is due; otherwise it sends the whole reply when
the last token is due. N = 16 agents call through the real work plane and ``OpenAIProvider``
with streaming on (every fragment through ``on_delta``, coalesced into ``llm/delta`` events:
about three per call) and off; the baseline is N tasks streaming the same calls through
bare httpx (``client.stream`` + ``aiter_lines``). The figure the issue sets: calls/s with
streaming on over calls/s with it off, at least 0.97.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import time

import anyio
import anyio.abc
import httpx
import orjson

from agentctl import actions as act
from agentctl.events.log import open_event_log
from agentctl.runtime import AgentSpec, StepContext, open_runtime
from agentctl.services.llm.openai import OpenAIProvider
from agentctl.services.tools import default_registry
from agentctl.services.workers import LocalWorkPlane

from .harness import Figure, alternate, figure
from .llm_pool import _exact_timer_loop

TOKENS = 24
FIRST = 0.05
GAP = 0.005
_USAGE = {"prompt_tokens": 3, "completion_tokens": TOKENS}
WHOLE = orjson.dumps({"choices": [{"message": {"role": "assistant", "content": "tok " * TOKENS}}], "usage": _USAGE})
CHUNKS = [b"data: " + orjson.dumps({"choices": [{"delta": {"content": "tok "}, "finish_reason": None}]}) + b"\n\n"
          for _ in range(TOKENS)]
LAST = (b"data: " + orjson.dumps({"choices": [{"delta": {}, "finish_reason": "stop"}], "usage": _USAGE})
        + b"\n\ndata: [DONE]\n\n")


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def _serve(stream: anyio.abc.ByteStream) -> None:
    """Answer every request on a keep-alive connection, token by token or whole; end with the client."""
    async with stream:
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    buffer += await stream.receive()
                head, _, rest = buffer.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length")), 0)
                while len(rest) < length:
                    rest += await stream.receive()
                body, buffer = rest[:length], rest[length:]
                await anyio.sleep(FIRST)
                if b'"stream": true' not in body and b'"stream":true' not in body:
                    await anyio.sleep(GAP * (TOKENS - 1))
                    await stream.send(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                                      % (len(WHOLE), WHOLE))
                    continue
                await stream.send(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                                  b"transfer-encoding: chunked\r\n\r\n" + _chunk(CHUNKS[0]))
                for data in CHUNKS[1:]:
                    await anyio.sleep(GAP)
                    await stream.send(_chunk(data))
                await stream.send(_chunk(LAST) + b"0\r\n\r\n")


async def _server_main() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", backlog=256)
    print(listener.extra(anyio.abc.SocketAttribute.local_port), flush=True)
    await listener.serve(_serve)


async def _calls_per_second(mode: str, n_agents: int, calls_each: int) -> float:
    async with await anyio.open_process([sys.executable, "-m", "bench.llm_stream", "--serve"]) as server:
        assert server.stdout is not None
        port = int((await server.stdout.receive()).split()[0])
        try:
            if mode == "httpx":
                return await _run_raw(port, n_agents, calls_each)
            return await _run_agents(port, n_agents, calls_each, stream=mode == "on")
        finally:
            server.terminate()


async def _run_raw(port: int, n_agents: int, calls_each: int) -> float:
    """The baseline: the same streamed calls straight through httpx, no agents, pools or events."""
    limits = httpx.Limits(max_connections=n_agents, max_keepalive_connections=n_agents)
    body = orjson.dumps({"model": "bench", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    async with httpx.AsyncClient(limits=limits) as client:
        async def worker() -> None:
            for _ in range(calls_each):
                async with client.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions", content=body) as r:
                    async for _line in r.aiter_lines():
                        pass

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(n_agents):
                tg.start_soon(worker)
        return n_agents * calls_each / (time.perf_counter() - start)


async def _run_agents(port: int, n_agents: int, calls_each: int, *, stream: bool) -> float:
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


def _rate(mode: str, n_agents: int, calls_each: int) -> float:
    return anyio.run(functools.partial(_calls_per_second, mode, n_agents, calls_each))


def run(quick: bool, rounds: int) -> list[Figure]:
    """Calls/s with streaming on against off (the target) and against bare httpx, same run."""
    n, calls = 16, 6 if quick else 30
    rates = alternate(rounds, {mode: functools.partial(_rate, mode, n, calls) for mode in ("on", "off", "httpx")})
    ideal = f"ideal N/call time: {n / (FIRST + GAP * (TOKENS - 1)):.1f}/s"
    return [
        figure(f"LLM pool streaming on, {n} agents", "/s", rates["on"], "streaming off, same run", rates["off"], 0.97,
               note=ideal),
        figure(f"LLM pool streaming on, {n} agents", "/s", rates["on"], "bare httpx streaming", rates["httpx"], None),
        figure(f"LLM pool streaming off, {n} agents", "/s", rates["off"], "bare httpx streaming", rates["httpx"], None),
    ]


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"]:
    anyio.run(_server_main, backend_options={"loop_factory": _exact_timer_loop})
