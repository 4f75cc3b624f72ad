"""Streaming's cost on the LLM pool: the same calls with replies streamed and not, and through bare httpx.

A minimal OpenAI-compatible server in its own process on 127.0.0.1 answers every call with
the same reply, 50 ms after the request: asked with ``"stream": true`` as SSE chunks
(chunked transfer encoding, one chunk per token, then the finish reason with the usage,
then ``[DONE]``), else as one JSON body. N agents call through the real work plane and
``OpenAIProvider`` with streaming on (every fragment through ``on_delta``, coalesced into
``llm/delta`` events) and off, alternating, in one run.

* **The LLM pool bench's workload, streamed or not** (the issue's bound: on/off at least
  0.97): bench/llm_pool.py's one-token reply, N = 16 and 64; the server sends the whole
  reply at once either way, as the LLM pool bench's server does, so the figure is what
  streaming costs agentctl: reading SSE, ``on_delta``, the delta events.
* **24 tokens at once**, N = 16, the same bound: harder, each call's 25 chunks read and
  parsed in one burst.
* **One call at a time, client CPU per call**: the same calls through the work plane (its
  flusher running, as in a run), one after another on one connection, the server answering
  at once. No agents race for the core, so this figure holds on a busy machine, where the
  pool's rates do not.
* **Token by token, for context**: the tokens come 5 ms apart (the whole body when the last
  is due, when not streamed). Against bare httpx streaming the same calls
  (``client.stream`` + ``aiter_lines``) this is agentctl's own overhead on a realistic
  stream; on/off here also counts the 24 socket reads per call that streaming needs on any
  client.
"""

from __future__ import annotations

import contextlib
import functools
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import anyio.abc
import httpx
import orjson

from agentctl.events.log import open_event_log
from agentctl.services.llm.base import ChatRequest
from agentctl.services.llm.openai import OpenAIProvider
from agentctl.services.tools import default_registry
from agentctl.services.workers import LocalWorkPlane

from .harness import Figure, alternate, figure, stop_server
from .llm_pool import exact_timer_loop, run_agents
from .reply_server import requests

TOKENS = 24
FIRST = 0.05
_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@dataclass(frozen=True)
class _Reply:
    """One reply of ``tokens`` tokens in both forms, built once (as the plain one always was:
    building the streamed one per request was server work on one side only)."""

    tokens: int

    @functools.cached_property
    def chunks(self) -> list[bytes]:
        return [b"data: " + orjson.dumps({"choices": [{"delta": {"content": "tok "}, "finish_reason": None}]}) + b"\n\n"
                for _ in range(self.tokens)]

    @functools.cached_property
    def last(self) -> bytes:
        usage = {"prompt_tokens": 3, "completion_tokens": self.tokens}
        return (b"data: " + orjson.dumps({"choices": [{"delta": {}, "finish_reason": "stop"}], "usage": usage})
                + b"\n\ndata: [DONE]\n\n")

    @functools.cached_property
    def plain(self) -> bytes:
        whole = orjson.dumps({"choices": [{"message": {"role": "assistant", "content": "tok " * self.tokens}}],
                              "usage": {"prompt_tokens": 3, "completion_tokens": self.tokens}})
        return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(whole), whole)

    @functools.cached_property
    def streamed(self) -> bytes:
        return _HEAD + b"".join(map(_chunk, [*self.chunks, self.last])) + b"0\r\n\r\n"


async def _serve(gap: float, first: float, reply: _Reply, stream: anyio.abc.ByteStream) -> None:
    """Answer every request on a keep-alive connection ``first`` seconds after it is in, its tokens
    ``gap`` apart (0: at once); end with the client."""
    async with stream:
        with contextlib.suppress(anyio.BrokenResourceError):
            async for _, body in requests(stream):
                await anyio.sleep(first)
                if b'"stream": true' not in body and b'"stream":true' not in body:
                    if gap:
                        await anyio.sleep(gap * (reply.tokens - 1))
                    await stream.send(reply.plain)
                    continue
                if not gap:
                    await stream.send(reply.streamed)
                    continue
                await stream.send(_HEAD + _chunk(reply.chunks[0]))
                for data in reply.chunks[1:]:
                    await anyio.sleep(gap)
                    await stream.send(_chunk(data))
                await stream.send(_chunk(reply.last) + b"0\r\n\r\n")


async def _server_main(gap: float, first: float, tokens: int) -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", backlog=256)
    print(listener.extra(anyio.abc.SocketAttribute.local_port), flush=True)
    await listener.serve(functools.partial(_serve, gap, first, _Reply(tokens)))


@contextlib.asynccontextmanager
async def _server(gap: float, first: float = FIRST, tokens: int = TOKENS) -> AsyncIterator[int]:
    """The server in its own process (it does not share our core); its port."""
    command = [sys.executable, "-m", "bench.llm_stream", "--serve", str(gap), str(first), str(tokens)]
    async with await anyio.open_process(command) as server:
        assert server.stdout is not None
        try:
            yield int((await server.stdout.receive()).split()[0])
        finally:
            await stop_server(server)


