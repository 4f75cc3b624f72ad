"""The live view's approval panel: held calls listed, one selected, answered by a key.

The panel's logic is tested on a state folded from logged events, rendered into a recording
console; the keys themselves are tested end to end in a real ``agentctl run``, and in a real
``agentctl watch`` of a run in another process, whose terminal is a pseudo-terminal the test
types into.
"""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal
from cli_helpers import AGENTCTL, cli, events, of, reaped, running, wait_for
from llm_servers import Behaviour, running_server
from rich.console import Console
from test_approvals import GATED, llm_gated_plan

from agentctl.events.fold import RunState, apply
from agentctl.views.approval_keys import ApprovalKeys, decode_keys
from agentctl.views.live import render_run


def held_state(*calls: tuple[str, str, str]) -> RunState:
    state = RunState()
    for seq, (call, agent, path) in enumerate(calls, 1):
        apply(state, {"seq": seq, "t": 1000 + seq, "run_id": "r", "type": "approval/requested", "agent_id": agent,
                      "call_id": call, "tool": "fs/write", "arguments": {"path": path}, "gate": "fs/write:src/**",
                      "timeout": None, "default": "deny"})
    return state


def text(renderable: Any) -> str:
    console = Console(width=120, record=True, force_terminal=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_keys_are_decoded_from_what_a_terminal_sends() -> None:
    assert decode_keys(b"\x1b[A\x1b[Bja\x1bOBd") == ["up", "down", "j", "a", "down", "d"]
    assert decode_keys("né\r".encode()) == ["n", "é", "enter"]
    assert decode_keys(b"x\x7f\x1b\x1b[C\x1b[15~y") == ["x", "backspace", "escape", "y"]


def test_the_panel_selects_approves_and_denies_with_a_typed_reason() -> None:
    state = held_state(("a1", "w1", "src/a.py"), ("a2", "w2", "src/b.py"))
    given: list[tuple[str, bool, str | None]] = []

    def answer(call: str, granted: bool, text: str | None) -> str | None:
        given.append((call, granted, text))
        return None

    keys = ApprovalKeys(answer)
    shown = text(render_run(state, approvals=keys))
    assert "waiting for approval (2):" in shown and "› a1  w1  fs/write  path='src/a.py'" in shown
    for key in ("down", "down", "a"):  # the selection stops at the last call
        keys.key(state, key)
    assert given == [("a2", True, None)]
    keys.key(state, "up")
    for key in ("d", "enter"):  # a denial needs a reason
        keys.key(state, key)
    assert keys.message == "a denial needs a reason (Esc cancels)" and len(given) == 1
    for key in [*"too riskyy", "backspace", "enter"]:
        keys.key(state, key)
    assert given[-1] == ("a1", False, "too risky")
    assert keys.reason is None and keys.message == "denied a1"
    keys.key(state, "d")
    keys.key(state, "x")
    assert "deny a1, reason: x" in text(render_run(state, approvals=keys))
    keys.key(state, "escape")
    assert keys.reason is None and len(given) == 2


def test_a_refused_answer_is_shown_on_the_panel_and_nothing_held_shows_nothing() -> None:
    state = held_state(("a1", "w1", "src/a.py"))
    keys = ApprovalKeys(lambda call, granted, text: f"call {call} was already answered: denied by timeout")
    keys.key(state, "a")
    assert "not approved: call a1 was already answered: denied by timeout" in text(render_run(state, approvals=keys))
    empty = RunState()
    assert "waiting for approval" not in text(render_run(empty, approvals=ApprovalKeys(lambda *a: None)))
    # Without keys (a replay, say), held calls are listed with the command that answers them.
    assert "waiting for approval (1): agentctl approve|deny CALL" in text(render_run(state))


def test_a_person_answers_held_calls_with_keys_in_the_live_view_of_agentctl_run(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text(GATED)
    run = tmp_path / "run"
    with terminal(["run", "plan.yaml", "--run-dir", "run"], tmp_path) as (proc, screen, keyboard):
        first = of(wait_for(run, lambda e: of(e, "approval/requested")), "approval/requested")[0]["call_id"]
        seen(screen, f"› {first}")  # as a person would: press once the panel shows the call
        keyboard(b"a")
        second = of(wait_for(run, lambda e: len(of(e, "approval/requested")) == 2), "approval/requested")[1]["call_id"]
        seen(screen, f"› {second}")
        keyboard(b"dno lib changes\r")
        assert proc.wait(30) == 1  # the script failed on its denied call
    evs = events(run)
    assert [(e["call_id"], e["by"]) for e in of(evs, "approval/granted")] == [(first, "user")]
    assert [(e["call_id"], e["by"], e["reason"]) for e in of(evs, "approval/denied")] == [(second, "user", "no lib changes")]


def test_agentctl_watch_answers_a_live_runs_held_calls_with_keys_and_the_llm_agent_sees_the_reason(tmp_path: Path) -> None:
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(running_server()) as server:
        server.then(Behaviour(content="", tool_calls=[("fs__write", {"path": "src/a.py", "content": "a = 1\n"})]),
                    Behaviour(content="", tool_calls=[("fs__write", {"path": "src/b.py", "content": "b = 2\n"})]),
                    Behaviour(content="a written, b left alone"))
        (tmp_path / "plan.yaml").write_text(llm_gated_plan(server.url, "write src/a.py and src/b.py"))
        run = tmp_path / "run"
        with running("run", "plan.yaml", "--no-ui", "--run-dir", "run", cwd=tmp_path) as proc:
            first = of(wait_for(run, lambda e: of(e, "approval/requested")), "approval/requested")[0]["call_id"]
            with terminal(["watch", "run"], tmp_path) as (watcher, screen, keyboard):
                seen(screen, f"› {first}")
                keyboard(b"a")
                second = of(wait_for(run, lambda e: len(of(e, "approval/requested")) == 2), "approval/requested")[1]
                seen(screen, f"› {second['call_id']}")
                keyboard(b"db.py belongs to another team\r")
                assert proc.wait(30) == 0
                assert watcher.wait(30) == 0  # watch ends with the run, with its exit code
            assert b"approved " + first.encode() in b"".join(screen)
        requests = [r.body["messages"] for r in server.requests]
    evs = events(run)
    assert [(e["call_id"], e["by"]) for e in of(evs, "approval/granted")] == [(first, "user")]
    assert [(e["call_id"], e["by"], e["reason"]) for e in of(evs, "approval/denied")] == [
        (second["call_id"], "user", "b.py belongs to another team")]
    assert (tmp_path / "src" / "a.py").read_text() == "a = 1\n" and not (tmp_path / "src" / "b.py").exists()
    told = [m["content"] for m in requests[2] if m.get("role") == "tool"]
    assert len(told) == 2 and "denied by user: b.py belongs to another team" in told[1]
    assert of(evs, "agent/done", "coder")[0]["result"] == "a written, b left alone"


@pytest.mark.parametrize("end", ["stop", "kill"])
def test_agentctl_watch_of_a_run_that_is_not_live_says_why_and_has_no_approval_keys(tmp_path: Path, end: str) -> None:
    (tmp_path / "plan.yaml").write_text(GATED)
    run = tmp_path / "run"
    with running("run", "plan.yaml", "--no-ui", "--run-dir", "run", cwd=tmp_path) as proc:
        call = of(wait_for(run, lambda e: of(e, "approval/requested")), "approval/requested")[0]["call_id"]
        if end == "stop":
            assert cli("stop", "run", cwd=tmp_path).returncode == 0
            assert proc.wait(30) == 130
        else:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
    with terminal(["watch", "run"], tmp_path) as (watcher, screen, keyboard):
        code = watcher.wait(30)
        keyboard(b"a")  # nobody reads it: the call stays held
    shown = b"".join(screen).decode()
    assert code == (130 if end == "stop" else 1)
    why = "has finished (stopped)" if end == "stop" else "is gone without run/finished"
    assert shown.count("note: held calls cannot be answered from this view:") == 1 and why in shown
    # Still listed (a resume holds it again), with the command that answers it, not the keys.
    assert f"{call}  writer  fs/write" in shown and "a approve" not in shown
    assert not of(events(run), "approval/granted")


@contextmanager
def terminal(args: list[str], cwd: Path) -> Iterator[tuple[subprocess.Popen[bytes], list[bytes], Callable[[bytes], None]]]:
    """``agentctl ARGS`` on a pseudo-terminal (120x40): the process, what it has shown so far,
    and a keyboard; the process is killed on the way out if it still runs."""
    master, slave = pty.openpty()
    screen: list[bytes] = []

    def drain() -> None:  # the view writes frames; an unread pty would block it
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            screen.append(data)

    def press(keys: bytes) -> None:
        os.write(master, keys)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        with reaped(subprocess.Popen([AGENTCTL, *args], cwd=cwd, stdin=slave, stdout=slave, stderr=slave,
                                     env={**os.environ, "COLUMNS": "120", "LINES": "40"})) as proc:
            os.close(slave)
            yield proc, screen, press
    finally:
        reader.join(5)
        os.close(master)


def seen(screen: list[bytes], what: str, timeout: float = 20) -> None:
    """Wait until the terminal has shown ``what``."""
    deadline = time.monotonic() + timeout
    while what.encode() not in b"".join(screen):
        assert time.monotonic() < deadline, f"the terminal never showed {what!r}"
        time.sleep(0.05)
