"""Tools never block the loop: sync tools run in threads, every call's timeout is enforced and
can be set per tool and per task; file tools wait for a contended lock."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import pytest
from cli_helpers import events, invoke, of

from agentctl import actions as act
from agentctl.agents.factory import spec_for_task
from agentctl.plan.load import parse_plan
from agentctl.runtime import AgentSpec, StepContext, open_runtime
from agentctl.services.tools import ToolRegistry, default_registry
from agentctl.services.workers import LocalWorkPlane

pytestmark = pytest.mark.anyio


def one_call(tool: str, args: dict | None = None):
    def step(ctx: StepContext) -> list:
        if ctx.reason == "start":
            return [act.call_tool(tool, args or {})]
        return [act.done("ok", ctx.results[0])] if ctx.results else []

    return step


def chatter(ctx: StepContext) -> list:
    """Counts its turns: messages to itself, one a step, until stopped."""
    ctx.state["turns"] = ctx.state.get("turns", 0) + 1
    return [act.send(ctx.agent_id, "chat", ctx.state["turns"]), act.sleep(0.005)]


async def test_a_stuck_sync_tool_times_out_in_its_thread_while_other_agents_go_on(recorder, tmp_path: Path) -> None:
    release = threading.Event()
    reg = ToolRegistry()

    @reg.tool("t/stuck", timeout=0.2)
    def stuck() -> str:  # the README's plain sync style; blocks until the test lets it go
        release.wait(10)
        return "late"

    plane = LocalWorkPlane(recorder, tools=reg)
    async with open_runtime(recorder, tools=reg, plane=plane, workspace=tmp_path) as rt:
        rt.spawn(AgentSpec("busy", chatter))
        rt.spawn(AgentSpec("caller", one_call("t/stuck")))
        with anyio.fail_after(5):
            exit = await rt.wait("caller")
        stats = plane.statistics().tool
        assert (stats.timed_out, stats.stranded) == (1, 1)  # its thread is still blocked
        turns = [e for e in recorder.of_type("agent/message") if e["agent_id"] == "busy"]
        assert len(turns) >= 5  # the loop went on while the tool was stuck
        release.set()
        with anyio.fail_after(5):
            while plane.statistics().tool.stranded:
                await anyio.sleep(0.01)
    result = exit.result
    assert (result.ok, result.error) == (False, "timeout")
    assert "worker thread is still running" in result.value
    (done,) = recorder.of_type("tool/result")
    assert done["ok"] is False and "0.2s" in done["error"]


async def test_a_sync_tool_that_checks_ctx_cancel_stops_at_its_timeout(recorder, tmp_path: Path) -> None:
    stopped = threading.Event()
    reg = ToolRegistry()

    @reg.tool("t/polite", timeout=0.1)
    def polite(ctx) -> str:
        while not ctx.cancel.wait(0.01):
            pass
        stopped.set()
        return "stopped"

    plane = LocalWorkPlane(recorder, tools=reg)
    async with open_runtime(recorder, tools=reg, plane=plane, workspace=tmp_path) as rt:
        rt.spawn(AgentSpec("caller", one_call("t/polite")))
        with anyio.fail_after(5):
            exit = await rt.wait("caller")
            while plane.statistics().tool.stranded:
                await anyio.sleep(0.01)
    assert exit.result.error == "timeout" and stopped.is_set()


async def test_an_async_tool_is_cancelled_at_its_timeout(recorder, tmp_path: Path) -> None:
    cancelled = anyio.Event()
    reg = ToolRegistry()

    @reg.tool("t/slow")
    async def slow() -> str:
        try:
            await anyio.sleep(30)
        finally:
            cancelled.set()
        return "never"

    plane = LocalWorkPlane(recorder, tools=reg, tool_timeouts={"t/slow": 0.1})
    async with open_runtime(recorder, tools=reg, plane=plane, workspace=tmp_path) as rt:
        rt.spawn(AgentSpec("caller", one_call("t/slow")))
        with anyio.fail_after(5):
            exit = await rt.wait("caller")
    assert cancelled.is_set() and exit.result.error == "timeout"
    assert plane.statistics().tool.stranded == 0 and "cancelled" in exit.result.value


async def test_a_task_timeout_wins_over_the_tools_own(recorder, tmp_path: Path) -> None:
    reg = ToolRegistry()

    @reg.tool("t/nap", timeout=0.05)
    async def nap(seconds: float) -> str:
        await anyio.sleep(seconds)
        return "rested"

    plane = LocalWorkPlane(recorder, tools=reg)
    async with open_runtime(recorder, tools=reg, plane=plane, workspace=tmp_path) as rt:
        rt.spawn(AgentSpec("patient", one_call("t/nap", {"seconds": 0.2}), tool_timeout=10))
        rt.spawn(AgentSpec("hasty", one_call("t/nap", {"seconds": 0.2})))
        with anyio.fail_after(5):
            patient, hasty = await rt.wait("patient"), await rt.wait("hasty")
    assert patient.result.ok and patient.result.value == "rested"
    assert hasty.result.error == "timeout"


def test_plan_sets_timeouts_per_tool_and_per_task_and_the_lock_wait() -> None:
    plan = parse_plan(
        "name: t\nsettings: {tool_timeouts: {fs/write: 2.5}, lock_wait: 1}\n"
        "tasks:\n  - {id: a, agent: script, tool_timeout: 7, steps: [{done: ok}]}\n",
        filename="p.yaml",
    )
    assert dict(plan.settings.tool_timeouts) == {"fs/write": 2.5} and plan.settings.lock_wait == 1.0
    assert spec_for_task(plan.tasks[0], plan.defaults).tool_timeout == 7.0


FOUR_APPENDERS = "name: four\ndefaults: {restart: temporary}\ntasks:\n" + "".join(
    f"  - id: w{i}\n    agent: script\n    steps:\n"
    + "".join(f"      - append: {{path: out/log.txt, content: \"w{i}-{n}\\n\"}}\n" for n in range(3))
    for i in range(4)
)


def test_four_tasks_appending_to_one_file_all_succeed(tmp_path: Path) -> None:
    plan = tmp_path / "four.yaml"
    plan.write_text(FOUR_APPENDERS)
    run_dir = tmp_path / "run"
    proc = invoke("run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", str(run_dir), "--workspace",
                  str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = (tmp_path / "out" / "log.txt").read_text().splitlines()
    assert sorted(lines) == sorted(f"w{i}-{n}" for i in range(4) for n in range(3))
    assert all(e["ok"] for e in of(events(run_dir), "tool/result"))


async def test_a_file_tool_gives_up_on_a_lock_held_past_its_wait(recorder, tmp_path: Path) -> None:
    reg = default_registry()
    plane = LocalWorkPlane(recorder, tools=reg)

    def holder(ctx: StepContext) -> list:
        return [act.acquire_lock("out/x.txt")] if ctx.reason == "start" else []

    async with open_runtime(recorder, tools=reg, plane=plane, workspace=tmp_path, lock_wait=0.1) as rt:
        rt.spawn(AgentSpec("holder", holder))
        rt.spawn(AgentSpec("writer", one_call("fs/write", {"path": "out/x.txt", "content": "x"})))
        with anyio.fail_after(5):
            exit = await rt.wait("writer")
    assert not exit.result.ok and "locked by holder (waited 0.1s)" in exit.result.value
