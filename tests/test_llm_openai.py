"""OpenAIProvider against a real HTTP server on 127.0.0.1 speaking /v1/chat/completions."""

from __future__ import annotations

import json
from typing import Any

import pytest
from llm_servers import Behaviour, LLMServer, free_port

from agentctl.errors import LLMError
from agentctl.services.llm.base import ChatRequest, ToolSpec
from agentctl.services.llm.openai import OpenAIProvider

pytestmark = pytest.mark.anyio

KEY = "sk-test-SECRET-0123456789"
WRITE = ToolSpec("fs/write", "Write a file", {"type": "object", "properties": {"path": {"type": "string"}}})
SHELL = ToolSpec("shell.run", "Run a command", {"type": "object"})


def ask(*tools: ToolSpec, **kw) -> ChatRequest:
    return ChatRequest(model="gpt-test", messages=[{"role": "user", "content": "hi"}], tools=tools, **kw)


async def test_plain_answer_without_key_sends_no_authorization(server: LLMServer) -> None:
    provider = OpenAIProvider(f"{server.url}/v1")
    reply = await provider.chat(ask(options={"temperature": 0.2, "max_tokens": 10}))
    await provider.aclose()
    assert (reply.content, reply.prompt_tokens, reply.completion_tokens, reply.model) == ("hello", 11, 5, "gpt-test")
    [req] = server.requests
    assert req.path == "/v1/chat/completions"
    assert "authorization" not in req.headers
    assert req.body["temperature"] == 0.2 and req.body["max_tokens"] == 10 and req.body["stream"] is False
    assert "tools" not in req.body


async def test_key_is_sent_as_bearer_and_tools_use_wire_names(server: LLMServer) -> None:
    provider = OpenAIProvider(f"{server.url}/v1/", api_key=KEY)
    await provider.chat(ask(WRITE, SHELL))
    await provider.aclose()
    req = server.requests[0]
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert [t["function"]["name"] for t in req.body["tools"]] == ["fs__write", "shell_run"]
    assert all(t["type"] == "function" for t in req.body["tools"])
    assert req.body["tools"][0]["function"]["parameters"] == dict(WRITE.parameters)


async def test_tool_calls_with_null_content_decode_json_string_arguments(server: LLMServer) -> None:
    server.then(Behaviour(content="", tool_calls=[("fs__write", {"path": "a.txt"}), ("shell_run", {"cmd": "ls"})]))
    provider = OpenAIProvider(f"{server.url}/v1")
    reply = await provider.chat(ask(WRITE, SHELL))
    await provider.aclose()
    assert reply.content == ""
    assert [(c.id, c.name, dict(c.arguments), c.error) for c in reply.tool_calls] == [
        ("call_0", "fs/write", {"path": "a.txt"}, None),
        ("call_1", "shell.run", {"cmd": "ls"}, None),
    ]
    assert reply.to_message()["tool_calls"][0]["name"] == "fs/write"


@pytest.mark.parametrize("stream", [False, True])
async def test_bad_tool_argument_json_gives_tool_call_with_error(server: LLMServer, stream: bool) -> None:
    server.then(Behaviour(content="", tool_calls=[("fs__write", '{"path": "a.txt",,}')]))
    provider = OpenAIProvider(f"{server.url}/v1", stream=stream)
    reply = await provider.chat(ask(WRITE))
    await provider.aclose()
    [call] = reply.tool_calls
    assert call.name == "fs/write" and dict(call.arguments) == {}
    assert call.error is not None and "not valid JSON" in call.error


async def test_streaming_assembles_content_fragmented_tool_calls_and_usage(server: LLMServer) -> None:
    args = {"path": "notes/today.md", "content": "a longer body of text"}
    server.then(Behaviour(content="Let me write that.", tool_calls=[("fs__write", args), ("shell_run", {"cmd": "ls -la"})], prompt_tokens=40, completion_tokens=17))
    provider = OpenAIProvider(f"{server.url}/v1", stream=True)
    reply = await provider.chat(ask(WRITE, SHELL))
    await provider.aclose()
    assert reply.content == "Let me write that."
    assert [(c.id, c.name, dict(c.arguments)) for c in reply.tool_calls] == [
        ("call_0", "fs/write", args),
        ("call_1", "shell.run", {"cmd": "ls -la"}),
    ]
    assert (reply.prompt_tokens, reply.completion_tokens) == (40, 17)
    body = server.requests[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


async def test_history_is_sent_with_empty_content_and_json_string_arguments(server: LLMServer) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "write it"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "name": "fs/write", "arguments": {"path": "a"}, "error": None}]},
        {"role": "tool", "tool_call_id": "c1", "name": "fs/write", "content": "ok"},
    ]
    provider = OpenAIProvider(f"{server.url}/v1", model="default-model")
    await provider.chat(ChatRequest(model="", messages=messages, tools=[WRITE]))
    await provider.aclose()
    body = server.requests[0].body
    assert body["model"] == "default-model"
    assistant = body["messages"][1]
    assert assistant["content"] == ""
    assert assistant["tool_calls"] == [{"id": "c1", "type": "function", "function": {"name": "fs__write", "arguments": '{"path": "a"}'}}]
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"path": "a"}
    assert body["messages"][2] == {"role": "tool", "content": "ok", "tool_call_id": "c1"}


