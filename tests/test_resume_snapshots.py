"""Agent-state snapshots: a checkpoint keeps a live agent's state, and resume restores it
and replays only what followed, ending as a run that never crashed (issue 11)."""

from __future__ import annotations

import hashlib
import signal
from pathlib import Path
from typing import Any

import orjson
import pytest
from test_resume_guarantees import resume, start_run, write_plan

from agentctl.events.reader import read_events

#: The clerk appends, waits for the pinger, appends, waits, appends; a checkpoint every 3
#: events, so one is written while it waits (idle: its snapshot has no call) and others
#: while an append is in flight (its snapshot awaits that call).
PLAN = """\
name: snap
settings: {checkpoint_events: 3}
defaults: {restart: temporary}
tasks:
  - id: clerk
    agent: script
    steps:
      - append: {path: out.txt, content: "1\\n"}
      - append: {path: out.txt, content: "2\\n"}
      - wait: {kind: go}
      - append: {path: out.txt, content: "3\\n"}
      - append: {path: out.txt, content: "4\\n"}
      - wait: {kind: go}
      - append: {path: out.txt, content: "5\\n"}
  - id: pinger
    agent: script
    steps:
      - sleep: 0.5
      - send: {to: clerk, kind: go}
      - sleep: 0.5
      - send: {to: clerk, kind: go}
"""
ALL = "1\n2\n3\n4\n5\n"


def _crashed(tmp_path: Path, kill_at: int) -> tuple[Path, Path, Path]:
    plan = write_plan(tmp_path, PLAN)
    ws, run_dir, crashed = start_run(tmp_path, plan, env={"AGENTCTL_FAULT": f"kill@tool/result#{kill_at}"})
    assert crashed.returncode == -signal.SIGKILL
    return plan, ws, run_dir


def _resumed_of(run_dir: Path, agent: str) -> dict[str, Any]:
    return next(e for e in read_events(run_dir / "events.jsonl") if e["type"] == "agent/resumed" and e["agent_id"] == agent)


def _newest_snapshot(run_dir: Path) -> tuple[Path, dict[str, Any]]:
    path = sorted((run_dir / "checkpoints").glob("ckpt-*.json"))[-1]
    body = orjson.loads(path.read_bytes().partition(b"\n")[2])
    return path, body


# The checkpointer writes in the background, so the newest checkpoint at a kill may be a
# few events old (under load it was one taken before the first wait, at kill #3); by the
# 5th result the clerk has waited 0.5 s a second time, so that one is taken at or after
# its first wait.
@pytest.mark.parametrize(("kill_at", "least_turns"), [pytest.param(3, 1, marks=pytest.mark.slow),
                                                   pytest.param(4, 1, marks=pytest.mark.slow), (5, 3)])
def test_a_run_resumed_from_a_snapshot_ends_as_an_uncrashed_one(tmp_path: Path, kill_at: int, least_turns: int) -> None:
    plan, ws, run_dir = _crashed(tmp_path, kill_at)
    _, body = _newest_snapshot(run_dir)
    snapshot = body["run"]["journals"]["clerk"]["snapshot"]
    assert snapshot["turns"] >= least_turns
    resumed = resume(plan, run_dir, ws)
    assert resumed.returncode == 0, resumed.stderr
    assert (ws / "out.txt").read_text() == ALL
    assert _resumed_of(run_dir, "clerk")["snapshot"] is True
    assert "warning" not in resumed.stderr
    results = [e["call_id"] for e in read_events(run_dir / "events.jsonl") if e["type"] == "tool/result"]
    assert len(results) == len(set(results))  # no recorded call made again


def _rewrite(path: Path, body: dict[str, Any]) -> None:
    """Save a checkpoint with a valid checksum: only the snapshot in it is wrong."""
    data = orjson.dumps(body)
    header = orjson.loads(path.read_bytes().partition(b"\n")[0])
    header["sha256"] = hashlib.sha256(data).hexdigest()
    path.write_bytes(orjson.dumps(header) + b"\n" + data)


