"""Snapshots of agents caught at a checkpoint in the middle of their actions: a sleep, a
lock wait, a call held for approval, a parallel batch of calls (issue 11). Each run is
SIGKILLed from outside once a checkpoint holds such a snapshot, then resumed: the agent is
restored from it (``agent/resumed`` says ``snapshot: true``) and ends as it would have
without the crash."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from cli_helpers import PLUGINS, ends, events, invoke, of, running, wait_for
from test_resume_guarantees import RUN, resume, write_plan

from agentctl.events.reader import read_events


def journal_of(run_dir: Path, agent: str, after: int = 0) -> dict[str, Any] | None:
    """The journal of ``agent`` in the run's newest checkpoint (of an event past ``after``)."""
    for path in sorted((run_dir / "checkpoints").glob("ckpt-*.json"), reverse=True):
        if int(path.stem.partition("-")[2]) <= after:
            return None
        try:
            body = orjson.loads(path.read_bytes().partition(b"\n")[2])
        except (orjson.JSONDecodeError, OSError):
            continue  # being replaced
        journal: dict[str, Any] | None = body["run"]["journals"].get(agent)
        return journal
    return None


def snapshot_of(run_dir: Path, agent: str) -> dict[str, Any] | None:
    """The snapshot of ``agent`` in the run's newest checkpoint, if it has one."""
    return (journal_of(run_dir, agent) or {}).get("snapshot")


def acting_ops(snapshot: dict[str, Any] | None) -> list[str]:
    """The kinds of action a snapshot records its agent carrying out."""
    return [a["op"] for a in (snapshot or {}).get("actions") or ()]


def env() -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("AGENTCTL_", "TEST_KILL"))},
            "PYTHONPATH": str(PLUGINS)}


def killed_at_snapshot(tmp_path: Path, plan: Path, want: dict[str, str], after: float = 0.0) -> tuple[Path, Path]:
    """Run ``plan`` and SIGKILL it from outside ``after`` s once its newest checkpoint has a
    snapshot of each agent of ``want`` carrying out an action of that kind. The workspace
    and the run directory."""
    ws, run_dir = tmp_path / "ws", tmp_path / "run"
    (ws / "out").mkdir(parents=True)
    killed_when_checkpointed(plan, ws, run_dir, lambda: all(op in acting_ops(snapshot_of(run_dir, agent))
                                                            for agent, op in want.items()), after=after)
    return ws, run_dir


def killed_when_checkpointed(plan: Path, ws: Path, run_dir: Path, ready: Callable[[], bool], *more: str,
                             after: float = 0.0, extra: dict[str, str] | None = None) -> None:
    """Run (or with ``more``, resume) ``plan`` and SIGKILL it from outside ``after`` s once ``ready()``."""
    args = more or ("--run-dir", str(run_dir), "--workspace", str(ws))
    with running("run", str(plan), *RUN, *args, cwd=ws, env={**env(), **(extra or {})},
                 stderr=subprocess.DEVNULL) as proc:
        deadline = time.monotonic() + 30
        while not ready():
            assert proc.poll() is None, "the run ended before a checkpoint caught it in the act"
            assert time.monotonic() < deadline, "no checkpoint caught the run in the act"
            time.sleep(0.05)
        time.sleep(after)


def resumed_from_snapshot(run_dir: Path, agent: str) -> bool:
    return bool(next(e for e in read_events(run_dir / "events.jsonl")
                     if e["type"] == "agent/resumed" and e["agent_id"] == agent)["snapshot"])


NAP = """\
name: nap
settings: {checkpoint_seconds: 0.2}
tasks:
  - id: napper
    agent: script
    steps:
      - write: {path: out/before.txt, content: "x"}
      - sleep: 4
      - write: {path: out/awake.txt, content: "awake\\n"}
"""


@pytest.mark.slow  # waits out real seconds across a kill and a resume
def test_a_sleeper_restored_from_a_snapshot_wakes_at_its_original_deadline(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, NAP)
    ws, run_dir = killed_at_snapshot(tmp_path, plan, {"napper": "sleep"})
    time.sleep(1.5)  # down time counts against the sleep too
    resumed = resume(plan, run_dir, ws)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed_from_snapshot(run_dir, "napper")
    evs = list(read_events(run_dir / "events.jsonl"))
    began = next(e["t"] for e in evs if e["type"] == "agent/status" and e.get("status") == "sleeping")
    back = next(e["t"] for e in evs if e["type"] == "run/resumed")
    woke = [e["t"] for e in evs if e["type"] == "tool/requested" and e["arguments"]["path"] == "out/awake.txt"]
    # Slept again from zero, it would wake 4 s after the resume; it had at most 2.5 s left.
    assert len(woke) == 1 and woke[0] - began >= 4000 and woke[0] - back < 3000
    assert (ws / "out" / "awake.txt").read_text() == "awake\n"


