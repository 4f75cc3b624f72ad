"""MCP servers as toolsets: a real SDK server over stdio and streamable HTTP, its tools in the
registry and the tool pool, crashes and restarts, no process left behind, the plan syntax and
validation, an LLM agent and a script agent (through the real CLI) calling ``mcp:calc/add``."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

pytest.importorskip("mcp", reason="the mcp SDK is an optional dependency (agentctl[mcp])")

from cli_helpers import invoke, reaped

from agentctl.agents.llm import llm_step
from agentctl.errors import PlanError, ToolError
from agentctl.plan.load import load_plan
from agentctl.plan.model import McpServer, Task
from agentctl.runtime import AgentSpec, open_runtime
from agentctl.services.llm.base import ChatReply, ToolCall
from agentctl.services.llm.scripted import ScriptedProvider
from agentctl.services.mcp import McpError, open_mcp
from agentctl.services.tools import default_registry
from agentctl.services.tools.registry import ToolContext
from agentctl.services.workers import LocalWorkPlane

SERVER = Path(__file__).parent / "plugins" / "mcp_calc_server.py"
STDIO = McpServer("calc", (sys.executable, str(SERVER)))
CALC_TOOLS = {"mcp:calc/add", "mcp:calc/echo", "mcp:calc/fail", "mcp:calc/crash"}


def live_children() -> list[psutil.Process]:
    """This process's live descendants, but for the module's HTTP server."""
    out = []
    for p in psutil.Process().children(recursive=True):
        with __import__("contextlib").suppress(psutil.NoSuchProcess):
            if p.status() != psutil.STATUS_ZOMBIE and "--http" not in p.cmdline():
                out.append(p)
    return out


def ctx(tmp_path: Path) -> ToolContext:
    return ToolContext(agent_id="a", workspace=tmp_path, run_id="test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    """The test server serving streamable HTTP on 127.0.0.1, in a subprocess."""
    port = free_port()
    with reaped(subprocess.Popen([sys.executable, str(SERVER), "--http", str(port)], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL), grace=10) as proc:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "HTTP MCP server did not come up"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"


def plane_for(recorder: Any, registry: Any, **kw: Any) -> LocalWorkPlane:
    return LocalWorkPlane(recorder, tools=registry, **kw)


# ------------------------------------------------------------------ the service


@pytest.mark.anyio
async def test_stdio_server_tools_run_through_the_tool_pool_with_the_usual_events(recorder, tmp_path) -> None:
    reg = default_registry()
    async with open_mcp([STDIO], reg, recorder, log_dir=tmp_path) as mcp:
        assert {n for n in reg.names() if n.startswith("mcp:")} == CALC_TOOLS == mcp.tool_names()
        started = recorder.of_type("mcp/started")
        assert [(e["server"], e["tools"], e["url"]) for e in started] == [("calc", 4, None)]
        assert started[0]["pid"] == mcp.pid("calc") in {p.pid for p in live_children()}
        plane = plane_for(recorder, reg)
        added = await plane.call_tool("a", "mcp:calc/add", {"a": 1, "b": 2}, ctx=ctx(tmp_path))
        echoed = await plane.call_tool("a", "mcp:calc/echo", {"text": "hi"}, ctx=ctx(tmp_path))
        # The server's inputSchema is checked before the call leaves the process.
        bad = await plane.call_tool("a", "mcp:calc/add", {"a": "one", "b": 2}, ctx=ctx(tmp_path))
    assert (added.ok, added.value, echoed.value) == (True, 3, "hi")
    assert (bad.ok, bad.error_type) == (False, "invalid_arguments") and "arguments.a" in (bad.error or "")
    results = recorder.of_type("tool/result")
    assert [(e["tool"], e["ok"], e.get("result")) for e in results[:2]] == [("mcp:calc/add", True, 3),
                                                                           ("mcp:calc/echo", True, "hi")]
    assert [e["tool"] for e in recorder.of_type("tool/requested")][:1] == ["mcp:calc/add"]
    assert mcp.statistics().calls == 2  # the invalid call never reached the server
    assert recorder.of_type("mcp/exited")[-1]["reason"] == "stopped"
    assert live_children() == []


@pytest.mark.anyio
async def test_streamable_http_server_tools_work_the_same(recorder, tmp_path, http_url) -> None:
    reg = default_registry()
    async with open_mcp([McpServer("calc", url=http_url)], reg, recorder) as mcp:
        out = await plane_for(recorder, reg).call_tool("a", "mcp:calc/add", {"a": 20, "b": 22}, ctx=ctx(tmp_path))
        assert mcp.statistics().connected == 1
    assert (out.ok, out.value) == (True, 42)
    (started,) = recorder.of_type("mcp/started")
    assert (started["url"], started["pid"], started["tools"]) == (http_url, None, 4)


@pytest.mark.anyio
async def test_an_is_error_result_is_a_tool_error_with_the_servers_message(recorder, tmp_path) -> None:
    reg = default_registry()
    async with open_mcp([STDIO], reg, recorder, log_dir=tmp_path):
        out = await plane_for(recorder, reg).call_tool("a", "mcp:calc/fail", {"message": "boom"}, ctx=ctx(tmp_path))
    assert (out.ok, out.error_type) == (False, "tool_error")
    assert "boom" in (out.error or "") and "mcp:calc/fail" in (out.error or "")


@pytest.mark.anyio
async def test_a_crash_fails_the_call_in_flight_then_the_server_restarts(recorder, tmp_path) -> None:
    reg = default_registry()
    async with open_mcp([STDIO], reg, recorder, log_dir=tmp_path, backoff=0.01) as mcp:
        plane = plane_for(recorder, reg)
        first_pid = mcp.pid("calc")
        crashed = await plane.call_tool("a", "mcp:calc/crash", {}, ctx=ctx(tmp_path))
        later = await plane.call_tool("a", "mcp:calc/add", {"a": 2, "b": 3}, ctx=ctx(tmp_path))
        assert mcp.pid("calc") not in (None, first_pid)
        assert mcp.statistics().restarts == 1
    assert (crashed.ok, crashed.error_type, crashed.error) == (False, "tool_error", "mcp server calc exited")
    assert (later.ok, later.value) == (True, 5)
    lifecycle = [(e["type"], e.get("reason"), e.get("restarting")) for e in recorder.events if e["type"].startswith("mcp/")]
    assert lifecycle == [("mcp/started", None, None), ("mcp/exited", "exited with code 3", True),
                         ("mcp/started", None, None), ("mcp/exited", "stopped", False)]
    assert not psutil.pid_exists(first_pid) or psutil.Process(first_pid).status() == "zombie"
    assert live_children() == []


@pytest.mark.anyio
async def test_after_its_last_restart_a_server_is_down_and_calls_fail_at_once(recorder, tmp_path) -> None:
    reg = default_registry()
    async with open_mcp([STDIO], reg, recorder, log_dir=tmp_path, max_restarts=0):
        plane = plane_for(recorder, reg)
        await plane.call_tool("a", "mcp:calc/crash", {}, ctx=ctx(tmp_path))
        with anyio.fail_after(10):
            while not recorder.of_type("mcp/exited"):
                await anyio.sleep(0.01)
        later = await plane.call_tool("a", "mcp:calc/add", {"a": 1, "b": 1}, ctx=ctx(tmp_path))
    assert recorder.of_type("mcp/exited")[0]["restarting"] is False
    assert len(recorder.of_type("mcp/exited")) == 1  # no "stopped" for a server already given up
    assert not later.ok and "is down" in (later.error or "")


@pytest.mark.anyio
async def test_a_server_that_cannot_start_fails_opening_and_leaves_nothing_running(recorder, tmp_path) -> None:
    reg = default_registry()
    broken = McpServer("broken", (sys.executable, "-c", "import sys; sys.exit(1)"))
    with pytest.raises(McpError, match="'broken' did not start"):
        async with open_mcp([STDIO, broken], reg, recorder, log_dir=tmp_path):
            pass  # pragma: no cover - never reached
    assert live_children() == []


@pytest.mark.anyio
async def test_toolset_mcp_server_selects_all_its_tools(recorder, tmp_path) -> None:
    reg = default_registry()
    async with open_mcp([STDIO], reg, recorder, log_dir=tmp_path):
        assert reg.toolset("mcp:calc") == CALC_TOOLS
        assert reg.toolset("fs/read, mcp:calc/add") == {"fs/read", "mcp:calc/add"}
        with pytest.raises(ToolError, match="'calk'"):
            reg.toolset("mcp:calk")


# ------------------------------------------------------------------ agents


@pytest.mark.anyio
async def test_an_llm_agent_calls_an_mcp_tool_and_gets_its_result(recorder, tmp_path) -> None:
    reg = default_registry()
    provider = ScriptedProvider([
        ChatReply("", (ToolCall(id="c1", name="mcp:calc/add", arguments={"a": 1, "b": 2}),)),
        "the sum is 3",
    ])
    async with open_mcp([STDIO], reg, recorder, log_dir=tmp_path):
        plane = LocalWorkPlane(recorder, tools=reg, providers={"p": provider}, default_provider="p")
        async with open_runtime(recorder, tools=reg, plane=plane, workspace=tmp_path) as rt:
            task = Task(id="a", agent="llm", instructions="add 1 and 2")
            rt.spawn(AgentSpec(id="a", step=llm_step(task), kind="llm", tools=reg.toolset("mcp:calc")))
            exit = await rt.wait("a")
    assert (exit.outcome, exit.result) == ("done", "the sum is 3")
    offered = {t.name for t in provider.requests[0].tools}
    assert offered == CALC_TOOLS
    answer = [m for m in provider.requests[1].messages if m["role"] == "tool"]
    assert [(m["name"], m["content"]) for m in answer] == [("mcp:calc/add", "3")]
    (result,) = recorder.of_type("tool/result")
    assert (result["agent_id"], result["tool"], result["result"]) == ("a", "mcp:calc/add", 3)


PLAN = """\
name: mcp-test
mcp:
  calc: {{command: [{python}, {server}]}}
