"""A known secret that reached an event URL-encoded, as a password sits in a connection URL
or a query string; and the credentials in the OTel SDK's headers variable, whose name no key
rule matches. Through the real log writer, and through a real run where a command prints
them and a model (a real HTTP server on 127.0.0.1) repeats them.

(Base64 is not covered: docs/security.md says why, with the measured cost.)
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import yaml
from anyio.from_thread import start_blocking_portal
from cli_helpers import of
from llm_servers import Behaviour, running_server
from typer.testing import CliRunner

from agentctl.cli.main import app
from agentctl.events.log import open_event_log
from agentctl.events.reader import read_events
from agentctl.redact import Redactor

API_KEY = "sk-proj-7Qx2Lm9Vw4Zr8Tn1Kp6Yb3Hd/+="  # what base64-made keys end with, encoded by quote
PASSWORD = "p@ss w/rd+&=ü?#-9Zq7xLm"  # every character a URL encodes, and non-ASCII
# The OTel SDK's headers variable: a name no key rule matches, credentials in its value.
OTEL_CREDS = base64.b64encode(b"pk-lf-1a2b3c:sk-lf-9z8y7x6w").decode()
OTEL_HEADERS = f"Authorization=Basic%20{OTEL_CREDS},x-scope=team-a"


def _leaks(secret: str, data: bytes) -> list[bytes]:
    """The secret as written or URL-encoded (quote with and without '/' safe, quote_plus), and
    every 8-character piece of those, found in ``data``."""
    spelled = {secret.encode(), quote(secret, safe="").encode(), quote_plus(secret).encode(), quote(secret).encode()}
    return sorted({p[i:i + 8] for p in spelled for i in range(len(p) - 7)} & {data[i:i + 8] for i in range(len(data) - 7)})


def _carriers(secret: str) -> dict[str, Any]:
    return {
        "dsn": f"postgres://admin:{quote(secret, safe='')}@db.example:5432/app",
        "form": f"user=admin&password={quote_plus(secret)}&remember=1",
        "query": [f"https://api.example/v1?key={quote_plus(secret)}&x=1", f"https://api.example/{quote(secret)}/x"],
    }


@pytest.mark.anyio
@pytest.mark.parametrize("secret", [API_KEY, PASSWORD])
async def test_a_url_encoded_secret_is_hidden_by_the_log_writer(secret: str, tmp_path: Path) -> None:
    assert _leaks(secret, repr(_carriers(secret)).encode())  # the test's own carriers do hold it
    async with open_event_log(tmp_path / "events.jsonl", "r1", redactor=Redactor([secret])) as log:
        log.emit("tool/result", "a", {"call_id": "c1", "tool": "t", "ok": True, "error": None,
                                      "result": _carriers(secret)})
    assert _leaks(secret, (tmp_path / "events.jsonl").read_bytes()) == []
    result = list(read_events(tmp_path / "events.jsonl"))[-1]["result"]
    assert result == {"dsn": "postgres://admin:***@db.example:5432/app", "form": "user=admin&password=***&remember=1",
                      "query": ["https://api.example/v1?key=***&x=1", "https://api.example/***/x"]}


def test_url_encoded_secrets_and_otel_header_credentials_are_nowhere_in_a_real_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws, run = tmp_path / "ws", tmp_path / "run"
    ws.mkdir()
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("DB_PASS", PASSWORD)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", OTEL_HEADERS)
    encode = (f"{sys.executable} -c \"import os, urllib.parse as u; p = os.environ['DB_PASS']; "
              "print('postgres://admin:' + u.quote(p, safe='') + '@db/app', u.quote_plus(p)); "
              "print(os.environ['OTEL_EXPORTER_OTLP_HEADERS'])\"")
    defaults: dict[str, str] = {"provider": "openai", "model": "m", "restart": "temporary"}
    plan = {
        "name": "encoded",
        "settings": {"shell": True, "secrets": ["DB_PASS"]},
        "defaults": defaults,
        "tasks": [
            {"id": "sheller", "agent": "script", "tools": ["shell/run"],
             "steps": [{"call": {"tool": "shell/run", "args": {"command": encode}}}, {"done": "ok"}]},
            {"id": "talker", "agent": "llm", "instructions": "leak it"},
        ],
    }
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(running_server()) as server:
        defaults["base_url"] = server.url + "/v1"
        server.then(Behaviour(content=f"try ?key={quote_plus(API_KEY)} or {OTEL_HEADERS}", piece=7))
        (ws / "plan.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
        result = CliRunner().invoke(app, ["run", str(ws / "plan.yaml"), "--no-ui", "--run-dir", str(run),
                                          "--workspace", str(ws)])
    assert result.exit_code == 0, result.output
    assert server.requests[0].headers["authorization"] == f"Bearer {API_KEY}"
    for f in [*(f for f in run.rglob("*") if f.is_file()), None]:
        data = f.read_bytes() if f is not None else result.output.encode()
        assert _leaks(API_KEY, data) == [] and _leaks(PASSWORD, data) == [], f
        assert OTEL_CREDS[:12].encode() not in data and OTEL_CREDS[-12:].encode() not in data, f
    evs = list(read_events(run / "events.jsonl"))
    stdout = of(evs, "tool/result", "sheller")[0]["result"]["stdout"]
    assert stdout.splitlines() == ["postgres://admin:***@db/app ***", "***"]
    assert of(evs, "agent/done", "talker")[0]["result"] == "try ?key=*** or ***"