#: The holder takes ``p`` and waits for the pinger's go; ``first`` queues for ``p``, then
#: ``second`` (listed before it: started again in plan order, it would queue first).
QUEUE = """\
name: queue
settings: {checkpoint_seconds: 0.2}
defaults: {restart: temporary}
tasks:
  - id: holder
    agent: script
    steps:
      - lock: p
      - wait: {kind: go}
      - append: {path: out/order.txt, content: "holder\\n"}
      - unlock: p
  - id: second
    agent: script
    steps:
      - sleep: 0.5
      - lock: {path: p, timeout: 60}
      - append: {path: out/order.txt, content: "second\\n"}
      - unlock: p
  - id: first
    agent: script
    steps:
      - lock: {path: p, timeout: 60}
      - append: {path: out/order.txt, content: "first\\n"}
      - unlock: p
  - id: pinger
    agent: script
    steps:
      - sleep: 3
      - send: {to: holder, kind: go}
"""


@pytest.mark.slow  # waits out real seconds across a kill and a resume
def test_lock_waiters_restored_from_snapshots_queue_again_in_their_order(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, QUEUE)
    ws, run_dir = killed_at_snapshot(tmp_path, plan, {"first": "lock", "second": "lock"})
    resumed = resume(plan, run_dir, ws)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed_from_snapshot(run_dir, "first") and resumed_from_snapshot(run_dir, "second")
    assert (ws / "out" / "order.txt").read_text() == "holder\nfirst\nsecond\n"
    evs = list(read_events(run_dir / "events.jsonl"))
    back = next(i for i, e in enumerate(evs) if e["type"] == "run/resumed")
    # Never held twice: each holder takes it once (the holder's back from the log) and frees it.
    taken = [(e["agent_id"], e["by"], e["count"]) for e in evs[back:] if e["type"] == "lock/acquired"
             and e["path"] == "p"]
    assert taken == [("holder", "resume", 1), ("first", "step", 1), ("second", "step", 1)]


GATED = """\
name: gated
settings: {checkpoint_seconds: 0.2}
defaults: {tools: [fs/write, fs/append], restart: temporary}
policy: {approve: ["fs/write:src/**"]}
tasks:
  - id: writer
    agent: script
    steps:
      - append: {path: notes.txt, content: "before\\n"}
      - write: {path: src/app.py, content: "print(1)\\n"}
      - append: {path: notes.txt, content: "after\\n"}
"""


@pytest.mark.slow  # test_approvals keeps a held call across a kill in the default suite
def test_a_call_held_for_approval_is_still_held_after_a_resume_from_its_snapshot_and_asked_once(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, GATED)
    ws, run_dir = killed_at_snapshot(tmp_path, plan, {"writer": "tool"})
    evs = events(run_dir)
    call = of(evs, "approval/requested")[0]["call_id"]
    with running("run", str(plan), *RUN, "--resume", str(run_dir), cwd=ws, env=env()) as proc:
        evs = wait_for(run_dir, lambda e: of(e, "agent/resumed", "writer") and of(e, "agent/status", "writer")
                       and of(e, "agent/status", "writer")[-1]["seq"] > of(e, "run/resumed")[0]["seq"])
        assert of(evs, "agent/status", "writer")[-1]["reason"] == "approval"  # held again
        assert of(evs, "agent/resumed", "writer")[0]["snapshot"] is True
        assert not (ws / "src").exists()
        assert invoke("approve", str(run_dir), call, cwd=ws).returncode == 0
        ends(proc, 0)
    evs = events(run_dir)
    assert [e["call_id"] for e in of(evs, "approval/requested")] == [call]  # never asked again
    assert [e["call_id"] for e in of(evs, "tool/requested") if e["call_id"] == call] == [call]
    assert (ws / "src" / "app.py").read_text() == "print(1)\n"
    assert (ws / "notes.txt").read_text() == "before\nafter\n"


BATCH = """\
name: batch
settings: {checkpoint_seconds: 0.2, plugins: [snap_steps, resume_tools]}
defaults: {tools: [test/count, test/gated_line, fs/write], restart: temporary}
tasks:
  - {id: batcher, agent: python, step: "snap_steps:STEP"}
"""


def mid_batch(run_dir: Path, snapshot: bool, after: int = 0) -> bool:
    """Whether the newest checkpoint (of an event past ``after``) catches the batcher with
    two of its three calls answered (and its snapshot, if ``snapshot``)."""
    journal = journal_of(run_dir, "batcher", after) or {}
    done = sorted(bool(e.get("done")) for e in journal.get("effects", ()) if e["op"] == "tool")
    return done == [False, True, True] and ("snapshot" in journal) == snapshot


