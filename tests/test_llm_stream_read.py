"""Reading a streamed reply: lines cut anywhere by the transfer, and the connection kept.

Both wires (Ollama NDJSON, OpenAI SSE) against the real servers of ``llm_servers.py`` on
127.0.0.1; :class:`~agentctl.services.llm.http_provider.Lines` also on its own, at every
cut of a body.
"""

from __future__ import annotations

import anyio
import pytest
from llm_servers import Behaviour, LLMServer, running_server

from agentctl.errors import LLMError
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


_A = '{"choices": [{"delta": {"content": "Grüße 🦊"}, "finish_reason": null}]}'
_END = '{"choices": [{"delta": {}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 2, "completion_tokens": 3}}'


@pytest.mark.anyio
@pytest.mark.parametrize("cut", [1, 3, 4096])
@pytest.mark.parametrize("body", [
    f"data:{_A}\n\ndata:{_END}\n\ndata:[DONE]\n\n",                                    # no space after "data:"
    f"data: {_A}\r\n\r\ndata: {_END}\r\n\r\ndata: [DONE]\r\n\r\n",                     # CRLF
    f": keep-alive\n\nevent: message\nid: 7\nretry: 10\ndata: {_A}\n\n:\n\ndata: {_END}\n\ndata: [DONE]  \n\n",
    f"  data: {_A}\n\n\tdata: {_END}\n\n data: [DONE]\n\n",                             # indented lines
    f'data: {_A[:-1]}, "error": null}}\n\ndata: {_END}\n\n',                           # error: null; no [DONE]
], ids=["no-space", "crlf", "comments-fields", "indented", "error-null"])
async def test_sse_as_servers_spell_it_gives_the_whole_reply(body: str, cut: int) -> None:
    """Spellings the SSE reader's fast path (``data: {...}``) does not take still read right,
    wherever the transfer cuts them (through a UTF-8 character too)."""
    fragments: list[str] = []
    async with running_server() as server:
        server.then(Behaviour(body=body, cut=cut))
        prov = OpenAIProvider(f"{server.url}/v1", stream=True, retries=0)
        try:
            reply = await ask(prov, fragments)
        finally:
            await prov.aclose()
    assert (reply.content, "".join(fragments)) == ("Grüße 🦊", "Grüße 🦊")
    assert (reply.prompt_tokens, reply.completion_tokens) == (2, 3)


@pytest.mark.anyio
@pytest.mark.parametrize(("kind", "body", "says"), [
    ("openai", f"data: {_A}\n\ndata: {{broken\n\n", "malformed reply, not JSON: {broken"),
    ("openai", "data: [1, 2]\n\n", "malformed reply, not a JSON object: [1, 2]"),
    ("openai", 'data: "[DONE]"\n\n', "not a JSON object"),
    ("openai", 'data: {"error": {"message": "model overloaded"}}\n\n', "server error: model overloaded"),
    ("openai", 'data: {"choices": [{"delta": {"content": 5}}]}\n\n', "malformed reply (Expected `str | null`, got `int` - at `$.choices[0].delta.content`)"),
    ("openai", 'data: {"choices": [{"delta": {"content": ["a"]}}]}\n\n', "malformed reply (Expected `str | null`, got `array` - at `$.choices[0].delta.content`)"),
    ("openai", 'data: {"choices": "oops"}\n\n', "malformed reply (Expected `array | null`, got `str` - at `$.choices`)"),
    ("openai", "data: {" + "x" * 1_000_000 + "\n\n", "malformed reply, not JSON: {xxx"),
    ("ollama", '{"message": {"content": "a"}}\n{broken\n', "malformed reply, not JSON: {broken"),
    ("ollama", "[1]\n", "not a JSON object"),
    ("ollama", '{"error": "model \\"m\\" not found"}\n', 'server error: model "m" not found'),
    ("ollama", '{"message": {"content": 5}}\n', "malformed reply (Expected `str | null`, got `int` - at `$.message.content`)"),
    ("ollama", '{"message": "oops"}\n', "malformed reply (Expected `object | null`, got `str` - at `$.message`)"),
])
async def test_a_hostile_stream_is_one_clear_error_line(kind: str, body: str, says: str) -> None:
    async with running_server() as server:
        server.then(Behaviour(body=body, cut=4096))
        prov = provider(kind, server)
        try:
            with pytest.raises(LLMError) as caught:
                await ask(prov)
        finally:
            await prov.aclose()
    message = str(caught.value)
    assert says in message and "\n" not in message and len(message) < 600, message


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["ollama", "openai"])
async def test_a_huge_fragment_across_many_transfer_chunks_comes_whole(kind: str) -> None:
    huge = "é" * 500_000 + "🦊"  # 1 MB of UTF-8 in one chunk of the wire format
    fragments: list[str] = []
    async with running_server() as server:
        server.then(Behaviour(content=huge, piece=len(huge), cut=4093))
        prov = provider(kind, server)
        try:
            reply = await ask(prov, fragments)
        finally:
            await prov.aclose()
    assert reply.content == huge and fragments == [huge]
