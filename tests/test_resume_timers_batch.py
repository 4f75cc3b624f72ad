"""A sleep in a parallel batch keeps its time across a crash (issue 11, durable timers).

Real ``agentctl run`` processes are SIGKILLed from outside while a ``python`` step's batch
holds a sleep whose siblings' outcomes are already logged, then resumed (replayed from the
log, or restored from a checkpoint's snapshot taken mid-batch; once or twice). The sleep
must end no earlier than its batch began plus its length, on the logged clock (the step
after the batch comes no earlier), and the step after the batch must see what it sees in
a run never killed: the same results, no recorded call made again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_helpers import events, of
from test_resume_guarantees import RUN, agentctl, resume, write_plan
from test_resume_snapshots_acting import acting_ops, journal_of, killed_when_checkpointed, resumed_from_snapshot

BATCH = """\
name: timers
settings: {{plugins: [snap_steps, resume_tools]{checkpoint}}}
defaults: {{tools: [test/count, test/gated_line, fs/write], restart: temporary}}
tasks:
  - {{id: batcher, agent: python, step: "timer_steps:{step}"}}
{more}"""

#: Sends ``ping`` to the batcher 2 s after it starts (after the 1 s sleep of ``wake`` ran
#: out), then 2 s later lets the batch's other call end.
PINGER = """\
  - id: pinger
    agent: script
    steps:
      - sleep: 2
      - send: {to: batcher, kind: ping}
      - sleep: 2
      - write: {path: go, content: ""}
"""

#: What the step after each batch writes in a run never killed (see test_uncrashed_runs_*).
NAP_SEEN = "True:timeout True:{'name': 'a'} True:{'name': 'b'} | \n"
WAKE_SEEN = "True:timeout True:{'n': 3} | ping\n"
WAKES_SEEN = "True:message True:message True:{'n': 3} | ping\n"


def plan_of(tmp_path: Path, step: str, snapshots: bool) -> Path:
    return write_plan(tmp_path, BATCH.format(step=step, checkpoint=", checkpoint_seconds: 0.2" if snapshots else "",
                                             more=PINGER if step.startswith("wake") else ""))


def counted(evs: list[dict[str, Any]]) -> bool:
    """Whether both of the nap batch's calls have their results logged."""
    return len([e for e in of(evs, "tool/result", "batcher") if e.get("tool") == "test/count"]) == 2


def snapped_mid_batch(run_dir: Path, after: int = 0) -> bool:
    """Whether the newest checkpoint (of an event past ``after``) holds a snapshot of the
    batcher in its batch, with both calls' results logged."""
    journal = journal_of(run_dir, "batcher", after) or {}
    snap = journal.get("snapshot")
    return acting_ops(snap) == ["parallel"] and sorted(e.get("done") for e in journal.get("effects", ())) == [True, True]


def crash(tmp_path: Path, plan: Path, snapshots: bool, *more: str, after: int = 0, wait: float = 0.0) -> tuple[Path, Path]:
    """Run the nap plan and SIGKILL it ``wait`` s once both calls' results are logged; with
    ``more`` (a resume), once the batcher is resumed; with ``snapshots``, once a checkpoint
    (of an event past ``after``) snapshots it mid-batch with both results."""
    ws, run_dir = tmp_path / "ws", tmp_path / "run"
    (ws / "out").mkdir(parents=True, exist_ok=True)

    def ready() -> bool:
        if snapshots:
            return snapped_mid_batch(run_dir, after)
        evs = events(run_dir)
        return bool(of(evs, "agent/resumed", "batcher")) if more else counted(evs)

    killed_when_checkpointed(plan, ws, run_dir, ready, *more, after=wait)
    return ws, run_dir


def the_batch_kept_its_time(ws: Path, run_dir: Path, snapshots: bool, resumes: int = 1) -> None:
    """The step after the nap batch came no earlier than 6 s after the batch began on the
    logged clock (and, once resumed, less than 6 s after the last resume: only what was
    left was slept), saw what an uncrashed run sees, and no call ran twice."""
    evs = events(run_dir)
    assert [e["snapshot"] for e in of(evs, "agent/resumed", "batcher")] == [snapshots] * resumes
    began = of(evs, "agent/spawned", "batcher")[0]["t"]  # the batch step's clock: its agent's start
    back = of(evs, "run/resumed")[-1]["t"]
    after = [e for e in of(evs, "tool/requested", "batcher") if e["tool"] == "fs/write"]
    assert len(after) == 1
    assert after[0]["t"] - began >= 6000, "the sleep ended before its batch's 6 s were over"
    assert after[0]["t"] - back < 6000, "the sleep started again from zero after the resume"
    assert (ws / "out" / "summary.txt").read_text() == NAP_SEEN
    assert (ws / "out" / "ran-a.txt").read_text() == (ws / "out" / "ran-b.txt").read_text() == "ran\n"


@pytest.mark.slow  # a 6 s sleep across a kill and a resume
@pytest.mark.parametrize("snapshots", [False, True])
def test_a_sleep_in_a_batch_keeps_its_time_after_its_siblings_answered(tmp_path: Path, snapshots: bool) -> None:
    plan = plan_of(tmp_path, "nap", snapshots)
    ws, run_dir = crash(tmp_path, plan, snapshots)
    resumed = resume(plan, run_dir, ws)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed_from_snapshot(run_dir, "batcher") is snapshots
    the_batch_kept_its_time(ws, run_dir, snapshots)