def files(ws: Path) -> dict[str, bytes]:
    return {str(p.relative_to(ws)): p.read_bytes() for p in sorted(ws.rglob("*")) if p.is_file()}


def uncrashed(tmp_path: Path, plan: Path) -> dict[str, bytes]:
    """The workspace a run of ``plan`` that nothing kills leaves."""
    ws = tmp_path / "clean"
    (ws / "out").mkdir(parents=True)
    (ws / "go").touch()
    with running("run", str(plan), *RUN, "--run-dir", str(tmp_path / "clean-run"), "--workspace", str(ws), cwd=ws,
                 env=env()) as proc:
        ends(proc, 0)
    return files(ws)


def recorded_calls(evs: list[dict[str, Any]]) -> set[str]:
    return {e["call_id"] for e in evs if e["type"] == "tool/result"}


@pytest.mark.parametrize(("step", "version", "restored"), [
    ("batch", "1", True),
    pytest.param("batch_plain", "1", False, marks=pytest.mark.slow),  # no keeps_state: replayed in full
    pytest.param("batch", "2", False, marks=pytest.mark.slow),  # another version's snapshot: replayed in full
    pytest.param("batch_async", "1", True, marks=pytest.mark.slow),  # an async step's batch
])
def test_a_plugin_step_caught_mid_batch_resumes_without_running_a_recorded_call_again(
        tmp_path: Path, step: str, version: str, restored: bool) -> None:
    plan = write_plan(tmp_path, BATCH.replace("STEP", step))
    ws, run_dir = tmp_path / "ws", tmp_path / "run"
    (ws / "out").mkdir(parents=True)
    killed_when_checkpointed(plan, ws, run_dir, lambda: mid_batch(run_dir, snapshot=step != "batch_plain"))
    before = recorded_calls(events(run_dir))
    (ws / "go").touch()
    resumed = resume(plan, run_dir, ws, env={"SNAP_STEPS_VERSION": version})
    assert resumed.returncode == 0, resumed.stderr
    assert resumed_from_snapshot(run_dir, "batcher") is restored
    evs = events(run_dir)
    back = next(i for i, e in enumerate(evs) if e["type"] == "run/resumed")
    assert not [e for e in evs[back:] if e["type"] == "tool/requested" and e["call_id"] in before]
    assert files(ws) == uncrashed(tmp_path, plan)
    warned = resumed.stderr.count("the checkpoint's snapshot of its state cannot be used")
    assert warned == (1 if version == "2" else 0), resumed.stderr
    if version == "2":
        assert f"it was taken of another step function ('python/1:snap_steps.{step}', not 'python/2:snap_steps.{step}')" \
            in resumed.stderr


@pytest.mark.slow  # three processes killed or resumed
def test_a_batch_restored_from_a_snapshot_survives_a_second_crash_mid_batch(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, BATCH.replace("STEP", "batch"))
    ws, run_dir = tmp_path / "ws", tmp_path / "run"
    (ws / "out").mkdir(parents=True)
    killed_when_checkpointed(plan, ws, run_dir, lambda: mid_batch(run_dir, snapshot=True))
    before = recorded_calls(events(run_dir))
    last = events(run_dir)[-1]["seq"]
    # Resumed, still waiting for the gated call, and killed again once a checkpoint of the
    # resumed run has snapshotted it anew.
    killed_when_checkpointed(plan, ws, run_dir, lambda: mid_batch(run_dir, snapshot=True, after=last),
                             "--resume", str(run_dir))
    (ws / "go").touch()
    resumed = resume(plan, run_dir, ws)
    assert resumed.returncode == 0, resumed.stderr
    evs = events(run_dir)
    assert [e["snapshot"] for e in of(evs, "agent/resumed", "batcher")] == [True, True]
    first_back = next(i for i, e in enumerate(evs) if e["type"] == "run/resumed")
    assert not [e for e in evs[first_back:] if e["type"] == "tool/requested" and e["call_id"] in before]
    assert files(ws) == uncrashed(tmp_path, plan)


GRANTED = """\
name: granted
settings: {checkpoint_seconds: 0.2, plugins: [resume_tools]}
defaults: {tools: [test/gated_line], restart: temporary}
policy: {approve: ["test/gated_line"]}
tasks:
  - id: liner
    agent: script
    steps:
      - call: {tool: test/gated_line, args: {n: 1}}
"""


