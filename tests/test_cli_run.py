"""``agentctl run`` and ``send`` as a user runs them: run directories, the control channel, plan coverage."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest
from cli_helpers import PLANS, ends, events, interrupt, invoke, of, running, wait_for

from agentctl.plan.load import load_plan

LISTENER = """\
name: listen
tasks:
  - id: listener
    agent: script
    steps: [{wait: goal}, {done: heard}]
  - id: idle
    agent: script
    steps: [{wait: never}]
"""


@pytest.mark.parametrize("plan", ["hello.yaml", "hello.edn", "locks.yaml"])
def test_every_task_of_an_example_plan_is_spawned_once_under_plan(plan: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = invoke("run", str(PLANS / plan), "--no-ui", "--no-watch-plan", "--run-dir", str(run_dir), "--workspace", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    evs = events(run_dir)
    spawned = [e["agent_id"] for e in of(evs, "agent/spawned") if e["parent_id"] == "plan"]
    assert sorted(spawned) == sorted(t.id for t in load_plan(PLANS / plan).tasks)
    diff = of(evs, "plan/diff")[0]
    assert sorted(diff["added"]) == sorted(spawned) and diff["removed"] == diff["changed"] == []
    assert [e["status"] for e in of(evs, "agent/done") if e["agent_id"] in spawned] == ["ok"] * len(spawned)


def test_a_new_run_refuses_a_run_dir_that_already_holds_a_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert invoke("run", str(PLANS / "hello.edn"), "--no-ui", "--no-watch-plan", "--run-dir", str(run_dir), cwd=tmp_path).returncode == 0
    before = (run_dir / "events.jsonl").read_bytes()
    again = invoke("run", str(PLANS / "hello.edn"), "--no-ui", "--no-watch-plan", "--run-dir", str(run_dir), cwd=tmp_path)
    assert again.returncode == 2 and "--resume" in again.stderr and "Traceback" not in again.stderr
    # the old log is untouched: its seq stays gap-free from 1
    assert (run_dir / "events.jsonl").read_bytes() == before
    assert [e["seq"] for e in events(run_dir)] == list(range(1, len(events(run_dir)) + 1))


def test_a_run_dir_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("x")
    proc = invoke("run", str(PLANS / "hello.yaml"), "--no-ui", "--run-dir", str(tmp_path / "taken"), cwd=tmp_path)
    assert proc.returncode == 2 and "--run-dir" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_requests_and_unknown_targets_do_not_end_the_run(tmp_path: Path) -> None:
    plan = tmp_path / "p.yaml"
    plan.write_text(LISTENER)
    run_dir = tmp_path / "run"
    with running("run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", str(run_dir), cwd=tmp_path) as proc:
        wait_for(run_dir, lambda e: of(e, "agent/status", "listener") and (run_dir / "control.sock").exists())
        unknown = invoke("send", "--run", str(run_dir), "--to", "nobody", "hi", cwd=tmp_path)
        assert unknown.returncode == 2 and "no live agent 'nobody'" in unknown.stderr
        for raw in (b"not json\n", b"[1, 2]\n", b'{"kind": "goal"}\n', b'{"op": "send", "kind": "goal"}\n', b"{\"op\": \"x"):
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(str(run_dir / "control.sock"))
                sock.sendall(raw)
                sock.shutdown(socket.SHUT_WR)
                assert b'"ok":false' in sock.recv(4096)
        sent = invoke("send", "--run", str(run_dir), "--to", "listener", "--kind", "goal", '{"x": 1}', cwd=tmp_path)
        assert sent.returncode == 0, sent.stderr
        wait_for(run_dir, lambda e: of(e, "agent/done", "listener"))
        ends(proc, 130, signal.SIGINT)
    evs = events(run_dir)
    assert of(evs, "bus/denied")[0]["to"] == "nobody"
    goals = [e for e in of(evs, "agent/message", "listener") if e["kind"] == "goal"]
    assert [(e["from"], e["body"]) for e in goals] == [("user", {"x": 1})]
    assert evs[-1]["reason"] == "interrupted"


def test_a_resumed_run_does_not_deliver_sent_messages_again(tmp_path: Path) -> None:
    plan = tmp_path / "p.yaml"
    plan.write_text(LISTENER)
    run_dir = tmp_path / "run"
    with running("run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", str(run_dir), cwd=tmp_path) as proc:
        wait_for(run_dir, lambda e: of(e, "agent/status", "listener"))
        assert invoke("send", "--run", str(run_dir), "--to", "listener", "--kind", "goal", "1", cwd=tmp_path).returncode == 0
        wait_for(run_dir, lambda e: of(e, "agent/done", "listener"))
        proc.send_signal(signal.SIGKILL)
        proc.wait(20)
    with running("run", str(plan), "--no-ui", "--no-watch-plan", "--resume", str(run_dir), cwd=tmp_path) as resumed:
        wait_for(run_dir, lambda e: of(e, "run/resumed"))
        # a message sent while resumed still arrives, exactly once
        assert invoke("send", "--run", str(run_dir), "--to", "idle", "--kind", "ping", "2", cwd=tmp_path).returncode == 0
        wait_for(run_dir, lambda e: of(e, "agent/message", "idle"))
        evs = interrupt(resumed, run_dir)
    # delivered or refused, a goal from the user shows up once: the one sent before the crash
    assert len([e for e in evs if e.get("from") == "user" and e.get("kind") == "goal"]) == 1
    assert len([e for e in of(evs, "agent/message", "idle") if e["kind"] == "ping"]) == 1
