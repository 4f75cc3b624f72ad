"""The live view's approval panel: held calls listed, one selected, answered by a key.

The panel's logic is tested on a state folded from logged events, rendered into a recording
console; the keys themselves are tested end to end in a real ``agentctl run`` whose terminal
is a pseudo-terminal this test types into.
"""

from __future__ import annotations

import os
import pty
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from cli_helpers import AGENTCTL, events, of, reaped, wait_for
from rich.console import Console
from test_approvals import GATED

from agentctl.events.run_state import RunState
from agentctl.views.approval_keys import ApprovalKeys, decode_keys
from agentctl.views.live import render_run


def held_state(*calls: tuple[str, str, str]) -> RunState:
    state = RunState()
    for seq, (call, agent, path) in enumerate(calls, 1):
        state.apply({"seq": seq, "t": 1000 + seq, "run_id": "r", "type": "approval/requested", "agent_id": agent,
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

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        with reaped(subprocess.Popen([AGENTCTL, "run", "plan.yaml", "--run-dir", "run"], cwd=tmp_path, stdin=slave,
                                     stdout=slave, stderr=slave,
                                     env={**os.environ, "COLUMNS": "120", "LINES": "40"})) as proc:
            os.close(slave)
            first = of(wait_for(run, lambda e: of(e, "approval/requested")), "approval/requested")[0]["call_id"]
            seen(screen, f"› {first}")  # as a person would: press once the panel shows the call
            os.write(master, b"a")
            second = of(wait_for(run, lambda e: len(of(e, "approval/requested")) == 2), "approval/requested")[1]["call_id"]
            seen(screen, f"› {second}")
            os.write(master, b"dno lib changes\r")
            assert proc.wait(30) == 1  # the script failed on its denied call
    finally:
        os.close(master)
        reader.join(5)
    evs = events(run)
    assert [(e["call_id"], e["by"]) for e in of(evs, "approval/granted")] == [(first, "user")]
    assert [(e["call_id"], e["by"], e["reason"]) for e in of(evs, "approval/denied")] == [(second, "user", "no lib changes")]


def seen(screen: list[bytes], what: str, timeout: float = 20) -> None:
    """Wait until the terminal has shown ``what``."""
    deadline = time.monotonic() + timeout
    while what.encode() not in b"".join(screen):
        assert time.monotonic() < deadline, f"the live view never showed {what!r}"
        time.sleep(0.05)