@pytest.mark.slow  # a real approval over the control socket, a kill and a resume
def test_a_call_approved_before_the_crash_is_not_asked_again_after_a_resume_from_its_snapshot(tmp_path: Path) -> None:
    """Approved, then killed while it runs (it waits for the file ``go``): resumed from the
    snapshot taken while it was held, it runs again without a second request."""
    plan = write_plan(tmp_path, GRANTED)
    ws, run_dir = tmp_path / "ws", tmp_path / "run"
    (ws / "out").mkdir(parents=True)

    def approved_and_running() -> bool:
        evs = events(run_dir)
        asked = of(evs, "approval/requested")
        if asked and not of(evs, "approval/granted") and "tool" in acting_ops(snapshot_of(run_dir, "liner")):
            assert invoke("approve", str(run_dir), asked[0]["call_id"], cwd=ws).returncode == 0
        last = evs[-1]["seq"] if evs else 0
        return bool(of(evs, "tool/requested")) and bool(snapshot_of(run_dir, "liner")) and \
            journal_of(run_dir, "liner", after=last - 1) is not None

    killed_when_checkpointed(plan, ws, run_dir, approved_and_running)
    (ws / "go").touch()
    resumed = resume(plan, run_dir, ws)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed_from_snapshot(run_dir, "liner")
    evs = events(run_dir)
    assert len(of(evs, "approval/requested")) == 1 and len(of(evs, "approval/granted")) == 1
    assert (ws / "out" / "lines.txt").read_text() == "line-01\n"


MIXED = """\
name: mixed
settings: {checkpoint_seconds: 0.2, plugins: [snap_steps, resume_tools]}
defaults: {tools: [test/gated_line, fs/write, fs/append], restart: temporary}
tasks:
  - {id: batcher, agent: python, step: "snap_steps:mixed"}
  - id: peer
    agent: script
    steps:
      - wait: hello
      - append: {path: out/peer.txt, content: "got\\n"}
"""


def sent_once_and_unlocked_once(run_dir: Path, ws: Path) -> None:
    """The batcher's send and unlock, logged before the kill, were not made again."""
    evs = events(run_dir)
    assert len([e for e in of(evs, "agent/message") if e["from"] == "batcher" and not e["signal"]]) == 1
    assert len([e for e in of(evs, "lock/released", "batcher") if e["path"] == "out/p"]) == 1
    assert (ws / "out" / "summary.txt").read_text() == "True True True\n"
    assert (ws / "out" / "lines.txt").read_text() == "line-03\n"
    assert (ws / "out" / "peer.txt").read_text() == "got\n"


def test_a_list_with_a_send_and_an_unlock_is_snapshotted_mid_call_and_neither_is_made_again(tmp_path: Path) -> None:
    """Killed while the call after the send and the unlock waits, once a checkpoint
    snapshots the batcher there: restored from that snapshot, the send and the unlock are
    answered from the log (not sent, not released again), and the list goes on."""
    plan = write_plan(tmp_path, MIXED)
    ws, run_dir = killed_at_snapshot(tmp_path, plan, {"batcher": "send"})
    assert acting_ops(snapshot_of(run_dir, "batcher")) == ["send", "unlock", "tool"]
    (ws / "go").touch()
    resumed = resume(plan, run_dir, ws)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed_from_snapshot(run_dir, "batcher")
    sent_once_and_unlocked_once(run_dir, ws)


@pytest.mark.slow  # three processes killed or resumed
def test_a_list_with_a_send_and_an_unlock_survives_a_second_crash_after_its_restore(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, MIXED)
    ws, run_dir = killed_at_snapshot(tmp_path, plan, {"batcher": "send"})
    last = events(run_dir)[-1]["seq"]
    # Resumed, still in the call, and killed again once the resumed run's checkpoint snapshots it anew.
    killed_when_checkpointed(plan, ws, run_dir, lambda: "send" in acting_ops((journal_of(run_dir, "batcher", last)
                                                                              or {}).get("snapshot")),
                             "--resume", str(run_dir))
    (ws / "go").touch()
    resumed = resume(plan, run_dir, ws)
    assert resumed.returncode == 0, resumed.stderr
    assert [e["snapshot"] for e in of(events(run_dir), "agent/resumed", "batcher")] == [True, True]
    sent_once_and_unlocked_once(run_dir, ws)


@pytest.mark.slow  # waits out real seconds across a kill and a resume
def test_a_list_that_ends_in_done_is_snapshotted_mid_sleep_and_done_once_after_the_resume(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, MIXED)
    ws, run_dir = tmp_path / "ws", tmp_path / "run"
    (ws / "out").mkdir(parents=True)
    (ws / "go").touch()
    killed_when_checkpointed(plan, ws, run_dir, lambda: acting_ops(snapshot_of(run_dir, "batcher")) == ["sleep", "done"])
    resumed = resume(plan, run_dir, ws)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed_from_snapshot(run_dir, "batcher")
    done = of(events(run_dir), "agent/done", "batcher")
    assert [(e["status"], e["result"]) for e in done] == [("ok", "finished")]
    sent_once_and_unlocked_once(run_dir, ws)
