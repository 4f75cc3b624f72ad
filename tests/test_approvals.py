"""Approval gates: calls a plan's ``policy.approve`` (or a task's ``approve``) holds for a person.

Runs that a person answers from another terminal are real ``agentctl run`` subprocesses and
the answers real ``agentctl approve`` / ``deny`` processes over the run's control socket;
the gate itself (which calls it holds, whatever the path's spelling) is tested on the runtime
in this process, answered through its approval service.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import start_blocking_portal
from cli_helpers import ROOT, cli, ends, events, invoke, of, reaped, running, start, wait_for
from llm_servers import Behaviour, running_server

from agentctl import actions as act
from agentctl.policy import Budget, Grant, Policy, gate_for, grant_child
from agentctl.runtime import AgentSpec, StepContext, open_runtime
from agentctl.services.approvals import Answer, ApprovalError, Approvals
from agentctl.services.tools import default_registry
from agentctl.services.workers import LocalWorkPlane

GATED = """\
name: gated
defaults:
  tools: [fs/read, fs/write, fs/append]
  restart: temporary
policy:
  approve: ["fs/write:src/**"]
tasks:
  - id: writer
    agent: script
    steps:
      - write: {path: notes.txt, content: "free\\n"}
      - write: {path: src/app.py, content: "print(1)\\n"}
      - write: {path: src/lib.py, content: "print(2)\\n"}
      - done: wrote
  - id: other
    agent: script
    steps:
      - sleep: 0.3
      - append: {path: other.txt, content: "while held\\n"}
      - write: {path: elsewhere.txt, content: "x\\n"}
"""


def llm_gated_plan(server_url: str, instructions: str) -> str:
    """A plan of one LLM agent ``coder`` (on the OpenAI server at ``server_url``) whose every
    ``fs/write`` waits for a person's answer."""
    return json.dumps({"name": "llm-gated",
                       "defaults": {"provider": "openai", "model": "m", "base_url": server_url + "/v1",
                                    "restart": "temporary", "tools": ["fs/write"]},
                       "tasks": [{"id": "coder", "agent": "llm", "instructions": instructions, "approve": ["fs/write"]}]})


def run_dir_of(cwd: Path) -> Path:
    return cwd / "run"


def held(evs: list[dict[str, Any]], n: int = 1) -> bool:
    return len(of(evs, "approval/requested")) >= n