@pytest.mark.slow  # three processes, each waiting out part of the sleep
@pytest.mark.parametrize("snapshots", [False, True])
def test_a_sleep_in_a_batch_keeps_its_time_across_a_second_crash_during_the_resume(tmp_path: Path,
                                                                                   snapshots: bool) -> None:
    plan = plan_of(tmp_path, "nap", snapshots)
    ws, run_dir = crash(tmp_path, plan, snapshots)
    last = events(run_dir)[-1]["seq"]
    # Killed again 0.5 s into the resume (once its own checkpoint snapshots the batch anew).
    crash(tmp_path, plan, snapshots, "--resume", str(run_dir), after=last, wait=0.5)
    assert not of(events(run_dir), "tool/requested", "batcher")[2:], "the batch was over before the second kill"
    resumed = resume(plan, run_dir, ws)
    assert resumed.returncode == 0, resumed.stderr
    the_batch_kept_its_time(ws, run_dir, snapshots, resumes=2)


@pytest.mark.slow  # waits out a sleep and a held call; the default suite keeps the batch sleep's kill point above
@pytest.mark.parametrize("snapshots", [False, True])
def test_a_message_that_came_after_a_batch_sleep_ran_out_does_not_end_it_after_a_resume(
        tmp_path: Path, snapshots: bool) -> None:
    """The 1 s sleep ran out; the ping came at 2 s, while the batch's other call still ran.
    Killed then and resumed, the sleep's outcome is still ``timeout`` and the ping goes to
    the step after the batch."""
    plan = plan_of(tmp_path, "wake", snapshots)
    ws, run_dir = tmp_path / "ws", tmp_path / "run"
    (ws / "out").mkdir(parents=True)

    def pinged() -> bool:
        if not snapshots:
            return bool(of(events(run_dir), "agent/message", "batcher"))
        journal = journal_of(run_dir, "batcher") or {}
        return acting_ops(journal.get("snapshot")) == ["parallel"] and bool(journal.get("inbox"))

    killed_when_checkpointed(plan, ws, run_dir, pinged)
    assert not (ws / "go").exists(), "the batch's call was let go before the kill"
    resumed = resume(plan, run_dir, ws)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed_from_snapshot(run_dir, "batcher") is snapshots
    assert (ws / "out" / "summary.txt").read_text() == WAKE_SEEN
    assert (ws / "out" / "lines.txt").read_text() == "line-03\n"


@pytest.mark.slow  # waits out real seconds across a kill and a resume
@pytest.mark.parametrize("killed", ["before the ping", "after the ping"])
def test_one_message_ends_both_wake_sleeps_of_a_batch_across_a_resume(tmp_path: Path, killed: str) -> None:
    """The ``wakes`` batch, killed while both sleeps wait (the ping, at 2 s, then comes to
    the resumed run's live sleeps) or once the ping ended them (replayed: each ended at
    the ping): both sleeps end as ``message``, as in a run never killed."""
    plan = plan_of(tmp_path, "wakes", snapshots=False)
    ws, run_dir = tmp_path / "ws", tmp_path / "run"
    (ws / "out").mkdir(parents=True)
    kind = "tool/requested" if killed == "before the ping" else "agent/message"
    killed_when_checkpointed(plan, ws, run_dir, lambda: bool(of(events(run_dir), kind, "batcher")))
    assert bool(of(events(run_dir), "agent/message", "batcher")) is (killed == "after the ping")
    assert not (ws / "go").exists(), "the batch's call was let go before the kill"
    resumed = resume(plan, run_dir, ws)
    assert resumed.returncode == 0, resumed.stderr
    assert (ws / "out" / "summary.txt").read_text() == WAKES_SEEN
    assert (ws / "out" / "lines.txt").read_text() == "line-03\n"


@pytest.mark.slow  # two whole runs
@pytest.mark.parametrize(("step", "seen"), [("nap", NAP_SEEN), ("wake", WAKE_SEEN), ("wakes", WAKES_SEEN)])
def test_uncrashed_runs_see_what_the_resumed_ones_are_held_to(tmp_path: Path, step: str, seen: str) -> None:
    plan = plan_of(tmp_path, step, snapshots=False)
    ws = tmp_path / "ws"
    (ws / "out").mkdir(parents=True)
    done = agentctl("run", str(plan), *RUN, "--run-dir", str(tmp_path / "run"), "--workspace", str(ws), cwd=ws)
    assert done.returncode == 0, done.stderr
    assert (ws / "out" / "summary.txt").read_text() == seen


#: The napper waits (no timeout) for ``go``, which comes 2 s after the start, then sleeps 3 s.
AFTER_MESSAGE = """\
name: after
tasks:
  - id: napper
    agent: script
    steps:
      - wait: go
      - sleep: 3
      - write: {path: out/awake.txt, content: "awake\\n"}
  - id: sender
    agent: script
    steps:
      - sleep: 2
      - send: {to: napper, kind: go}
"""


@pytest.mark.slow  # waits out real seconds across a kill and a resume
def test_a_sleep_a_message_woke_its_step_for_counts_from_that_message_after_a_resume(tmp_path: Path) -> None:
    """Replayed, the step that read ``go`` runs on the clock of that message, not of the
    napper's start (2 s earlier: its sleep would end at once)."""
    plan = write_plan(tmp_path, AFTER_MESSAGE)
    ws, run_dir = tmp_path / "ws", tmp_path / "run"
    (ws / "out").mkdir(parents=True)
    killed_when_checkpointed(plan, ws, run_dir, lambda: bool(of(events(run_dir), "agent/status", "napper")[1:]
                                                             and of(events(run_dir), "agent/message", "napper")))
    resumed = resume(plan, run_dir, ws)
    assert resumed.returncode == 0, resumed.stderr
    evs = events(run_dir)
    came = of(evs, "agent/message", "napper")[0]["t"]
    woke = of(evs, "tool/requested", "napper")[0]["t"]
    assert woke - came >= 3000 and woke - of(evs, "run/resumed")[0]["t"] < 3000
    assert (ws / "out" / "awake.txt").read_text() == "awake\n"
