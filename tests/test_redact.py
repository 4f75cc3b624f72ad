"""Secrets never leave the process: the redactor's rules, the event log, and a whole run.

The end-to-end test plants one secret in the environment (the provider key), names a second
in ``settings.secrets``, and sends both every way a run can carry them: a message body, a
tool result (``env`` through the shell tool), a model reply, a tool call's arguments and an
agent's result. Neither appears in any file under the run directory nor on stdout/stderr.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import anyio
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
from agentctl.redact import REDACTED, Redactor, is_secret_key

KEY = "sk-planted-0123456789abcdef"
DB = "postgres://app:hunter2-hunter2@db/prod"
LITERAL = "pw-in-a-body-42"


@pytest.mark.parametrize("key", ["api_key", "apiKey", "OPENAI_API_KEY", "X-Auth-Token", "Authorization", "token",
                                 "clientSecret", "db_password", "PASSWD", "session_cookie", "aws_secret_access_key",
                                 "private-key", "credentials", "APIKEY"])
def test_keys_that_name_secrets(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["max_tokens", "prompt_tokens", "tokens", "keys", "tokenizer", "monkey", "path",
                                 "content", "author", "passage", "body", "kind"])
def test_keys_that_do_not(key: str) -> None:
    assert not is_secret_key(key)


def test_values_are_hidden_wherever_they_sit_and_the_input_is_untouched() -> None:
    r = Redactor.for_run({"OPENAI_API_KEY": KEY, "DB_URL": DB, "HOME": "/root", "SHORT_TOKEN": "abc"}, names=["DB_URL"])
    data = {"text": f"key={KEY} db={DB}", "list": [KEY, {"nested": f"<{KEY}>"}], KEY: 1,
            "headers": {"X-Api-Key": "anything", "accept": "json"}, "home": "/root", "n": "abc"}
    out = r.value(data)
    assert out == {"text": "key=*** db=***", "list": ["***", {"nested": "<***>"}], "***": 1,
                   "headers": {"X-Api-Key": REDACTED, "accept": "json"}, "home": "/root", "n": "abc"}
    assert data["text"] == f"key={KEY} db={DB}"
    assert r.secrets == tuple(sorted((KEY, DB), key=len, reverse=True))  # HOME is no secret; 'abc' too short


def test_mcp_env_values_with_secret_names_are_known() -> None:
    r = Redactor.for_run({}, mcp_env=[{"CALC_TOKEN": "tok-value-123", "MODE": "production"}])
    assert r.text("tok-value-123 in production") == "*** in production"


def test_a_secret_with_json_escapes_is_found_in_the_encoded_line() -> None:
    tricky = 'a"b\\c\nd-secret'
    r = Redactor([tricky])
    assert r.suspects({}, orjson.dumps({"v": f"x{tricky}y"}))
    assert r.suspects({}, orjson.dumps({"v": repr(tricky)}))  # as an exception's message spells it
    assert not r.suspects({}, orjson.dumps({"v": tricky[:8], "w": tricky[8:]}))  # split: not recognised
    assert r.value({"v": f"x{tricky}y"}) == {"v": "x***y"}


@dataclass
class Creds:
    user: str
    password: str


def test_the_cheap_test_finds_secret_keys_at_any_depth_and_inside_what_it_cannot_walk() -> None:
    r = Redactor()
    assert not r.suspects({"body": {"n": 1, "items": [{"path": "a"}, ("x", 2)]}, "tools": ("fs/read",)}, b"")
    assert r.suspects({"body": {"items": [{"deep": {"apiKey": 1}}]}}, b"")
    assert r.suspects({"result": Creds("u", "p")}, b"")  # a dataclass: only the encoded form shows its keys
    assert r.suspects({"result": MappingProxyType({"a": 1})}, b"")


@pytest.mark.anyio
async def test_a_dataclass_result_with_a_secret_field_is_redacted_in_the_log(tmp_path: Path) -> None:
    async with open_event_log(tmp_path / "e.jsonl", "r", redactor=Redactor()) as log:
        log.emit("tool/result", "a", {"result": Creds("u", "pw-123456")})
    (event,) = read_events(tmp_path / "e.jsonl")
    assert event["result"] == {"user": "u", "password": "***"}


@pytest.mark.anyio
async def test_the_log_writes_and_passes_on_only_redacted_events(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    path = tmp_path / "events.jsonl"
    async with open_event_log(path, "r", redactor=Redactor([KEY])) as log:
        log.subscribe(seen.append)
        returned = log.emit("agent/message", "a", {"body": {"password": LITERAL, "text": f"use {KEY}"}, "kind": "chat"})
        plain = log.emit("agent/message", "a", {"body": {"n": 1}, "kind": "chat"})
    raw = path.read_text()
    assert KEY not in raw and LITERAL not in raw
    assert returned["body"] == {"password": "***", "text": "use ***"} == seen[0]["body"]
    assert [e["body"] for e in read_events(path)] == [{"password": "***", "text": "use ***"}, {"n": 1}]
    assert plain["body"] == {"n": 1}


class _Word(str, enum.Enum):
    TOKEN = "api_token"


class _Field(enum.Enum):
    SECRET = "client_secret"


@pytest.mark.anyio
async def test_shapes_a_walk_of_str_keys_or_a_search_of_strings_would_miss_are_hidden(tmp_path: Path) -> None:
    # A secret of digits written as a JSON number (alone or inside a longer one), a known
    # secret as a dict key, secret keys that are Enums (orjson writes an Enum key as its
    # value), and a known secret in a field no walk looks at (the agent's id).
    pin, path = "31415926", tmp_path / "e.jsonl"
    async with open_event_log(path, "r", redactor=Redactor([pin, KEY])) as log:
        log.emit("tool/result", "a", {"result": {"pin": 31415926, "longer": 9314159265, "pi": 3.1415926}})
        log.emit("tool/result", "a", {"result": {"rows": [{KEY: 1}]}})
        log.emit("tool/result", "a", {"result": {_Word.TOKEN: "tok-abcdef", "more": {_Field.SECRET: "cs-abcdef"}}})
        log.emit("agent/spawned", KEY, {"parent_id": None, "budget": {}})
    raw = path.read_text()
    assert pin not in raw and KEY not in raw and "tok-abcdef" not in raw and "cs-abcdef" not in raw
    numbers, key, word, spawned = read_events(path)
    assert numbers["result"] == {"pin": REDACTED, "longer": REDACTED, "pi": 3.1415926}
    assert key["result"] == {"rows": [{REDACTED: 1}]}
    assert word["result"] == {"api_token": REDACTED, "more": {"client_secret": REDACTED}}
    assert spawned["agent_id"] == REDACTED


def _plan(server_url: str) -> dict[str, Any]:
    return {
        "name": "leaky",
        "settings": {"shell": True, "secrets": ["DB_URL"], "checkpoint_events": 5},
        "defaults": {"provider": "openai", "model": "m", "base_url": server_url + "/v1", "restart": "temporary"},
        "tasks": [
            {"id": "sender", "agent": "script",
             "steps": [{"spawn": {"id": "receiver", "agent": "script",
                                  "steps": [{"wait": {"kind": "creds", "timeout": 10}}, {"done": "got"}]}},
                       {"send": {"to": "receiver", "kind": "creds",
                                 "body": {"password": LITERAL, "api_key": LITERAL, "note": "see env"}}},
                       {"wait": {"kind": "done", "timeout": 10}},
                       {"done": {"token": LITERAL, "ok": True}}]},
            {"id": "sheller", "agent": "script", "tools": ["shell/run"],
             "steps": [{"call": {"tool": "shell/run", "args": {"command": "env; echo db=$DB_URL >&2"}}}]},
            {"id": "talker", "agent": "llm", "instructions": "leak it", "tools": ["fs/write"]},
        ],
    }


def test_a_planted_secret_appears_nowhere_in_the_run_dir_or_the_output(tmp_path: Path, monkeypatch) -> None:
    ws, run = tmp_path / "ws", tmp_path / "run"
    ws.mkdir()
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("DB_URL", DB)
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(running_server()) as server:
        server.then(
            Behaviour(content=f"my key is {KEY}", tool_calls=[("fs__write", {"path": "out.txt", "content": f"{KEY} {DB}"})]),
            Behaviour(content=f"done; the db is {DB} and the key {KEY}"),
        )
        plan = ws / "plan.yaml"
        plan.write_text(yaml.safe_dump(_plan(server.url), sort_keys=False))
        result = CliRunner().invoke(app, ["run", str(plan), "--no-ui", "--run-dir", str(run), "--workspace", str(ws)])
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert result.exit_code == 0, output
    assert (ws / "out.txt").read_text() == f"{KEY} {DB}"  # the agent's own work keeps the real values
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    for secret in (KEY, DB, LITERAL, "hunter2"):
        assert secret not in output
        for f in run.rglob("*"):
            # The plan copy is the user's own text: known values are hidden in it, keys are not.
            if f.is_file() and not (secret == LITERAL and f.name == "plan.v1.yaml"):
                assert secret.encode() not in f.read_bytes(), (secret, f)
    evs = list(read_events(run / "events.jsonl"))
    shell = of(evs, "tool/result", "sheller")[0]["result"]
    assert "OPENAI_API_KEY=***" in shell["stdout"] and "DB_URL=***" in shell["stdout"] and shell["stderr"] == "db=***\n"
    body = next(e["body"] for e in of(evs, "agent/message") if e.get("kind") == "creds")
    assert body == {"password": "***", "api_key": "***", "note": "see env"}
    assert of(evs, "agent/done", "sender")[0]["result"] == {"token": "***", "ok": True}
    assert of(evs, "llm/result", "talker")[0]["reply"]["content"] == "my key is ***"
    assert of(evs, "agent/done", "talker")[0]["result"] == "done; the db is *** and the key ***"
    assert list(run.glob("checkpoints/*"))


def test_a_run_without_known_secrets_still_hides_secret_keys(tmp_path: Path) -> None:
    async def main() -> None:
        async with open_event_log(tmp_path / "e.jsonl", "r", redactor=Redactor()) as log:
            log.emit("tool/result", "a", {"result": {"Authorization": "Bearer abc", "rows": [{"passwd": "x"}]}})

    anyio.run(main)
    (event,) = read_events(tmp_path / "e.jsonl")
    assert event["result"] == {"Authorization": "***", "rows": [{"passwd": "***"}]}


def test_an_mcp_servers_stderr_log_hides_the_secrets_of_its_env(tmp_path: Path) -> None:
    pytest.importorskip("mcp", reason="the mcp SDK is an optional dependency (agentctl[mcp])")
    token = "calc-token-0123456789"
    leak = ("import os, runpy, sys; print('starting with', os.environ['CALC_TOKEN'], file=sys.stderr, flush=True); "
            "runpy.run_module('agentctl.examples.calc_server', run_name='__main__')")
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({
        "name": "mcp-leak",
        "mcp": {"calc": {"command": ["python", "-c", leak], "env": {"CALC_TOKEN": token}}},
        "tasks": [{"id": "t", "agent": "script", "tools": ["mcp:calc"],
                   "steps": [{"call": {"tool": "mcp:calc/add", "args": {"a": 1, "b": 2}}}]}],
    }))
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    assert (run / "mcp-calc.log").read_text().startswith("starting with ***\n")
    files = [f for f in run.rglob("*") if f.is_file()]
    assert files and not [f for f in files if token.encode() in f.read_bytes()]
    assert token not in result.output


def test_the_fields_walked_for_keys_are_every_object_and_any_field_of_the_contract() -> None:
    from test_events_contract import parse_contract

    from agentctl.events.payload import PAYLOAD_FIELDS

    _, types = parse_contract()
    documented = {t: tuple(k for k, v in fields.items() if "object" in v or "any" in v) for t, fields in types.items()}
    assert dict(PAYLOAD_FIELDS) == documented


@pytest.mark.anyio
async def test_a_type_outside_the_contract_is_walked_whole(tmp_path: Path) -> None:
    async with open_event_log(tmp_path / "e.jsonl", "r", redactor=Redactor()) as log:
        log.emit("plugin/custom", None, {"config": {"db": {"password": "hunter22"}}, "api_token": "t0k3n-value"})
        log.emit("agent/message", "a", {"body": [{"deep": {"Authorization": "Bearer abcdef"}}], "kind": "chat"})
    custom, message = read_events(tmp_path / "e.jsonl")
    assert custom["config"] == {"db": {"password": "***"}} and custom["api_token"] == "***"
    assert message["body"] == [{"deep": {"Authorization": "***"}}]
