"""OllamaProvider against a real HTTP server on 127.0.0.1 speaking /api/chat."""

from __future__ import annotations

from typing import Any

import pytest
from llm_servers import Behaviour, LLMServer

from agentctl.errors import LLMError
from agentctl.services.llm.base import ChatRequest, ToolSpec
from agentctl.services.llm.http import LLMHTTPError
from agentctl.services.llm.ollama import OllamaProvider

pytestmark = pytest.mark.anyio

WRITE = ToolSpec("fs/write", "Write a file", {"type": "object", "properties": {"path": {"type": "string"}}})
READ = ToolSpec("fs/read", "Read a file", {"type": "object"})


def ask(*tools: ToolSpec, **kw) -> ChatRequest:
    return ChatRequest(model="qwen3", messages=[{"role": "user", "content": "hi"}], tools=tools, **kw)


async def test_plain_answer_returns_content_tokens_and_sends_ollama_body(server: LLMServer) -> None:
    provider = OllamaProvider(server.url, keep_alive="5m", think=False)
    try:
        reply = await provider.chat(ask(WRITE, options={"temperature": 0.1, "max_tokens": 64, "format": "json"}))
    finally:
        await provider.aclose()
    assert (reply.content, reply.prompt_tokens, reply.completion_tokens, reply.model) == ("hello", 11, 5, "qwen3")
    assert reply.tool_calls == ()
    [req] = server.requests
    assert (req.method, req.path) == ("POST", "/api/chat")
    body = req.body
    assert body["model"] == "qwen3" and body["stream"] is False
    assert body["think"] is False and body["keep_alive"] == "5m" and body["format"] == "json"
    assert body["options"] == {"temperature": 0.1, "num_predict": 64}
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert body["tools"] == [
        {"type": "function", "function": {"name": "fs__write", "description": "Write a file", "parameters": dict(WRITE.parameters)}}
    ]


async def test_tool_calls_are_decoded_and_names_mapped_back(server: LLMServer) -> None:
    server.then(Behaviour(content="", tool_calls=[("fs__write", {"path": "a.txt"}), ("fs__read", {"path": "b"})]))
    provider = OllamaProvider(server.url)
    reply = await provider.chat(ask(WRITE, READ))
    await provider.aclose()
    assert [(c.name, dict(c.arguments), c.error) for c in reply.tool_calls] == [
        ("fs/write", {"path": "a.txt"}, None),
        ("fs/read", {"path": "b"}, None),
    ]
    assert len({c.id for c in reply.tool_calls}) == 2 and all(c.id for c in reply.tool_calls)


async def test_streaming_assembles_content_tool_calls_and_tokens(server: LLMServer) -> None:
    server.then(Behaviour(content="streamed answer text", tool_calls=[("fs__write", {"path": "x"})], prompt_tokens=30, completion_tokens=9))
    provider = OllamaProvider(server.url, stream=True)
    reply = await provider.chat(ask(WRITE))
    await provider.aclose()
    assert reply.content == "streamed answer text"
    assert [(c.name, dict(c.arguments)) for c in reply.tool_calls] == [("fs/write", {"path": "x"})]
    assert (reply.prompt_tokens, reply.completion_tokens) == (30, 9)
    assert server.requests[0].body["stream"] is True


async def test_history_with_tool_calls_is_sent_in_ollama_format(server: LLMServer) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "write it"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "name": "fs/write", "arguments": {"path": "a"}}]},
        {"role": "tool", "tool_call_id": "c1", "name": "fs/write", "content": {"ok": True}},
    ]
    provider = OllamaProvider(server.url, model="llama3")
    await provider.chat(ChatRequest(model="", messages=messages, tools=[WRITE]))
    await provider.aclose()
    body = server.requests[0].body
    assert body["model"] == "llama3"
    assert body["messages"][2] == {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "fs__write", "arguments": {"path": "a"}}}]}
    assert body["messages"][3] == {"role": "tool", "content": '{"ok": true}', "tool_name": "fs__write"}


