"""A resumed agent goes through the same steps as the agent that died: each recorded message
reaches the step that read it the first time, a message that comes live while it replays is
read after those, and a lock taken twice is still held once after the first of its two
unlocks (issue 11)."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal
from cli_helpers import events, invoke, of, start
from llm_servers import Behaviour, LLMServer, Recorded, running_server
from test_resume_guarantees import RUN, agentctl, resume, write_plan
from test_resume_snapshots_acting import killed_when_checkpointed

#: The model's answers, by turn (the assistant messages already in the conversation): an
#: append each turn, then a final answer. Turns 1 and 3 are held until the test has sent
#: the agent a message, so each message comes while a call is in flight, between two steps.
TURNS = 6
NOTED = (1, 3)


def _plan(url: str) -> str:
    return json.dumps({
        "name": "talk",
        # A checkpoint every 2 events: the agent's state is snapshotted while it waits for its model.
        "settings": {"checkpoint_events": 2},
        "defaults": {"provider": "openai", "model": "m", "base_url": url + "/v1", "restart": "temporary",
                     "tools": ["fs/append"]},
        "tasks": [{"id": "boss", "agent": "llm", "instructions": "keep a log of your turns"}],
    })


def _turn(request: Recorded) -> int:
    return sum(m.get("role") == "assistant" for m in request.body["messages"])


def _converse(cwd: Path, server: LLMServer, kill_at: int | None, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Run the conversation (killed at the ``kill_at``-th ``llm/result`` and resumed, if set);
    the last request's conversation without its system prompt."""
    gates = {k: threading.Event() for k in NOTED}
    replies = [Behaviour(content="", tool_calls=[("fs__append", {"path": "log.txt", "content": f"turn {k}\n"})],
                         gate=gates.get(k)) for k in range(TURNS - 1)]
    server.reply_for = lambda request: replies[_turn(request)] if _turn(request) < len(replies) else Behaviour("finished")
    (cwd / "plan.yaml").write_text(_plan(server.url))
    if kill_at is not None:
        monkeypatch.setenv("AGENTCTL_FAULT", f"kill@llm/result#{kill_at}")
    runs = [start("run", "plan.yaml", "--no-ui", "--no-watch-plan", "--run-dir", "run", cwd=cwd)]
    monkeypatch.delenv("AGENTCTL_FAULT", raising=False)
    first = _feed(runs[0], cwd, server, gates)
    if kill_at is not None:
        assert first == -signal.SIGKILL
        runs.append(start("run", "plan.yaml", "--no-ui", "--no-watch-plan", "--resume", "run", cwd=cwd))
        assert _feed(runs[1], cwd, server, gates) == 0
    else:
        assert first == 0
    assert (cwd / "log.txt").read_text() == "".join(f"turn {k}\n" for k in range(TURNS - 1))
    assert of(events(cwd / "run"), "agent/done", "boss")[0]["result"] == "finished"
    last = server.requests[-1].body["messages"]
    assert _turn(server.requests[-1]) == TURNS - 1
    return [m for m in last if m.get("role") != "system"]