@pytest.mark.slow  # three crashed runs; the default suite keeps the snapshot tests above
@pytest.mark.parametrize("damage", ["foreign", "damaged", "not an object"])
def test_a_snapshot_that_cannot_be_used_falls_back_to_replaying_the_whole_log(tmp_path: Path, damage: str) -> None:
    plan, ws, run_dir = _crashed(tmp_path, 4)
    assert "snapshot" in _newest_snapshot(run_dir)[1]["run"]["journals"]["clerk"]
    for path in sorted((run_dir / "checkpoints").glob("ckpt-*.json")):
        body = orjson.loads(path.read_bytes().partition(b"\n")[2])
        journal = body["run"]["journals"]["clerk"]
        if "snapshot" not in journal:
            continue
        if damage == "foreign":  # taken of another script (the plan changed, say)
            journal["snapshot"]["tag"] = "script/1:0123456789abcdef"
        elif damage == "damaged":
            journal["snapshot"]["state"]["pc"] = "three"
        else:
            journal["snapshot"] = ["pc", 3]
        _rewrite(path, body)
    resumed = resume(plan, run_dir, ws)
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert "warning: agent clerk: the checkpoint's snapshot of its state cannot be used" in resumed.stderr
    assert "replaying its whole history from the log instead" in resumed.stderr
    assert (ws / "out.txt").read_text() == ALL
    assert _resumed_of(run_dir, "clerk")["snapshot"] is False


LOCKED = """\
name: snaplock
settings: {checkpoint_events: 3}
defaults: {restart: temporary}
tasks:
  - id: holder
    agent: script
    steps:
      - lock: {path: p, timeout: 5}
      - lock: p
      - send: {to: waiter, kind: go}
      - wait: {kind: go}
      - append: {path: out.txt, content: "holder\\n"}
      - unlock: p
      - unlock: p
  - id: waiter
    agent: script
    steps:
      - wait: {kind: go}
      - lock: {path: p, timeout: 60}
      - append: {path: out.txt, content: "waiter\\n"}
      - unlock: p
  - id: pinger
    agent: script
    steps:
      - sleep: 2
      - send: {to: holder, kind: go}
"""


def test_a_snapshot_keeps_the_locks_its_agent_held_and_how_often(tmp_path: Path) -> None:
    """Killed while the holder, which took ``p`` twice, waits (snapshotted) and the waiter
    queues for ``p``: resumed, the holder has it back twice and the waiter gets it only
    after the holder's second unlock."""
    from test_resume_guarantees import killed_when

    plan = write_plan(tmp_path, LOCKED)
    ws, run_dir = killed_when(tmp_path, plan, lambda evs: any(e["type"] == "lock/conflict" and e["agent_id"] == "waiter"
                                                              for e in evs), after=0.5)
    assert _newest_snapshot(run_dir)[1]["run"]["journals"]["holder"]["snapshot"]["locks"] == {"p": ["write", 2]}
    resumed = resume(plan, run_dir, ws)
    assert resumed.returncode == 0, resumed.stderr
    assert (ws / "out.txt").read_text() == "holder\nwaiter\n"
    events = list(read_events(run_dir / "events.jsonl"))
    assert _resumed_of(run_dir, "holder")["snapshot"] is True
    back = next(i for i, e in enumerate(events) if e["type"] == "run/resumed")
    locks = [(e["type"], e["agent_id"], e.get("by"), e.get("count")) for e in events[back:]
             if e["type"] in ("lock/acquired", "lock/released") and e["path"] == "p"]
    assert locks == [("lock/acquired", "holder", "resume", 2), ("lock/released", "holder", "step", 1),
                     ("lock/released", "holder", "step", 0), ("lock/acquired", "waiter", "step", 1),
                     ("lock/released", "waiter", "step", 0)]


@pytest.mark.anyio
async def test_a_snapshot_that_is_not_json_leaves_the_journal_whole_and_the_checkpoint_written(tmp_path: Path) -> None:
    from agentctl.events.checkpoint import Checkpointer, load_checkpoint

    async def durable(seq: int) -> None:
        return None

    ckpt = Checkpointer(tmp_path, durable)
    for e in ({"seq": 1, "t": 1, "run_id": "r", "type": "run/started"},
              {"seq": 2, "t": 2, "run_id": "r", "type": "agent/spawned", "agent_id": "a", "depth": 0},
              {"seq": 3, "t": 3, "run_id": "r", "type": "lock/acquired", "agent_id": "a", "path": "p", "mode": "write",
               "count": 1, "by": "step"}):
        ckpt.feed(e)
    ckpt.snapshots = lambda: {"a": {"version": 1, "state": {"odd": object()}, "actions": [], "turns": 1}}
    assert await ckpt.checkpoint() is not None
    loaded = load_checkpoint(tmp_path)
    assert loaded is not None
    journal = loaded.state.journals.get("a")
    assert journal is not None and journal.snapshot is None and [e["op"] for e in journal.effects] == ["lock"]
