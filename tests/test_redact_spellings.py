"""A known secret made of what JSON and repr escape (quotes, backslashes, control characters,
non-ASCII, ``</script>``, a JSON fragment) is hidden however a program quoted it before it
reached an event: through the real log writer, and through a real run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from anyio.from_thread import start_blocking_portal
from cli_helpers import of
from llm_servers import Behaviour, running_server
from typer.testing import CliRunner

from agentctl.cli.main import app
from agentctl.events.log import open_event_log
from agentctl.events.reader import read_events
from agentctl.redact import REDACTED, Redactor
from agentctl.services.llm.http import LLMHTTPError, PooledHTTP
from agentctl.services.llm.http_provider import json_object

SECRETS = {
    "quotes": 'pw"with"quotes-7Kq',
    "backslashes": "C:\\vault\\k3y\\x9Z",
    "newline": "line-one-8Hd\nline-two-3Lp\t!",
    "slash-script": "/srv/s3cr3t/</script><!--x7",
    "unicode": "pässwörd-ключ-密码-☃\u2028x\x7f",
    "json-fragment": '{"vault":"x7Q!zz","pin":[31,41]}',
}


def _quoted(text: str) -> set[str]:
    return {json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1], repr(text)[1:-1],
            repr(text + '"')[1:-2]}


def _forbidden(secret: str) -> set[bytes]:
    """Every 8-character piece of the secret, raw or quoted once or twice, as text and as it
    sits inside a JSON string of the file."""
    texts = {secret} | _quoted(secret)
    texts |= {q for t in texts for q in _quoted(t)}
    spelled = {t.encode("utf-8", "surrogatepass") for t in texts}
    spelled |= {orjson.dumps(t)[1:-1] for t in texts}
    return {b[i:i + 8] for b in spelled for i in range(len(b) - 7)}


def _assert_hidden(secret: str, data: bytes) -> None:
    leaked = sorted(p for p in _forbidden(secret) if p in data)
    assert not leaked, leaked[:5]


def _error_of(path: Path) -> str:
    try:
        path.read_text()
    except OSError as exc:
        return str(exc)  # FileNotFoundError spells the path with repr
    raise AssertionError(f"{path} exists")


@pytest.mark.anyio
@pytest.mark.parametrize("name", list(SECRETS))
async def test_a_secret_of_json_punctuation_is_hidden_in_every_spelling(name: str, tmp_path: Path) -> None:
    secret = SECRETS[name]
    path = tmp_path / "events.jsonl"
    seen: list[dict[str, Any]] = []
    arguments = {"q": secret, secret: 1, "nested": {"list": [f"pre {secret} post"]},
                 "as_json": json.dumps({"q": secret}), "as_utf8_json": json.dumps({"q": secret}, ensure_ascii=False),
                 "reply_json": json.dumps({"function": {"arguments": json.dumps({"path": secret})}})}
    parsed = json.loads(secret) if name == "json-fragment" else secret
    async with open_event_log(path, "r", redactor=Redactor([secret])) as log:
        log.subscribe(seen.append)
        log.emit("tool/requested", "a", {"call_id": "c1", "tool": "fs/read", "arguments": arguments})
        log.emit("tool/result", "a", {"call_id": "c1", "tool": "fs/read", "ok": True, "error": None,
                                      "result": {"stdout": f"out {secret}\n", "data": parsed, "keep": "visible",
                                                 "repr": repr({"k": secret})}})
        log.emit("tool/result", "a", {"call_id": "c2", "tool": "x", "ok": True,  # orjson refuses 2**70: repr'd
                                      "result": {"big": 2**70, "s": secret}})
        log.emit("llm/result", "a", {"call_id": "c3", "reply": {
            "content": f"the key is {secret}!", "tool_calls": [{"id": "t", "name": "fs__read", "arguments": {"path": secret}}]}})
        log.emit("agent/error", "a", {"error": _error_of(tmp_path / "no" / secret), "error_type": "ToolError",
                                      "where": "step 1", "unread": 0, "unread_from": {}})
        log.emit("agent/error", "a", {"error": ValueError(secret), "error_type": "ValueError", "where": "x"})
        log.emit("agent/error", "a", {"error": f"malformed reply: {json.dumps({'choices': [{'text': secret}]})}"})
    data = path.read_bytes()
    _assert_hidden(secret, data)
    for event in seen:  # the live view and plain output get the same
        _assert_hidden(secret, orjson.dumps(event))
    requested, result, big, reply, missing, exc, malformed = read_events(path)
    # Only the secret went: the text around it, and fields without it, are as they were.
    assert requested["arguments"]["nested"] == {"list": ["pre *** post"]}
    assert requested["arguments"][REDACTED] == 1
    assert json.loads(requested["arguments"]["as_json"]) == {"q": REDACTED}
    assert result["result"]["stdout"] == "out ***\n" and result["result"]["keep"] == "visible"
    assert result["result"]["data"] == REDACTED
    assert reply["reply"]["content"] == "the key is ***!"
    assert "No such file or directory" in missing["error"] and REDACTED in missing["error"]
    assert exc["error"] == "ValueError('***')"
    assert json.loads(malformed["error"].removeprefix("malformed reply: ")) == {"choices": [{"text": REDACTED}]}
    assert big["call_id"] == "c2"


NASTY = 'pw"q\\b\n/</script>é{"a":[1]}-Zq9'


def test_a_nasty_secret_is_nowhere_in_a_real_run(tmp_path: Path, monkeypatch) -> None:
    # A model reply and a tool call carrying it, a tool (the shell) printing it, a tool error
    # quoting it (fs/write's path check uses repr) and an HTTP error whose JSON body holds it.
    ws, run = tmp_path / "ws", tmp_path / "run"
    ws.mkdir()
    monkeypatch.setenv("VAULT_DSN", NASTY)
    plan: dict[str, Any] = {
        "name": "leaky",
        "settings": {"shell": True, "secrets": ["VAULT_DSN"]},
        "defaults": {"provider": "openai", "model": "m", "restart": "temporary"},
        "tasks": [
            {"id": "sheller", "agent": "script", "tools": ["shell/run"],
             "steps": [{"call": {"tool": "shell/run", "args": {"command": 'printf "%s" "$VAULT_DSN"'}}}]},
            {"id": "talker", "agent": "llm", "instructions": "leak it", "tools": ["fs/write"]},
        ],
    }
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(running_server()) as server:
        plan["defaults"]["base_url"] = server.url + "/v1"
        server.then(
            Behaviour(content=f"the dsn is {NASTY}", tool_calls=[("fs__write", {"path": f"/{NASTY}", "content": NASTY})]),
            Behaviour(status=400, body=json.dumps({"error": {"message": f"bad key {NASTY}"}})),
        )
        (ws / "plan.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
        result = CliRunner().invoke(app, ["run", str(ws / "plan.yaml"), "--no-ui", "--run-dir", str(run),
                                          "--workspace", str(ws)])
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert result.exit_code in (0, 1), output
    _assert_hidden(NASTY, output.encode())
    files = [f for f in run.rglob("*") if f.is_file() and f.name != "plan.v1.yaml"]  # the user's own plan text
    for f in files:
        _assert_hidden(NASTY, f.read_bytes())
    evs = list(read_events(run / "events.jsonl"))
    assert of(evs, "tool/result", "sheller")[0]["result"]["stdout"] == REDACTED
    assert of(evs, "llm/result", "talker")[0]["reply"]["content"] == "the dsn is ***"
    denied = of(evs, "tool/result", "talker")[0]
    assert denied["ok"] is False and "must be relative" in denied["error"] and REDACTED in denied["error"]
    failed = next(e for e in of(evs, "llm/result", "talker") if not e["ok"])
    assert "HTTP 400" in failed["error"] and "bad key ***" in failed["error"]


async def read_json(response: Any) -> dict[str, Any]:
    return json_object(await response.aread())


async def read_body(response: Any) -> bytes:
    return await response.aread()


# The provider's key placed where a cut falls inside it: an error status's body cut at 200
# characters; a reply that is not JSON, quoted by its reader, across its 200th character
# (where readers cut before), across the message's excerpt, or past both.
CUTS = [(401, read_body, "HTTP 401", b) for b in (170, 180, 188)] + [
    (200, read_json, "malformed reply, not JSON", b) for b in (180, 190, 265, 280, 5000)]


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "read", "says", "before"), CUTS)
async def test_a_reply_quoted_in_an_error_is_redacted_before_it_is_cut_short(
        status: int, read: Any, says: str, before: int) -> None:
    key = "sk-provider-key-0123456789abcdef"
    async with running_server() as server:
        http = PooledHTTP([server.url], retries=0, secrets=[key])
        server.then(Behaviour(status=status, body="x" * before + key + " was refused"))
        with pytest.raises(LLMHTTPError) as caught:
            await http.post("/v1/chat/completions", {}, read)
        await http.aclose()
    message = str(caught.value)
    assert says in message and len(message) < 400
    assert not [key[i:i + 8] for i in range(len(key) - 7) if key[i:i + 8] in message], message