async def test_rate_limit_with_retry_after_is_retried(server: LLMServer) -> None:
    server.then(Behaviour(status=429, headers={"Retry-After": "0"}))
    provider = OpenAIProvider(f"{server.url}/v1", backoff=0.001)
    reply = await provider.chat(ask())
    stats = provider.statistics()
    await provider.aclose()
    assert reply.content == "hello" and len(server.requests) == 2 and stats.retries == 1


@pytest.mark.parametrize(
    "body",
    ['{"object": "chat.completion", "choices": []}', "not json at all", '{"error": {"message": "context length exceeded"}}'],
)
async def test_unusable_replies_are_llm_errors(server: LLMServer, body: str) -> None:
    server.default = Behaviour(body=body)
    provider = OpenAIProvider(f"{server.url}/v1")
    with pytest.raises(LLMError):
        await provider.chat(ask())
    await provider.aclose()
    assert len(server.requests) == 1


async def test_malformed_stream_chunk_is_an_llm_error(server: LLMServer) -> None:
    server.default = Behaviour(body="data: {broken\n\ndata: [DONE]\n\n")
    provider = OpenAIProvider(f"{server.url}/v1", stream=True)
    with pytest.raises(LLMError, match="malformed reply"):
        await provider.chat(ask())
    await provider.aclose()


@pytest.mark.parametrize(("body", "says"), [
    ("", "empty stream: it may not stream this request"),  # llama-cpp-python's answer to streamed tools
    ('data: {"choices": [{"delta": {"content": "hi"}}]}\n\n', "without \\[DONE\\] or a finish reason"),
])
async def test_a_stream_that_ends_early_says_how(server: LLMServer, body: str, says: str) -> None:
    server.default = Behaviour(body=body)
    provider = OpenAIProvider(f"{server.url}/v1", stream=True, retries=0)
    with pytest.raises(LLMError, match=says):
        await provider.chat(ask())
    await provider.aclose()


async def test_timeout_is_an_llm_error(server: LLMServer) -> None:
    server.default = Behaviour(delay=5.0)
    provider = OpenAIProvider(f"{server.url}/v1", timeout=0.2, retries=0)
    with pytest.raises(LLMError, match="timed out"):
        await provider.chat(ask())
    await provider.aclose()


async def test_key_never_appears_in_errors_or_repr(server: LLMServer) -> None:
    # The worst case: a server that echoes the key back in its error bodies.
    provider = OpenAIProvider(f"{server.url}/v1", api_key=KEY, retries=1, backoff=0.001)
    server.then(Behaviour(status=401, body=json.dumps({"error": f"Incorrect API key provided: {KEY}"})))
    with pytest.raises(LLMError) as unauthorized:
        await provider.chat(ask())
    server.default = Behaviour(status=500, body=f"upstream rejected {KEY}")
    with pytest.raises(LLMError) as broken:
        await provider.chat(ask())
    await provider.aclose()
    dead = OpenAIProvider(f"http://127.0.0.1:{free_port()}/v1", api_key=KEY, retries=0)
    with pytest.raises(LLMError, match="cannot connect") as refused:
        await dead.chat(ask())
    await dead.aclose()
    assert "HTTP 401" in str(unauthorized.value) and "***" in str(unauthorized.value)
    assert "HTTP 500" in str(broken.value) and "***" in str(broken.value)
    texts = [str(e.value) for e in (unauthorized, broken, refused)] + [repr(e.value) for e in (unauthorized, broken, refused)]
    texts += [repr(dead), repr(provider), repr(provider.statistics()), repr(provider.http)]
    assert not [t for t in texts if KEY in t]