def test_a_held_call_waits_while_the_tree_goes_on_and_runs_only_once_approved_from_another_process(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text(GATED)
    run = run_dir_of(tmp_path)
    with running("run", "plan.yaml", "--no-ui", "--run-dir", "run", cwd=tmp_path) as proc:
        evs = wait_for(run, lambda e: held(e) and of(e, "agent/done", "other"))
        asked = of(evs, "approval/requested")[0]
        assert (asked["agent_id"], asked["tool"], asked["gate"]) == ("writer", "fs/write", "fs/write:src/**")
        assert asked["arguments"] == {"path": "src/app.py", "content": "print(1)\n"}
        call = asked["call_id"]
        # Held: nothing of the call ran, while the other task did its work meanwhile.
        assert not [e for e in of(evs, "tool/requested") if e["call_id"] == call]
        assert not (tmp_path / "src").exists()
        assert (tmp_path / "other.txt").read_text() == "while held\n"
        assert of(evs, "agent/done", "other")[0]["seq"] > asked["seq"]

        described = invoke("describe", "run", "writer", "-o", "json", cwd=tmp_path)
        assert described.returncode == 0, described.stderr
        description = json.loads(described.stdout)
        assert [(a["call_id"], a["answer"]) for a in description["approvals"]] == [(call, None)]
        assert description["spec"]["approve"] == ["fs/write:src/**"]

        unknown = invoke("approve", "run", "nope", cwd=tmp_path)
        assert unknown.returncode == 2 and f"no call 'nope' is waiting for approval (waiting: {call})" in unknown.stderr

        answered = cli("approve", "run", call, "--note", "looks fine", cwd=tmp_path)
        assert answered.returncode == 0, answered.stderr
        assert f"approved call {call}" in answered.stdout
        again = invoke("deny", "run", call, "--reason", "changed my mind", cwd=tmp_path)
        assert again.returncode == 2
        assert f"call {call} was already answered: approved by user (note: looks fine)" in again.stderr

        evs = wait_for(run, lambda e: held(e, 2))
        second = of(evs, "approval/requested")[1]["call_id"]
        denied = invoke("deny", "run", second, "--reason", "lib.py is frozen", cwd=tmp_path)
        assert denied.returncode == 0, denied.stderr
        ends(proc, 1)  # the script's step failed on its denied call
    evs = events(run)
    order = [(e["type"], e.get("call_id")) for e in evs if e["type"].startswith(("approval/", "tool/requested"))
             and e.get("call_id") in (call, second)]
    assert order == [("approval/requested", call), ("approval/granted", call), ("tool/requested", call),
                     ("approval/requested", second), ("approval/denied", second)]
    granted = of(evs, "approval/granted")[0]
    assert (granted["by"], granted["note"]) == ("user", "looks fine")
    refused = of(evs, "approval/denied")[0]
    assert (refused["by"], refused["reason"]) == ("user", "lib.py is frozen")
    assert (tmp_path / "src" / "app.py").read_text() == "print(1)\n"
    assert not (tmp_path / "src" / "lib.py").exists()
    error = of(evs, "agent/error", "writer")[0]["error"]
    assert f"call {second} (fs/write) was denied by user: lib.py is frozen" in error


def test_an_llm_agent_is_told_the_reason_of_a_denial_as_its_tool_error(tmp_path: Path) -> None:
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(running_server()) as server:
        server.then(Behaviour(content="", tool_calls=[("fs__write", {"path": "src/main.py", "content": "rm -rf",
                                                                        "token": "tok-5f3a9c1e77"})]),
                    Behaviour(content="understood, leaving src alone"))
        (tmp_path / "plan.yaml").write_text(llm_gated_plan(server.url, "edit src/main.py"))
        run = run_dir_of(tmp_path)
        with running("run", "plan.yaml", "--no-ui", "--run-dir", "run", cwd=tmp_path) as proc:
            asked = of(wait_for(run, held), "approval/requested")[0]
            call = asked["call_id"]
            assert asked["arguments"] == {"path": "src/main.py", "content": "rm -rf", "token": "***"}
            assert len(server.requests) == 1  # the model waits for the answer too
            denied = invoke("deny", call, "--reason", "src/main.py is owned by another team", cwd=tmp_path)
            assert denied.returncode == 2  # no run under .agentctl: RUN is needed here
            denied = invoke("deny", "run", call, "--reason", "src/main.py is owned by another team", cwd=tmp_path)
            assert denied.returncode == 0, denied.stderr
            ends(proc, 0)
        second = server.requests[1].body["messages"]
    tool_turns = [m for m in second if m.get("role") == "tool"]
    assert len(tool_turns) == 1
    assert "denied by user: src/main.py is owned by another team" in tool_turns[0]["content"]
    assert not (tmp_path / "src").exists()
    evs = events(run)
    assert of(evs, "agent/done", "coder")[0]["result"] == "understood, leaving src alone"
    assert not of(evs, "tool/requested")
    assert "tok-5f3a9c1e77" not in (run / "events.jsonl").read_text()  # nor in a streamed llm/delta


def test_a_held_call_is_still_held_after_kill_9_and_resume_then_runs_once_approved(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text(GATED)
    run = run_dir_of(tmp_path)
    with running("run", "plan.yaml", "--no-ui", "--run-dir", "run", cwd=tmp_path) as proc:
        call = of(wait_for(run, lambda e: held(e) and of(e, "agent/done", "other")), "approval/requested")[0]["call_id"]
        ends(proc, -signal.SIGKILL, signal.SIGKILL)
    with running("run", "--resume", "run", "--no-ui", cwd=tmp_path) as resumed:
        evs = wait_for(run, lambda e: of(e, "run/resumed") and of(e, "agent/status", "writer")
                       and of(e, "agent/status", "writer")[-1]["seq"] > of(e, "run/resumed")[0]["seq"])
        assert of(evs, "agent/status", "writer")[-1]["reason"] == "approval"
        assert len(of(evs, "approval/requested")) == 1  # held again, not asked again
        assert not (tmp_path / "src").exists()
        assert invoke("approve", "run", call, cwd=tmp_path).returncode == 0
        second = of(wait_for(run, lambda e: held(e, 2)), "approval/requested")[1]["call_id"]
        assert second.startswith("r1.")  # a new call of the resumed process
        assert invoke("approve", "run", second, cwd=tmp_path).returncode == 0
        ends(resumed, 0)
    evs = events(run)
    assert [e["call_id"] for e in of(evs, "approval/requested")] == [call, second]
    assert [e["call_id"] for e in of(evs, "tool/requested") if e["call_id"] in (call, second)] == [call, second]
    assert (tmp_path / "src" / "app.py").read_text() == "print(1)\n"
    assert (tmp_path / "other.txt").read_text() == "while held\n"  # not run twice


@pytest.mark.faults
@pytest.mark.parametrize("answer", ["approve", "deny"])
def test_an_answer_on_disk_before_a_crash_is_never_asked_again(tmp_path: Path, answer: str) -> None:
    """A crash right after the answer reached the disk: the log is cut there (as a SIGKILL at
    that moment leaves it) and resumed; the call runs (or fails) without a second request."""
    plan = GATED.replace('      - write: {path: src/lib.py, content: "print(2)\\n"}\n', "")
    (tmp_path / "plan.yaml").write_text(plan)
    run = run_dir_of(tmp_path)
    with running("run", "plan.yaml", "--no-ui", "--run-dir", "run", cwd=tmp_path) as proc:
        call = of(wait_for(run, held), "approval/requested")[0]["call_id"]
        extra = ("--note", "ok") if answer == "approve" else ("--reason", "no")
        assert invoke(answer, "run", call, *extra, cwd=tmp_path).returncode == 0
        proc.wait(30)
    lines = (run / "events.jsonl").read_text().splitlines(keepends=True)
    kind = "approval/granted" if answer == "approve" else "approval/denied"
    cut = next(i for i, line in enumerate(lines) if json.loads(line)["type"] == kind)
    (run / "events.jsonl").write_text("".join(lines[: cut + 1]))
    for old in (run / "checkpoints").glob("*"):
        old.unlink()
    if (tmp_path / "src").exists():
        (tmp_path / "src" / "app.py").unlink()
    resumed = cli("run", "--resume", "run", "--no-ui", cwd=tmp_path)
    evs = events(run)
    assert len(of(evs, "approval/requested")) == 1
    after = [e for e in evs if e["seq"] > cut + 1]
    if answer == "approve":
        assert resumed.returncode == 0, resumed.stderr
        assert [e["call_id"] for e in of(after, "tool/requested") if e["call_id"] == call] == [call]
        assert (tmp_path / "src" / "app.py").read_text() == "print(1)\n"
    else:
        assert resumed.returncode == 1
        assert not [e for e in of(after, "tool/requested") if e["call_id"] == call]
        assert f"call {call} (fs/write) was denied by user: no" in of(after, "agent/error", "writer")[0]["error"]


def stopped(pid: int) -> bool:
    """Whether the process is stopped (SIGSTOP: its state in /proc is T)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2] == "T"


@pytest.mark.faults
def test_an_approval_the_run_dies_answering_is_one_line_saying_what_its_log_holds(tmp_path: Path) -> None:
    """The run is frozen as it logs the grant and killed there, while ``agentctl approve``
    waits for its reply: the command says the run died, what its log holds of the call, and
    how to resume; the resumed run does what the log says (holds it again, or runs it)."""
    (tmp_path / "plan.yaml").write_text(GATED.replace('      - write: {path: src/lib.py, content: "print(2)\\n"}\n', ""))
    run = run_dir_of(tmp_path)
    env = {**os.environ, "AGENTCTL_FAULT": "stop@approval/granted#1"}
    with running("run", "plan.yaml", "--no-ui", "--no-watch-plan", "--run-dir", "run", cwd=tmp_path, env=env) as proc:
        call = of(wait_for(run, held), "approval/requested")[0]["call_id"]
        with reaped(start("approve", "run", call, cwd=tmp_path)) as approving:
            deadline = time.monotonic() + 20
            while not stopped(proc.pid):
                assert time.monotonic() < deadline, "the run never reached approval/granted"
                time.sleep(0.02)
            ends(proc, -signal.SIGKILL, signal.SIGKILL)
            _, err = approving.communicate(timeout=30)
    assert approving.returncode == 2
    (line,) = err.strip().splitlines()
    assert "died before it answered; its log has " in line and line.endswith("continue it with: agentctl run --resume run")
    logged = bool(of(events(run), "approval/granted"))
    if logged:
        assert f"its log has call {call} approved by user;" in line
    else:
        assert f"its log has no answer to call {call}: the resumed run holds it again;" in line
    with running("run", "--resume", "run", "--no-ui", cwd=tmp_path) as resumed:
        if not logged:
            wait_for(run, lambda e: of(e, "run/resumed") and of(e, "agent/status", "writer")[-1]["reason"] == "approval"
                     and of(e, "agent/status", "writer")[-1]["seq"] > of(e, "run/resumed")[0]["seq"])
            assert invoke("approve", "run", call, cwd=tmp_path).returncode == 0
        ends(resumed, 0)
    evs = events(run)
    assert [e["call_id"] for e in of(evs, "approval/granted")] == [call]
    assert (tmp_path / "src" / "app.py").read_text() == "print(1)\n"


@pytest.mark.parametrize(("default", "code"), [("deny", 1), ("approve", 0)])
def test_an_unanswered_call_gets_the_plans_default_answer_at_approve_timeout(tmp_path: Path, default: str,
                                                                             code: int) -> None:
    plan = GATED.replace('  approve: ["fs/write:src/**"]\n',
                         f'  approve: ["fs/write:src/app.py"]\n  approve_timeout: 0.5\n  approve_default: {default}\n')
    (tmp_path / "plan.yaml").write_text(plan)
    result = invoke("run", "plan.yaml", "--no-ui", "--run-dir", "run", cwd=tmp_path)
    assert result.returncode == code, result.stdout
    evs = events(run_dir_of(tmp_path))
    asked = of(evs, "approval/requested")
    assert [(a["timeout"], a["default"]) for a in asked] == [(0.5, default)]  # lib.py is not gated
    answer = of(evs, "approval/granted" if default == "approve" else "approval/denied")[0]
    assert answer["by"] == "timeout" and answer["t"] - asked[0]["t"] >= 500
    assert (tmp_path / "src" / "app.py").exists() == (default == "approve")


# ------------------------------------------------------------------ the service, in this process


@pytest.mark.anyio
async def test_a_resumed_hold_counts_its_timeout_from_the_logged_request(recorder: Any) -> None:
    now = 1_000.0
    service = Approvals(recorder, clock=lambda: now,
                        pending={"a1": {"t": 990_000, "timeout": 5.0, "default": "approve", "gate": "shell/run"}})
    assert service.recorded("a1") == "shell/run"
    with anyio.fail_after(2):  # 10 s since the request, 5 s allowed: answered at once
        answer = await service.hold("w", "a1", "shell/run", {}, "shell/run", timeout=60, default="deny")
    assert answer == Answer(True, "timeout", "no answer within 5 s; the plan's default is approve")
    assert [e["type"] for e in recorder.events] == ["approval/granted"]  # no second request
    with pytest.raises(ApprovalError, match="already answered: approved by timeout"):
        service.answer("a1", False, "late")


@pytest.mark.anyio
async def test_two_hundred_held_calls_each_get_their_own_answer_and_a_refusal_stays_one_short_line(
        recorder: Any) -> None:
    service, answers = Approvals(recorder), {}

    async def hold(i: int) -> None:
        answers[f"a{i}"] = await service.hold(f"w{i}", f"a{i}", "fs/write", {"path": f"f{i}"}, "fs/write",
                                              timeout=None, default="deny")

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for i in range(1, 201):
                tg.start_soon(hold, i)
            while service.statistics().pending < 200:
                await anyio.sleep(0.01)
            with pytest.raises(ApprovalError) as refused:
                service.answer("a999", True)
            listed = str(refused.value).removeprefix("no call 'a999' is waiting for approval (waiting: ")
            assert listed.endswith(" and 192 more)") and len(listed.split(", ")) == 8, str(refused.value)
            for i in reversed(range(1, 201)):  # newest first, alternately yes and no
                service.answer(f"a{i}", i % 2 == 0, f"n{i}")
                with pytest.raises(ApprovalError, match=f"call a{i} was already answered"):
                    service.answer(f"a{i}", i % 2 == 1, "again")
    assert answers == {f"a{i}": Answer(i % 2 == 0, "user", f"n{i}") for i in range(1, 201)}
    assert [len(recorder.of_type(t)) for t in ("approval/requested", "approval/granted", "approval/denied")] == [200, 100, 100]


@pytest.mark.anyio
async def test_a_call_whose_agent_ended_while_held_is_refused_naming_the_agent(recorder: Any) -> None:
    service = Approvals(recorder)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: service.hold("kid", "a1", "fs/write", {}, "fs/write", timeout=None, default="deny"))
            while not service.pending():
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()  # its agent is stopped
    with pytest.raises(ApprovalError, match="call a1 is no longer waiting: its agent kid ended"):
        service.answer("a1", True)
    assert [e["type"] for e in recorder.events] == ["approval/requested"]


@pytest.mark.slow
def test_approving_a_call_of_a_subtree_its_parent_stopped_names_the_agent_and_runs_nothing(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text(GATED.replace("""  - id: writer
    agent: script
    steps:""", """  - id: writer
    agent: script
    steps:
      - spawn: {id: kid, agent: script, steps: [{write: {path: src/kid.py, content: "x"}}, {done: ok}]}
      - wait: {kind: done, timeout: 60}""").replace("      - sleep: 0.3\n", "      - sleep: 60\n"))  # the run goes on
    run = run_dir_of(tmp_path)
    with running("run", "plan.yaml", "--no-ui", "--no-watch-plan", "--run-dir", "run", cwd=tmp_path) as proc:
        asked = of(wait_for(run, held), "approval/requested")[0]
        assert asked["agent_id"] == "kid"
        assert invoke("stop", "run", "--agent", "writer", cwd=tmp_path).returncode == 0
        refused = invoke("approve", "run", asked["call_id"], cwd=tmp_path)
        assert refused.returncode == 2
        assert refused.stderr.strip() == (f"error: call {asked['call_id']} is no longer waiting: its agent kid ended "
                                          "(stopped or failed) before it was answered")
        described = json.loads(invoke("describe", "run", "kid", "-o", "json", cwd=tmp_path).stdout)
        assert described["status"] == "stopped" and described["approvals"] == []  # no call shown as waiting
        ends(proc, 130, signal.SIGINT)
    evs = events(run)
    assert not of(evs, "approval/granted") and not of(evs, "approval/denied")
    assert not [e for e in of(evs, "tool/requested") if e["call_id"] == asked["call_id"]]
    assert not (tmp_path / "src").exists()


@pytest.mark.anyio
async def test_the_gate_holds_a_path_in_every_spelling_and_a_child_inherits_it(recorder: Any, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "link").symlink_to("src")
    paths = ["src/a.py", "./src/b.py", "src//c.py", "link/d.py", "src/deep/e.py", "free.txt"]

    def parent(ctx: StepContext) -> list[act.Action]:
        if ctx.step_no == 1:
            return [act.spawn(AgentSpec("child", child))]
        return [act.done("ok")] if ctx.messages else []

    def child(ctx: StepContext) -> list[act.Action]:
        if ctx.step_no == 1:
            return [act.parallel([act.call_tool("fs/write", {"path": p, "content": "x"}) for p in paths])]
        return [act.done("ok", [(r.ok, r.error) for r in ctx.results[0].value])]

    tools = default_registry()
    async with open_runtime(recorder, tools=tools, plane=LocalWorkPlane(recorder, tools=tools), workspace=tmp_path,
                            root_tools=frozenset({"fs/write"})) as rt:
        rt.spawn(AgentSpec("boss", parent, approve=frozenset({"fs/write:src/**"})))
        with anyio.fail_after(10):
            while len(rt.approvals.pending()) < 5:
                await anyio.sleep(0.01)
        held_calls = rt.approvals.pending()
        assert {h.agent_id for h in held_calls} == {"child"}
        for h in held_calls:
            rt.approvals.answer(h.call_id, False, "not now")
        exit = await rt.wait("child")
    outcomes = dict(zip(paths, exit.result, strict=True))
    assert outcomes["free.txt"] == (True, None)
    assert all(outcomes[p] == (False, "denied") for p in paths[:-1])
    spawned = {e["agent_id"]: e["approve"] for e in of(recorder.events, "agent/spawned")}
    assert spawned == {"boss": ["fs/write:src/**"], "child": ["fs/write:src/**"]}
    assert sorted(e["arguments"]["path"] for e in of(recorder.events, "approval/requested")) == sorted(paths[:-1])
    assert not list((tmp_path / "src").rglob("*.py"))


def test_a_child_never_has_fewer_gates_than_its_parent() -> None:
    parent = Grant("m", frozenset({"fs/write", "shell/run"}), Budget(), frozenset({"shell/run"}))
    child = grant_child(policy=Policy(approve=frozenset({"mcp:*"})), depth=2, parent=parent, parent_remaining=None,
                        model=None, tools={"shell/run"}, budget=None)
    assert child.approve == {"shell/run", "mcp:*"}
    # Nothing asked and nothing limited shares the parent's grant: its gates included.
    same = grant_child(policy=Policy(), depth=2, parent=parent, parent_remaining=None, model=None, tools=None,
                       budget=None)
    assert same.approve == {"shell/run"}
    assert gate_for(child.approve, "mcp:calc/add", lambda: None) == "mcp:*"
    assert gate_for({"docker/*"}, "docker/run", lambda: None) == "docker/*"
    assert gate_for({"fs/*:src/**"}, "fs/read", lambda: "srcx/a") is None


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(("gate", "why"), [
    ("fs/write:/etc/**", "fs/write:/etc/**"),
    ("fs/write:../up", "fs/write:../up"),
    ("shell/run:x", "shell/run:x"),
    ("", "''"),
])
def test_a_bad_gate_is_one_line_with_file_key_path_expected_and_got(tmp_path: Path, gate: str, why: str) -> None:
    (tmp_path / "plan.yaml").write_text(GATED.replace('"fs/write:src/**"', json.dumps(gate)))
    for command in ("validate", "run"):
        result = invoke(command, "plan.yaml", cwd=tmp_path)
        assert result.returncode == 2
        line = result.stderr.strip().splitlines()[0]
        assert "plan.yaml:6" in line and "policy.approve[0]" in line and "tool pattern" in line and why in line
        assert "Traceback" not in result.stderr


def test_a_gate_that_matches_no_tool_is_refused_before_the_run(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text(GATED.replace('"fs/write:src/**"', '"shel/run"'))
    result = invoke("run", "plan.yaml", "--no-ui", cwd=tmp_path)
    assert result.returncode == 2
    assert "policy.approve[0]" in result.stderr and "matches no tool" in result.stderr
    assert not (tmp_path / ".agentctl").exists()


def test_approve_and_deny_refuse_bad_input_with_one_line(tmp_path: Path) -> None:
    no_runs = invoke("approve", "a1", cwd=tmp_path)
    assert no_runs.returncode == 2 and "no runs under" in no_runs.stderr
    (tmp_path / "plan.yaml").write_text(GATED.replace('policy:\n  approve: ["fs/write:src/**"]\n', ""))
    assert invoke("run", "plan.yaml", "--no-ui", cwd=tmp_path).returncode == 0
    cases = {
        ("approve", "a", "b", "c"): "expected [RUN] CALL, got 3 arguments",
        ("deny", "a1"): "Missing option '--reason'",
        ("deny", "a1", "--reason", " "): "--reason: expected a reason",
        ("approve", "a1"): "has finished (completed)",
        ("approve", "no-such-run", "a1"): "no such run directory",
    }
    for args, message in cases.items():
        result = invoke(*args, cwd=tmp_path)
        assert result.returncode == 2, args
        assert message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) <= 3 and "Traceback" not in result.stderr


def test_the_readme_plan_of_approval_gates_is_valid(tmp_path: Path) -> None:
    section = (ROOT / "README.md").read_text().split("## Approval gates", 1)[1]
    (tmp_path / "plan.yaml").write_text(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    result = invoke("validate", "plan.yaml", "-o", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert json.loads(result.stdout)["ok"]