async def test_server_errors_are_retried_until_success(server: LLMServer) -> None:
    server.then(Behaviour(status=500), Behaviour(status=503))
    provider = OllamaProvider(server.url, retries=3, backoff=0.001)
    reply = await provider.chat(ask())
    stats = provider.statistics()
    await provider.aclose()
    assert reply.content == "hello"
    assert len(server.requests) == 3
    assert (stats.requests, stats.retries, stats.failures) == (1, 2, 0)


async def test_server_error_forever_ends_in_llm_error_with_host_status_and_body(server: LLMServer) -> None:
    server.default = Behaviour(status=500, body='{"error": "model runner crashed"}')
    provider = OllamaProvider(server.url, retries=2, backoff=0.001)
    with pytest.raises(LLMHTTPError) as info:
        await provider.chat(ask())
    await provider.aclose()
    message = str(info.value)
    assert server.url in message and "HTTP 500" in message and "model runner crashed" in message and "3 attempts" in message
    assert info.value.status == 500 and info.value.attempts == 3
    assert len(server.requests) == 3
    assert provider.statistics().failures == 1


async def test_reply_slower_than_timeout_ends_in_llm_error(server: LLMServer) -> None:
    server.default = Behaviour(delay=5.0)
    provider = OllamaProvider(server.url, timeout=0.2, retries=1, backoff=0.001)
    with pytest.raises(LLMError, match="timed out"):
        await provider.chat(ask())
    await provider.aclose()
    assert len(server.requests) == 2


async def test_request_timeout_overrides_provider_timeout(server: LLMServer) -> None:
    server.default = Behaviour(delay=5.0)
    provider = OllamaProvider(server.url, timeout=300.0, retries=0)
    with pytest.raises(LLMError, match="timed out after 0.2s"):
        await provider.chat(ask(timeout=0.2))
    await provider.aclose()


@pytest.mark.parametrize("stream", [False, True])
async def test_malformed_reply_is_an_llm_error_not_retried(server: LLMServer, stream: bool) -> None:
    server.default = Behaviour(body="<html>gateway oops</html>")
    provider = OllamaProvider(server.url, stream=stream, backoff=0.001)
    with pytest.raises(LLMError, match="malformed reply.*gateway oops"):
        await provider.chat(ask())
    await provider.aclose()
    assert len(server.requests) == 1


async def test_reply_without_message_is_an_llm_error(server: LLMServer) -> None:
    server.default = Behaviour(body='{"model": "x", "done": true}')
    provider = OllamaProvider(server.url)
    with pytest.raises(LLMError, match="no message"):
        await provider.chat(ask())
    await provider.aclose()


async def test_bad_tool_argument_json_gives_tool_call_with_error(server: LLMServer) -> None:
    server.then(Behaviour(content="", tool_calls=[("fs__write", '{"path": "a.txt"')]))
    provider = OllamaProvider(server.url)
    reply = await provider.chat(ask(WRITE))
    await provider.aclose()
    [call] = reply.tool_calls
    assert call.name == "fs/write" and dict(call.arguments) == {}
    assert call.error is not None and "not valid JSON" in call.error


async def test_client_error_fails_at_once(server: LLMServer) -> None:
    server.default = Behaviour(status=404, body='{"error": "model \\"nope\\" not found"}')
    provider = OllamaProvider(server.url, retries=3, backoff=0.001)
    with pytest.raises(LLMHTTPError, match="HTTP 404.*not found") as info:
        await provider.chat(ask())
    await provider.aclose()
    assert info.value.attempts == 1 and len(server.requests) == 1


async def test_missing_model_is_an_llm_error_without_a_request(server: LLMServer) -> None:
    provider = OllamaProvider(server.url)
    with pytest.raises(LLMError, match="no model"):
        await provider.chat(ChatRequest(model="", messages=[]))
    assert server.requests == []
