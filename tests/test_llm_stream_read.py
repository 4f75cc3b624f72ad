"""Reading a streamed reply: lines cut anywhere by the transfer, and the connection kept.

Both wires (Ollama NDJSON, OpenAI SSE) against the real servers of ``llm_servers.py`` on
127.0.0.1; :class:`~agentctl.services.llm.http_provider.Lines` also on its own, at every
cut of a body.
"""

from __future__ import annotations

import anyio
import pytest
from llm_servers import Behaviour, LLMServer, running_server

from agentctl.services.llm.base import ChatReply, ChatRequest, ToolSpec
from agentctl.services.llm.http_provider import DRAIN_SECONDS, Lines
from agentctl.services.llm.ollama import OllamaProvider
from agentctl.services.llm.openai import OpenAIProvider

REPLY = "Grüße: the fox → jumps 🦊 over\nthe lazy dog."
WRITE = ToolSpec("fs/write", "Write a file", {"type": "object"})


def provider(kind: str, server: LLMServer) -> OllamaProvider | OpenAIProvider:
    if kind == "openai":
        return OpenAIProvider(f"{server.url}/v1", stream=True, retries=0)
    return OllamaProvider(server.url, stream=True, retries=0)


async def ask(prov: OllamaProvider | OpenAIProvider, fragments: list[str] | None = None) -> ChatReply:
    request = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}], tools=(WRITE,))
    on_delta = None if fragments is None else (lambda text, tools: fragments.append(text))
    return await prov.chat(request, on_delta)


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"])
def test_lines_are_the_same_wherever_the_body_is_cut(end: str) -> None:
    lines = ['data: {"a": "Grüße 🦊"}', "", ": keep-alive", 'data: {"b": 2}', "", "data: [DONE]"]
    body = end.join(lines).encode() + end.encode()
    want = [line.encode() for line in lines if line]

    def read(chunks: list[bytes]) -> list[bytes]:
        """The non-empty lines (readers skip empty ones; a line cut in two would show as two)."""
        splitter = Lines()
        lines = [line for chunk in chunks for line in splitter.feed(chunk)] + splitter.end()
        return [line for line in lines if line]

    for cut in range(len(body) + 1):
        assert read([body[:cut], body[cut:]]) == want, cut
    assert read([body[i:i + 1] for i in range(len(body))]) == want
    assert read([body[:-len(end)]]) == want  # no line end after the last line: it still counts


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["ollama", "openai"])
@pytest.mark.parametrize(("cut", "end", "gzip"), [(1, "\n", False), (7, "\r\n", False), (5, "\r", False),
                                                  (9, "\n", True)])
async def test_a_stream_cut_into_any_transfer_chunks_gives_the_whole_reply(kind: str, cut: int, end: str,
                                                                          gzip: bool) -> None:
    fragments: list[str] = []
    async with running_server() as server:
        server.then(Behaviour(content=REPLY, piece=5, cut=cut, line_end=end, gzip=gzip,
                              tool_calls=[("fs__write", {"path": "a", "content": "é"})]))
        prov = provider(kind, server)
        try:
            reply = await ask(prov, fragments)
        finally:
            await prov.aclose()
    assert reply.content == REPLY and "".join(fragments) == REPLY
    assert [(c.name, dict(c.arguments)) for c in reply.tool_calls] == [("fs/write", {"path": "a", "content": "é"})]
    assert (reply.prompt_tokens, reply.completion_tokens) == (11, 5)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["ollama", "openai"])
async def test_streamed_calls_one_after_another_keep_one_connection(kind: str) -> None:
    """Read to the end of its body, a streamed reply leaves its connection to the next call
    (closing it part way through, at the format's last chunk, cost a connection per call)."""
    async with running_server() as server:
        server.keep_alive = True
        prov = provider(kind, server)
        try:
            replies = [await ask(prov) for _ in range(4)]
        finally:
            await prov.aclose()
    assert [r.content for r in replies] == ["hello"] * 4
    assert server.connections == 1 and len(server.requests) == 4


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["ollama", "openai"])
async def test_a_body_left_open_after_its_last_chunk_costs_its_connection_not_the_reply(kind: str) -> None:
    seconds: list[float] = []
    async with running_server() as server:
        server.keep_alive = True
        server.then(Behaviour(content=REPLY, linger=60))
        prov = provider(kind, server)
        try:
            with anyio.fail_after(20):
                start = anyio.current_time()
                first = await ask(prov)
                seconds.append(anyio.current_time() - start)
                second = await ask(prov)
        finally:
            await prov.aclose()
    assert (first.content, second.content) == (REPLY, "hello")
    assert seconds[0] < DRAIN_SECONDS + 10  # not the 60 s the server lingered
    assert server.connections == 2  # the lingering one was given up