tasks:
  - id: t
    agent: script
    tools: ["mcp:calc"]
    steps:
      - call: {{tool: "mcp:calc/add", args: {{a: 1, b: 2}}}}
      - done: added
"""


def test_a_script_agent_calls_an_mcp_tool_in_a_real_cli_run(tmp_path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN.format(python=sys.executable, server=SERVER))
    run_dir = tmp_path / "run"
    done = invoke("run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", str(run_dir), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    from agentctl.events.reader import read_events

    events = list(read_events(run_dir / "events.jsonl"))
    req = next(e for e in events if e["type"] == "tool/requested")
    res = next(e for e in events if e["type"] == "tool/result")
    assert (req["agent_id"], req["tool"], req["arguments"]) == ("t", "mcp:calc/add", {"a": 1, "b": 2})
    assert (res["ok"], res["result"]) == (True, 3)
    types = [e["type"] for e in events]
    assert types.index("mcp/started") < types.index("tool/requested") < types.index("mcp/exited") < types.index("run/finished")
    pid = next(e for e in events if e["type"] == "mcp/started")["pid"]
    assert not psutil.pid_exists(pid)  # the run's server process went with the run
    assert (run_dir / "mcp-calc.log").exists()


# ------------------------------------------------------------------ plan syntax and validation


def write_plan(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_plan_declares_stdio_and_http_servers(tmp_path) -> None:
    plan = load_plan(write_plan(tmp_path, """\
        name: p
        mcp:
          calc: {command: [python, -m, agentctl.examples.calc_server], env: {KEY: value}}
          remote: {url: "http://127.0.0.1:8765/mcp"}
        tasks:
          - {id: t, agent: script, tools: ["mcp:calc", "mcp:remote/add"], steps: [{done: 1}]}
    """))
    assert plan.mcp == (McpServer("calc", ("python", "-m", "agentctl.examples.calc_server"), env={"KEY": "value"}),
                        McpServer("remote", url="http://127.0.0.1:8765/mcp"))


def test_a_task_naming_an_undeclared_server_is_a_plan_error_with_a_suggestion(tmp_path) -> None:
    path = write_plan(tmp_path, """\
        name: p
        mcp:
          calc: {command: [python, -m, agentctl.examples.calc_server]}
        tasks:
          - id: t
            agent: script
            tools: ["fs/read", "mcp:calk/add"]
            steps: [{done: 1}]
    """)
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert info.value.path == "tasks[0].tools[1]"
    assert "did you mean 'calc'?" in info.value.message and info.value.line == 7


def test_a_call_step_naming_an_undeclared_server_is_a_plan_error(tmp_path) -> None:
    path = write_plan(tmp_path, """\
        name: p
        tasks:
          - {id: t, agent: script, steps: [{call: {tool: "mcp:calc/add"}}]}
    """)
    with pytest.raises(PlanError, match="unknown MCP server 'calc'") as info:
        load_plan(path)
    assert info.value.path == "tasks[0].steps[0].call.tool"


@pytest.mark.parametrize("server, path, message", [
    ("{command: [python], url: 'http://x/mcp'}", "mcp.s", "exactly one of"),
    ("{}", "mcp.s", "exactly one of"),
    ("{command: []}", "mcp.s.command", "empty command"),
    ("{url: 'ftp://x'}", "mcp.s.url", "invalid value"),
    ("{url: 'http://x/mcp', env: {A: b}}", "mcp.s.env", "only applies to a stdio server"),
    ("{command: [python], port: 1}", "mcp.s.port", "unknown key"),
])
def test_bad_server_declarations_are_plan_errors_at_their_key(tmp_path, server, path, message) -> None:
    plan = write_plan(tmp_path, f"name: p\nmcp:\n  s: {server}\ntasks: [{{id: t, agent: script, steps: [{{done: 1}}]}}]\n")
    with pytest.raises(PlanError, match=message) as info:
        load_plan(plan)
    assert info.value.path == path


def test_validate_reports_a_stdio_server_whose_command_is_not_found(tmp_path) -> None:
    write_plan(tmp_path, """\
        name: p
        mcp:
          calc: {command: [no-such-mcp-server-xyz, --stdio]}
        tasks: [{id: t, agent: script, steps: [{done: 1}]}]
    """)
    out = invoke("validate", "plan.yaml", cwd=tmp_path)
    assert out.returncode == 2
    assert "mcp.calc.command" in out.stderr and "no-such-mcp-server-xyz" in out.stderr
    assert invoke("validate", str(Path(__file__).parent.parent / "plans" / "mcp.yaml"), cwd=tmp_path).returncode == 0


# ------------------------------------------------------------------ the event contract


async def mcp_events(tmp_path: Path) -> list[dict[str, Any]]:
    """Events of a stdio server that starts, crashes, restarts and is stopped, through a real
    ``EventLog`` (for ``tests/test_events_contract.py``'s ``produced`` fixture, too)."""
    from agentctl.events.log import EventLog

    seen: list[dict[str, Any]] = []
    log = EventLog(None, "contract")
    log.subscribe(seen.append)
    reg = default_registry()
    async with open_mcp([STDIO], reg, log.emit, log_dir=tmp_path, backoff=0.01):
        await LocalWorkPlane(log.emit, tools=reg).call_tool("a", "mcp:calc/crash", {}, ctx=ctx(tmp_path))
        with anyio.fail_after(10):
            while len([e for e in seen if e["type"] == "mcp/started"]) < 2:
                await anyio.sleep(0.01)
    return seen


@pytest.mark.anyio
async def test_mcp_events_have_exactly_their_documented_fields(tmp_path) -> None:
    from test_events_contract import matches, parse_contract

    common, types = parse_contract()
    events = [e for e in await mcp_events(tmp_path) if e["type"].startswith("mcp/")]
    assert {e["type"] for e in events} == {t for t in types if t.startswith("mcp/")} == {"mcp/started", "mcp/exited"}
    for event in events:
        own = types[event["type"]]
        assert set(event) == set(common) | set(own)
        for name, doc_type in {**common, **own}.items():
            assert matches(event[name], doc_type), (event["type"], name, event[name], doc_type)