def _feed(proc: subprocess.Popen[str], cwd: Path, server: LLMServer, gates: dict[int, threading.Event]) -> int:
    """While ``proc`` runs: once the model is asked a held turn, send the agent a note, then
    let the model answer."""
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            asked = {_turn(r) for r in server.requests}
            for k, gate in gates.items():
                if k in asked and not gate.is_set():
                    sent = invoke("send", f"note {k}", "--to", "boss", "--run", "run", cwd=cwd)
                    assert sent.returncode == 0, sent.stderr
                    gate.set()
            time.sleep(0.05)
        return proc.wait(5)
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def uncrashed(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    cwd = tmp_path_factory.mktemp("uncrashed")
    with pytest.MonkeyPatch.context() as mp, start_blocking_portal() as portal, \
            portal.wrap_async_context_manager(running_server()) as server:
        return _converse(cwd, server, None, mp)


@pytest.mark.parametrize("kill_at", [pytest.param(3, marks=pytest.mark.slow), 5])  # 3 in -m slow: suite time
def test_a_resumed_llm_agent_reads_each_message_at_the_step_it_first_did(
    uncrashed: list[dict[str, Any]], tmp_path: Path, kill_at: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each note came while a call was in flight, so the step after it read it: it is the
    # user turn after that call's tool answer, in the crashed-and-resumed run as in the other.
    notes = [i for i, m in enumerate(uncrashed) if m["role"] == "user" and "note" in m["content"]]
    assert [uncrashed[i - 1]["role"] for i in notes] == ["tool", "tool"]
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(running_server()) as server:
        resumed = _converse(tmp_path, server, kill_at, monkeypatch)
    assert resumed == uncrashed
    again = of(events(tmp_path / "run"), "agent/resumed", "boss")
    assert [e["snapshot"] for e in again] == [True]  # restored from the snapshot, the rest replayed


def test_a_log_without_message_steps_hands_every_message_to_the_first_step() -> None:
    # Written before agent/message had ``step``: replayed as it always was, all at the start.
    from agentctl.events.journal import HANDLERS, Journal
    from agentctl.runtime.resume_state import Replay
    from agentctl.services.bus import Inbox

    journals: dict[str, Journal] = {}
    HANDLERS["agent/spawned"](journals, {"type": "agent/spawned", "agent_id": "a", "t": 1})
    for n in (1, 2):
        HANDLERS["agent/message"](journals, {"type": "agent/message", "agent_id": "a", "msg_id": f"m{n}", "from": "user",
                                             "to": "a", "kind": "chat", "body": n, "delivered": True, "t": n})
    HANDLERS["agent/message"](journals, {"type": "agent/message", "agent_id": "a", "msg_id": "m3", "from": "user",
                                         "to": "a", "kind": "chat", "body": 3, "delivered": True, "t": 3, "step": 2})
    replay, inbox = Replay(journals["a"]), Inbox()
    replay.deliver(inbox)
    assert [m.body for m in inbox.drain()] == [1, 2]
    inbox.steps = 1
    replay.deliver(inbox)
    assert not inbox.drain() and not replay.finished
    inbox.steps = 2
    replay.deliver(inbox)
    assert [m.body for m in inbox.drain()] == [3] and replay.finished


def test_the_locks_given_back_count_every_logged_hold_and_an_older_log_frees_at_its_unlock() -> None:
    from agentctl.events.journal import HANDLERS, Journal

    def journal(*released: dict[str, Any]) -> Journal:
        journals: dict[str, Journal] = {}
        HANDLERS["agent/spawned"](journals, {"type": "agent/spawned", "agent_id": "a", "t": 1})
        for n in (1, 2):
            HANDLERS["lock/acquired"](journals, {"type": "lock/acquired", "agent_id": "a", "path": "p", "mode": "write",
                                                 "count": n, "by": "step"})
        for e in released:
            HANDLERS["lock/released"](journals, {"type": "lock/released", "agent_id": "a", "path": "p", "reason": "release",
                                                 "by": "step", **e})
        return journals["a"]

    assert journal().held_locks() == {"p": ("write", 2)}
    assert journal({"count": 1}).held_locks() == {"p": ("write", 1)}
    assert journal({"count": 1}, {"count": 0}).held_locks() == {}
    # Written before lock/released had count: only the unlock that freed it was logged.
    assert journal({}).held_locks() == {}


def test_a_replayed_step_sees_a_child_that_ended_before_the_crash_until_it_reads_of_its_end() -> None:
    """The line-up a resumed agent's replayed steps see: children that ended before the crash
    keep their start order among the live ones until a step reads their end report, or the
    agent's replayed stop of one, or the end of the replay (the no-report ends)."""
    from agentctl.policy import UNLIMITED, Grant
    from agentctl.runtime.agent import Agent
    from agentctl.runtime.spec import AgentSpec
    from agentctl.services.bus import Inbox, Message

    def agent(agent_id: str, parent: Agent | None) -> Agent:
        return Agent(AgentSpec(agent_id, lambda ctx: []), parent, Grant(None, frozenset(), UNLIMITED), Inbox(4))

    def report(sender: str, kind: str, signal: bool = True) -> Message:
        return Message("m", sender, "boss", kind, None, None, 1, None, signal)

    boss = agent("boss", None)
    boss.children["c0"] = agent("c0", boss)  # live, started again before the first ended one
    boss.ended_before("c1")
    for child in ("c2", "c3"):
        boss.children[child] = agent(child, boss)
        boss.spawned_child(child)
        if child == "c2":
            boss.ended_before("c4")
    assert boss.child_ids() == ("c0", "c1", "c2", "c4", "c3")
    del boss.children["c3"]  # a live child that ends now
    assert boss.child_ids() == ("c0", "c1", "c2", "c4")
    boss.read_ends((report("c1", "chat", signal=False), report("c1", "restarted")), live=False)
    assert boss.child_ids() == ("c0", "c1", "c2", "c4")  # not its end report
    boss.read_ends((report("c1", "done"),), live=False)
    boss.saw_end("c2")  # a live child: stopping it is not the replay's to note
    assert boss.child_ids() == ("c0", "c2", "c4")
    boss.saw_end("c4")
    assert boss.lineup is None and boss.child_ids() == ("c0", "c2")
    boss.ended_before("c5")  # no report came to it: gone once the replay is over
    boss.read_ends((), live=True)
    assert boss.lineup is None and boss.child_ids() == ("c0", "c2")


# --- a message that comes live while the agent still replays its past --------------------

#: The listener reads ``a``, appends APPENDS lines (its replayed past: one outcome, and one
#: event-loop turn, each), then waits for ``b``, which the sender sends 4 s after ``a``. Killed
#: in that wait and resumed once the 4 s are over, the sender sends ``b`` as soon as it is
#: started again: while the listener still replays its appends.
APPENDS = 12
LATE = """\
name: late
tasks:
  - id: listener
    agent: script
    steps:
      - wait: a
APPENDS\
      - wait: b
      - append: {path: l.txt, content: "end\\n"}
      - sleep: 2
      - append: {path: l.txt, content: "slept\\n"}
  - id: sender
    agent: script
    steps:
      - send: {to: listener, kind: a}
      - sleep: 4
      - send: {to: listener, kind: b}
""".replace("APPENDS", "".join(f'      - append: {{path: l.txt, content: "{n}\\n"}}\n' for n in range(APPENDS)))


def _late_run(tmp_path: Path) -> tuple[Path, Path, Path]:
    ws, run_dir = tmp_path / "ws", tmp_path / "run"
    ws.mkdir()
    return write_plan(tmp_path, LATE), ws, run_dir


def _listener_steps(run_dir: Path) -> int:
    """The listener's steps at its end; its appends once each, in order."""
    return int(of(events(run_dir), "agent/done", "listener")[0]["steps"])


def _b(run_dir: Path) -> list[dict[str, Any]]:
    return [e for e in of(events(run_dir), "agent/message", "listener") if e["kind"] == "b"]


@pytest.fixture(scope="module")
def late_uncrashed(tmp_path_factory: pytest.TempPathFactory) -> int:
    plan, ws, run_dir = _late_run(tmp_path_factory.mktemp("late"))
    done = agentctl("run", str(plan), *RUN, "--run-dir", str(run_dir), "--workspace", str(ws), cwd=ws)
    assert done.returncode == 0, done.stderr
    # b came once the appends were over: the listener read it in a step of its own.
    assert _b(run_dir)[0]["step"] > APPENDS
    return _listener_steps(run_dir)


@pytest.mark.slow  # waits out the sender's 4 s and the listener's 2 s sleep, across kills
@pytest.mark.parametrize("crashes", [1, 2])
def test_a_message_that_comes_while_the_agent_replays_is_read_after_what_it_replays(
        late_uncrashed: int, tmp_path: Path, crashes: int) -> None:
    """Killed while the listener waits for ``b`` (and, with ``crashes`` 2, again in its sleep
    after it read ``b`` in the resumed run), the resumed listener reads ``b`` in a step of its
    own after its replayed appends, as in a run never killed: the same steps at its end (it
    used to read ``b`` with one of its replayed appends' results, one step early)."""
    plan, ws, run_dir = _late_run(tmp_path)

    def appended() -> bool:
        return len(of(events(run_dir), "tool/result", "listener")) == APPENDS

    killed_when_checkpointed(plan, ws, run_dir, appended)
    assert not _b(run_dir), "the sender sent b before the kill"
    # The sender's sleep (from when a came, on the logged clock) runs out while the run is down.
    sent_a = of(events(run_dir), "agent/message", "listener")[0]["t"] / 1000
    time.sleep(max(0.0, sent_a + 4.3 - time.time()))
    if crashes == 2:
        killed_when_checkpointed(plan, ws, run_dir, lambda: "end" in (ws / "l.txt").read_text(), "--resume", str(run_dir))
    resumed = resume(plan, run_dir, ws)
    assert resumed.returncode == 0, resumed.stderr
    # b came while the resumed listener replayed its appends (it had taken fewer steps then).
    assert len(_b(run_dir)) == 1 and _b(run_dir)[0]["step"] < APPENDS
    assert (ws / "l.txt").read_text() == "".join(f"{n}\n" for n in range(APPENDS)) + "end\nslept\n"
    assert _listener_steps(run_dir) == late_uncrashed
    assert len(of(events(run_dir), "agent/resumed", "listener")) == crashes


def test_a_held_message_is_handed_over_where_the_replay_ended_or_held_again() -> None:
    """The journal of a message that came while a resume replayed: once ``agent/replayed``
    says at which step the replay ended, a later resume hands it over there (so the step after
    reads it, as in that resume); killed before that, it is held back again in the next
    replay, after the recorded ones. A log written before holding keeps each message's step."""
    from agentctl.events.journal import HANDLERS, Journal
    from agentctl.runtime.resume_state import Replay
    from agentctl.services.bus import Inbox

    def fold(*evs: dict[str, Any]) -> Journal:
        journals: dict[str, Journal] = {}
        HANDLERS["agent/spawned"](journals, {"type": "agent/spawned", "agent_id": "a", "t": 1})
        for e in evs:
            HANDLERS[e["type"]](journals, {"agent_id": "a", **e})
        return Journal.from_dict(json.loads(json.dumps(journals["a"].to_dict())))  # as a checkpoint keeps it

    def message(n: int, step: int) -> dict[str, Any]:
        return {"type": "agent/message", "msg_id": f"m{n}", "from": "user", "to": "a", "kind": "chat", "body": n,
                "delivered": True, "t": n, "step": step}

    resumed = {"type": "agent/resumed", "held": True}
    recorded = message(1, 2)
    # Came at the resumed agent's 3rd step; its replay ended at its 14th.
    replay = Replay(fold(recorded, resumed, message(2, 3), {"type": "agent/replayed", "step": 14, "messages": 1}))
    assert [(step, m.body) for step, m in replay.mail] == [(2, 1), (14, 2)] and not replay.held
    # Killed while it still replayed: held again, behind the recorded message.
    replay = Replay(fold(recorded, resumed, message(2, 3)))
    assert [m.body for _, m in replay.mail] == [1] and [m.body for m in replay.held] == [2]
    inbox = Inbox(4)
    inbox.hold(replay.held)
    inbox.steps = 2
    replay.deliver(inbox)
    assert [m.body for m in inbox.drain()] == [1] and inbox.unread() == {"user": 1}
    assert inbox.release() == 1 and [m.body for m in inbox.drain()] == [2]
    # ... and again in that second resume, before its replay ended at its 14th step.
    replay = Replay(fold(recorded, resumed, message(2, 3), resumed, message(3, 5),
                         {"type": "agent/replayed", "step": 14, "messages": 2}))
    assert [(step, m.body) for step, m in replay.mail] == [(2, 1), (14, 2), (14, 3)]
    # An older resume held nothing back: its live messages keep the steps they came at.
    replay = Replay(fold(recorded, {"type": "agent/resumed"}, message(2, 3)))
    assert [(step, m.body) for step, m in replay.mail] == [(2, 1), (3, 2)]
