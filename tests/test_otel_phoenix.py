"""OpenTelemetry traces read back from a real OTLP receiver: Arize Phoenix, started here.

Marked ``otel`` (``pytest -m otel``; ``.ci/run`` installs Phoenix in a venv of its own and the
``otel`` extra in the project's). Phoenix is found through ``$PHOENIX_BIN``, else ``phoenix``
on ``PATH``; it serves on 127.0.0.1 from a temporary working directory, takes OTLP over HTTP
at ``/v1/traces`` and gives the spans back through its REST API.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from anyio.from_thread import start_blocking_portal
from cli_helpers import AGENTCTL, events, invoke, reaped, running, wait_for
from llm_servers import free_port, running_server
from otel_plans import HELD_REASON, SECRET, SECRET_ENV, run_held, traced_plan

from agentctl.views.otel import SpanRecord, trace_of

pytestmark = pytest.mark.otel

#: Phoenix migrates its database and loads a large app before it answers (40 s here, under load).
_START_TIMEOUT = 180.0
_PHOENIX_STATUS = {"UNSET": None, "OK": None, "ERROR": "error"}


class Phoenix:
    """A Phoenix server on 127.0.0.1 and the few REST calls the tests make."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=30)

    def spans(self, project: str, trace_id: int) -> list[dict[str, Any]]:
        reply = self.http.get(f"/v1/projects/{project}/spans", params={"trace_id": f"{trace_id:032x}", "limit": 1000})
        if reply.status_code == 404:  # the project appears with its first span
            return []
        reply.raise_for_status()
        return list(reply.json()["data"])

    def wait_for(self, project: str, trace_id: int, count: int, timeout: float = 60) -> list[dict[str, Any]]:
        """The trace's spans once Phoenix holds ``count`` of them (it ingests in the background)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.spans(project, trace_id)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.3)

    def delete_trace(self, trace_id: int) -> None:
        self.http.delete(f"/v1/traces/{trace_id:032x}").raise_for_status()


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    binary = os.environ.get("PHOENIX_BIN") or shutil.which("phoenix")
    if binary is None:
        pytest.fail("Phoenix is not installed: pip install arize-phoenix (or set PHOENIX_BIN); .ci/run does it")
    work = tmp_path_factory.mktemp("phoenix")
    port = free_port()
    env = {**os.environ, "PHOENIX_PORT": str(port), "PHOENIX_HOST": "127.0.0.1", "PHOENIX_GRPC_PORT": str(free_port()),
           "PHOENIX_WORKING_DIR": str(work)}
    log = open(work / "phoenix.log", "wb")  # noqa: SIM115 - closed by the with below
    server = Phoenix(f"http://127.0.0.1:{port}")
    with log, reaped(subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT), grace=20) as proc:
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            assert proc.poll() is None, (work / "phoenix.log").read_text()[-3000:]
            try:
                if server.http.get("/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "Phoenix did not start: " + (work / "phoenix.log").read_text()[-3000:]
            time.sleep(0.5)
        yield server


@pytest.fixture(scope="module")
def live_run(phoenix: Phoenix, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The traced plan run by the real ``agentctl`` executable, told where to send spans only by
    the standard variables (endpoint, resource attributes: Phoenix's project)."""
    tmp = tmp_path_factory.mktemp("live")
    env = {**os.environ, SECRET_ENV: SECRET, "OTEL_EXPORTER_OTLP_ENDPOINT": phoenix.url,
           "OTEL_RESOURCE_ATTRIBUTES": "openinference.project.name=live", "OTEL_SERVICE_NAME": "agentctl-test"}
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(running_server()) as server:
        plan = traced_plan(tmp, server)
        proc = subprocess.run([AGENTCTL, "run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", "run"],
                              cwd=tmp, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr, proc.stderr
    return tmp / "run"


def _ns(stamp: str) -> int:
    return round(datetime.fromisoformat(stamp).timestamp() * 1000) * 10**6  # the log's times are whole ms


def tree(spans: list[dict[str, Any]]) -> set[tuple[str, str, str | None, int, int, str | None]]:
    """Phoenix's spans as (name, span id, parent id, start, end, error?)."""
    return {(s["name"], s["context"]["span_id"], s.get("parent_id"), _ns(s["start_time"]), _ns(s["end_time"]),
             _PHOENIX_STATUS[s["status_code"]]) for s in spans}


def expected(records: list[SpanRecord]) -> set[tuple[str, str, str | None, int, int, str | None]]:
    return {(r.name, f"{r.span_id:016x}", None if r.parent_id is None else f"{r.parent_id:016x}", r.start_ns, r.end_ns,
             None if r.error is None else "error") for r in records}


def test_a_live_run_is_one_trace_in_phoenix_shaped_as_the_agent_tree(phoenix: Phoenix, live_run: Path) -> None:
    records = trace_of(events(live_run))
    trace_id = records[0].trace_id
    spans = phoenix.wait_for("live", trace_id, len(records))
    assert tree(spans) == expected(records)
    named = {(s["name"], s["attributes"].get("agentctl.agent_id")): s for s in spans}
    run = named[("agentctl run traced", None)]
    plan, boss = named[("invoke_agent plan", "plan")], named[("invoke_agent boss", "boss")]
    helper, writer = named[("invoke_agent helper", "helper")], named[("invoke_agent writer", "writer")]
    assert run.get("parent_id") is None
    assert plan["parent_id"] == run["context"]["span_id"]
    assert boss["parent_id"] == writer["parent_id"] == plan["context"]["span_id"]
    assert helper["parent_id"] == boss["context"]["span_id"]
    chats = [s for s in spans if s["attributes"].get("gen_ai.operation.name") == "chat"]
    assert len(chats) == 3 and {c["parent_id"] for c in chats} == {writer["context"]["span_id"]}
    results = {e["call_id"]: e for e in events(live_run) if e["type"] == "llm/result"}
    for chat in chats:
        attrs, result = chat["attributes"], results[chat["attributes"]["agentctl.call_id"]]
        assert (attrs["gen_ai.request.model"], attrs["gen_ai.provider.name"]) == ("m1", "ollama")
        assert attrs["gen_ai.usage.input_tokens"] == result["prompt_tokens"]
        assert attrs["gen_ai.usage.output_tokens"] == result["completion_tokens"]
        assert attrs["agentctl.run_id"] == result["run_id"]
    tools = [s for s in spans if s["attributes"].get("gen_ai.operation.name") == "execute_tool"]
    assert sorted((t["attributes"]["gen_ai.tool.name"], t["parent_id"]) for t in tools) == sorted([
        ("fs/write", boss["context"]["span_id"]), ("fs/append", helper["context"]["span_id"]),
        ("fs/write", writer["context"]["span_id"]), ("fs/write", writer["context"]["span_id"])])
    failed = [t for t in tools if t["status_code"] == "ERROR"]
    assert len(failed) == 1 and failed[0]["attributes"]["error.type"] == "tool_error"
    assert all(t["attributes"]["gen_ai.tool.call.id"] == t["attributes"]["agentctl.call_id"] for t in tools)
    # Content is opt-in: no arguments, results or replies went out, so no secret either.
    assert not any(k.startswith(("gen_ai.tool.call.arguments", "gen_ai.tool.call.result", "gen_ai.output"))
                   for s in spans for k in s["attributes"])
    assert SECRET not in str(spans)


def test_approvals_messages_and_streamed_fragments_reach_phoenix_as_span_events(
        phoenix: Phoenix, tmp_path: Path) -> None:
    """A live run with content on: its held calls answered from another process, its agents
    talking, its last reply streamed; every span event arrives, at its time, redacted."""
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": phoenix.url, "OTEL_RESOURCE_ATTRIBUTES": "openinference.project.name=held"}
    run = run_held(tmp_path, "--otel-content", env=env)
    records = trace_of(events(run), content=True)
    spans = phoenix.wait_for("held", records[0].trace_id, len(records))
    assert tree(spans) == expected(records)
    got = {s["context"]["span_id"]: sorted((e["name"], _ns(e["timestamp"])) for e in s.get("events") or [])
           for s in spans}
    assert got == {f"{r.span_id:016x}": sorted((e.name, e.time_ns) for e in r.events) for r in records}
    names = {e["name"] for s in spans for e in s.get("events") or []}
    assert names == {"approval.requested", "approval.answered", "message.sent", "message.received", "llm.delta"}
    reasons = [e["attributes"].get("agentctl.approval.reason") for s in spans for e in s.get("events") or []]
    assert HELD_REASON.replace(SECRET, "***") in reasons
    assert SECRET not in str(spans)


def test_export_otel_of_the_same_log_gives_the_same_trace_and_again_no_second_one(
        phoenix: Phoenix, live_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records = trace_of(events(live_run))
    trace_id = records[0].trace_id
    live = phoenix.wait_for("live", trace_id, len(records))
    phoenix.delete_trace(trace_id)
    assert phoenix.wait_for("live", trace_id, 0, timeout=0) == []
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "openinference.project.name=live")
    result = invoke("export", "otel", str(live_run), "--endpoint", phoenix.url, cwd=live_run.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"exported {len(records)} spans (trace {trace_id:032x}) to {phoenix.url}/v1/traces\n"
    exported = phoenix.wait_for("live", trace_id, len(records))
    assert tree(exported) == tree(live)
    assert [s["attributes"] for s in sorted(exported, key=lambda s: s["context"]["span_id"])] == \
        [s["attributes"] for s in sorted(live, key=lambda s: s["context"]["span_id"])]
    again = invoke("export", "otel", str(live_run), "--endpoint", phoenix.url, cwd=live_run.parent)
    assert again.returncode == 0, again.stderr
    time.sleep(2)  # time for a second tree to be ingested, were there one
    assert tree(phoenix.spans("live", trace_id)) == tree(live)


def test_content_goes_out_only_when_asked_and_redacted_as_in_the_log(phoenix: Phoenix, live_run: Path) -> None:
    records = trace_of(events(live_run))
    trace_id = records[0].trace_id
    phoenix.delete_trace(trace_id)
    result = invoke("export", "otel", str(live_run), "--endpoint", phoenix.url, "--content", cwd=live_run.parent)
    assert result.returncode == 0, result.stderr
    spans = phoenix.wait_for("default", trace_id, len(records))
    arguments = [s["attributes"].get("gen_ai.tool.call.arguments") for s in spans]
    assert any(a is not None and "key ***" in a for a in arguments), arguments
    assert SECRET not in str(spans)


def test_a_receiver_that_is_down_costs_a_warning_and_the_run_goes_on(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(running_server()) as server:
        plan = traced_plan(tmp_path, server)
        result = invoke("run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", "run", "--otel-endpoint", down,
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"warning: otel: could not export spans to {down}/v1/traces (" in result.stderr
    assert "the run goes on without them" in result.stderr
    assert "Traceback" not in result.stderr
    finished = events(tmp_path / "run")[-1]
    assert (finished["type"], finished["status"]) == ("run/finished", "ok")
    assert (tmp_path / "out" / "w.txt").read_text() == f"key {SECRET}"
    # Afterwards the export is the point of the command: it says what did not go, exit 1.
    export = invoke("export", "otel", "run", "--endpoint", down, cwd=tmp_path)
    assert export.returncode == 1
    assert export.stderr.startswith(f"error: exported 0 of {len(trace_of(events(tmp_path / 'run')))} spans (trace ")
    assert export.stderr.endswith(f"to {down}/v1/traces: [Errno 111] Connection refused\n")


def test_a_run_killed_and_resumed_with_otel_is_one_whole_trace(phoenix: Phoenix, tmp_path: Path) -> None:
    """SIGKILL mid-run, then ``--resume --otel``: the resumed process sends the spans of the log
    it continues (the dead one may have sent some: same ids) and its own, one tree in all."""
    plan = tmp_path / "nap.yaml"
    plan.write_text("name: nap\ntasks:\n  - id: napper\n    agent: script\n    tools: [fs/write]\n    steps:\n"
                    "      - write: {path: out/before.txt, content: \"1\\n\"}\n      - sleep: 3\n"
                    "      - write: {path: out/after.txt, content: \"2\\n\"}\n")
    env = {**os.environ, "OTEL_RESOURCE_ATTRIBUTES": "openinference.project.name=resumed"}
    otel = ["--otel-endpoint", phoenix.url]
    with running("run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", "run", *otel, cwd=tmp_path, env=env,
                 stderr=subprocess.DEVNULL):
        wait_for(tmp_path / "run", lambda evs: any(e["type"] == "agent/status" and e.get("status") == "sleeping"
                                                   for e in evs))
    resumed = subprocess.run([AGENTCTL, "run", "--resume", "run", "--no-ui", *otel], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    evs = events(tmp_path / "run")
    assert [e["type"] for e in evs].count("run/resumed") == 1
    records = trace_of(evs)
    spans = phoenix.wait_for("resumed", records[0].trace_id, len(records))
    assert tree(spans) == expected(records)
    writes = sorted((s["attributes"]["agentctl.call_id"], s["parent_id"]) for s in spans
                    if s["name"] == "execute_tool fs/write")
    napper = next(s["context"]["span_id"] for s in spans if s["name"] == "invoke_agent napper")
    assert len(writes) == 2 and {parent for _, parent in writes} == {napper}