async def _calls_per_second(mode: str, gap: float, n_agents: int, calls_each: int, tokens: int) -> float:
    async with _server(gap, tokens=tokens) as port:
        cpu = time.process_time()
        if mode == "httpx":
            rate = await _run_raw(port, n_agents, calls_each)
        else:
            rate = await run_agents(port, n_agents, calls_each, stream=mode == "on")
        # The client's own CPU per call (the server is another process): what streaming adds,
        # however busy the machine is; the rate depends on that too.
        _cpu_us[(mode, gap, tokens)].append((time.process_time() - cpu) / (n_agents * calls_each) * 1e6)
        return rate


_cpu_us: defaultdict[tuple[str, float, int], list[float]] = defaultdict(list)


async def _cpu_one_at_a_time(stream: bool, calls: int) -> float:
    """Client CPU per call (us): ``calls`` calls through the work plane, one after another."""
    async with _server(0.0, first=0.0) as port:
        provider = OpenAIProvider(f"http://127.0.0.1:{port}/v1", model="bench", retries=0, stream=stream)
        request = ChatRequest(model="bench", messages=[{"role": "user", "content": "hi"}])
        async with open_event_log(None, "bench", durability="none") as log, anyio.create_task_group() as tg:
            plane = LocalWorkPlane(log.emit, tools=default_registry(), providers={"openai": provider},
                                   default_provider="openai")
            tg.start_soon(plane.serve)
            for _ in range(20):  # the connection, first-call imports
                await plane.call_llm("a", request)
            cpu = time.process_time()
            for _ in range(calls):
                await plane.call_llm("a", request)
            used = time.process_time() - cpu
            tg.cancel_scope.cancel()
        await provider.aclose()
    return used / calls * 1e6


def _cpu(stream: bool, calls: int) -> float:
    return anyio.run(_cpu_one_at_a_time, stream, calls)


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


def _rate(mode: str, gap: float, n_agents: int, calls_each: int, tokens: int = TOKENS) -> float:
    return anyio.run(functools.partial(_calls_per_second, mode, gap, n_agents, calls_each, tokens))


def run(quick: bool, rounds: int) -> list[Figure]:
    """Calls/s with streaming on against off (the target) and, token by token, against bare httpx;
    the client's CPU per call beside each."""
    n, calls, gap = 16, 8 if quick else 40, 0.005
    at_once = alternate(rounds, {mode: functools.partial(_rate, mode, 0.0, n, calls) for mode in ("on", "off")})
    # The LLM pool bench's own workload (bench/llm_pool.py): a one-token reply, streamed as a
    # server streams it (its token, then the finish reason with the usage, then [DONE]).
    pool = {agents: alternate(rounds, {mode: functools.partial(_rate, mode, 0.0, agents, calls, 1) for mode in ("on", "off")})
            for agents in (16, 64)}
    spread = alternate(rounds, {mode: functools.partial(_rate, mode, gap, n, calls // 2) for mode in ("on", "off", "httpx")})
    one = alternate(rounds, {mode: functools.partial(_cpu, mode == "on", calls * 10) for mode in ("on", "off")})
    cpu = {key: statistics.median(values) for key, values in _cpu_us.items()}
    return [
        *(figure(f"LLM pool bench's reply streamed, {agents} agents, 50 ms", "/s", pool[agents]["on"],
                 "streaming off, same run", pool[agents]["off"], 0.97, note="bench/llm_pool.py's one-token reply")
          for agents in (16, 64)),
        figure(f"LLM pool streamed, {TOKENS} tokens at once, {n} agents, 50 ms", "/s", at_once["on"], "streaming off, same run", at_once["off"], 0.97,
               note=f"ideal N/latency: {n / FIRST:.1f}/s"),
        figure("  client CPU per call, streamed", "us", cpu["on", 0.0, TOKENS], "streaming off, same run", cpu["off", 0.0, TOKENS], None,
               higher=False),
        figure("  client CPU per call, one at a time", "us", one["on"], "streaming off, same run", one["off"], None,
               higher=False, note="through the work plane, server answering at once"),
        figure(f"LLM pool token by token, {n} agents", "/s", spread["on"], "streaming off, same run", spread["off"], None,
               note=f"ideal: {n / (FIRST + gap * (TOKENS - 1)):.1f}/s"),
        figure(f"LLM pool token by token, {n} agents", "/s", spread["on"], "bare httpx streaming", spread["httpx"], None),
        figure("  client CPU per call, token by token", "us", cpu["on", gap, TOKENS], "bare httpx streaming", cpu["httpx", gap, TOKENS],
               None, higher=False, note=f"streaming off: {cpu['off', gap, TOKENS]:.0f} us"),
    ]


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"]:
    anyio.run(_server_main, float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]),
              backend_options={"loop_factory": exact_timer_loop})
