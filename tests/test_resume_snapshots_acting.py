"""Snapshots of agents caught at a checkpoint in the middle of their actions: a sleep, a
lock wait, a call held for approval, a parallel batch of calls (issue 11). Each run is
SIGKILLed from outside once a checkpoint holds such a snapshot, then resumed: the agent is
restored from it (``agent/resumed`` says ``snapshot: true``) and ends as it would have
without the crash."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from cli_helpers import PLUGINS, ends, events, invoke, of, running, wait_for
from test_resume_guarantees import RUN, resume, write_plan

from agentctl.events.reader import read_events


def snapshot_of(run_dir: Path, agent: str) -> dict[str, Any] | None:
    """The snapshot of ``agent`` in the run's newest checkpoint, if it has one."""
    paths = sorted((run_dir / "checkpoints").glob("ckpt-*.json"))
    for path in reversed(paths):
        try:
            body = orjson.loads(path.read_bytes().partition(b"\n")[2])
        except (orjson.JSONDecodeError, OSError):
            continue  # being written
        journal = body["run"]["journals"].get(agent) or {}
        return journal.get("snapshot")
    return None


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
    ws = tmp_path / "ws"
    (ws / "out").mkdir(parents=True)
    run_dir = tmp_path / "run"
    with running("run", str(plan), *RUN, "--run-dir", str(run_dir), "--workspace", str(ws), cwd=ws, env=env(),
                 stderr=subprocess.DEVNULL) as proc:
        deadline = time.monotonic() + 30
        while not all(op in acting_ops(snapshot_of(run_dir, agent)) for agent, op in want.items()):
            assert proc.poll() is None, "the run ended before a checkpoint caught it in the act"
            assert time.monotonic() < deadline, {agent: snapshot_of(run_dir, agent) for agent in want}
            time.sleep(0.05)
        time.sleep(after)
    return ws, run_dir


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
