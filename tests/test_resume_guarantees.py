"""Crash resume keeps its promises: each case here broke before (issue 11, "what was seen")."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import AGENTCTL, PLUGINS, running, wait_for

from agentctl.events.reader import read_events

# Real agentctl processes, killed and resumed, each several seconds: -m slow keeps the default
# suite under its two minutes (CI runs every slow test).
pytestmark = pytest.mark.slow

RUN = ("--no-ui", "--no-watch-plan")


def agentctl(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTCTL_", "TEST_KILL"))}
    full.update(PYTHONPATH=str(PLUGINS), **(env or {}))
    return subprocess.run([AGENTCTL, *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout)


def write_plan(tmp: Path, text: str) -> Path:
    plan = tmp / "plan.yaml"
    plan.write_text(text)
    return plan


def start_run(tmp: Path, plan: Path, env: dict[str, str] | None = None) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    ws = tmp / "ws"
    ws.mkdir()
    run_dir = tmp / "run"
    proc = agentctl("run", str(plan), *RUN, "--run-dir", str(run_dir), "--workspace", str(ws), cwd=ws, env=env)
    return ws, run_dir, proc


def resume(plan: Path, run_dir: Path, ws: Path, *more: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return agentctl("run", str(plan), *RUN, "--resume", str(run_dir), *more, cwd=ws, env=env)


def calls(name: str, task: str, tool: str, count: int) -> str:
    """A plan of one script task that calls ``tool`` with ``n`` = 1 .. ``count`` in turn."""
    steps = "".join(f"      - call: {{tool: {tool}, args: {{n: {n}}}}}\n" for n in range(1, count + 1))
    return (f"name: {name}\nsettings: {{plugins: [resume_tools]}}\ntasks:\n  - id: {task}\n    agent: script\n"
            f"    steps:\n{steps}")


LINES = calls("lines", "liner", "test/line", 8)
#: What ``LINES`` leaves in ``out/lines.txt``: each line once, in order.
ALL_LINES = "".join(f"line-{n:02d}\n" for n in range(1, 9))


# two real crashes; -m faults adds 25 more double crashes
def test_a_double_crash_reruns_no_recorded_call(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, LINES)
    ws, run_dir, first = start_run(tmp_path, plan, env={"TEST_KILL_AT_LINE": "4"})
    assert first.returncode == -signal.SIGKILL
    second = resume(plan, run_dir, ws, env={"TEST_KILL_AT_LINE": "7"})
    assert second.returncode == -signal.SIGKILL
    third = resume(plan, run_dir, ws)
    assert third.returncode == 0, third.stderr
    assert (ws / "out" / "lines.txt").read_text() == ALL_LINES
    requested = [e["call_id"] for e in read_events(run_dir / "events.jsonl") if e["type"] == "tool/requested"]
    results = [e["call_id"] for e in read_events(run_dir / "events.jsonl") if e["type"] == "tool/result"]
    # Each call has one id for life (a rerun of an interrupted call keeps it), and no id is reused.
    assert len(results) == len(set(results)) == 8
    assert set(requested) == set(results)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_call_cut_short_by_a_signal_is_interrupted_not_failed(tmp_path: Path, signum: int) -> None:
    plan = write_plan(tmp_path, LINES.replace("n: 2}", "n: 2}}\n      - call: {tool: test/gated_line, args: {n: 3}").replace(
        "      - call: {tool: test/line, args: {n: 3}}\n", ""))
    ws = tmp_path / "ws"
    ws.mkdir()
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCTL_")}
    with running("run", str(plan), *RUN, "--run-dir", str(run_dir), "--workspace", str(ws), cwd=ws,
                 env={**env, "PYTHONPATH": str(PLUGINS)}) as proc:
        wait_for(run_dir, lambda evs: any(e["type"] == "tool/requested" and e["tool"] == "test/gated_line" for e in evs),
                 timeout=30)
        proc.send_signal(signum)
        assert proc.wait(20) == 130
    cut = [e for e in read_events(run_dir / "events.jsonl") if e["type"] == "tool/result" and e["tool"] == "test/gated_line"]
    assert [(e["ok"], e["error_type"]) for e in cut] == [(False, "cancelled")]
    (ws / "go").touch()
    resumed = resume(plan, run_dir, ws)
    assert resumed.returncode == 0, resumed.stderr
    assert (ws / "out" / "lines.txt").read_text() == ALL_LINES


ONCE = calls("once", "once", "test/once", 3)


def test_an_interrupted_call_that_cannot_be_checked_fails_the_task_without_rerunning_anything(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, ONCE)
    ws, run_dir, crashed = start_run(tmp_path, plan, env={"AGENTCTL_FAULT": "kill@tool/result#2"})
    assert crashed.returncode == -signal.SIGKILL
    resumed = resume(plan, run_dir, ws)
    assert resumed.returncode == 1
    call = next(e["call_id"] for e in read_events(run_dir / "events.jsonl") if e["type"] == "tool/requested" and e["arguments"]["n"] == 2)
    assert f"call {call} (test/once)" in resumed.stderr and "interrupted" in resumed.stderr
    # Nothing ran twice (the transient task is not restarted from its first step), nothing after it ran.
    assert (ws / "once.txt").read_text() == "once-1\nonce-2\n"
    events = list(read_events(run_dir / "events.jsonl"))
    assert [e["error_type"] for e in events if e["type"] == "agent/error"] == ["interrupted"]
    assert not [e for e in events if e["type"] == "agent/restarted"]


@pytest.mark.parametrize("where", ["task", "defaults"])
def test_a_plan_that_opts_in_retries_an_interrupted_call_instead_of_failing(tmp_path: Path, where: str) -> None:
    text = (ONCE.replace("    agent: script\n", "    agent: script\n    on_interrupted: retry\n") if where == "task"
            else ONCE.replace("tasks:\n", "defaults: {on_interrupted: retry}\ntasks:\n"))
    plan = write_plan(tmp_path, text)
    ws, run_dir, crashed = start_run(tmp_path, plan, env={"AGENTCTL_FAULT": "kill@tool/result#2"})
    assert crashed.returncode == -signal.SIGKILL
    resumed = resume(plan, run_dir, ws)
    assert resumed.returncode == 0, resumed.stderr
    # Its first run had taken effect, its result was lost with the process: run again, as
    # the plan accepted, it took effect twice; nothing before it ran again.
    assert (ws / "once.txt").read_text() == "once-1\nonce-2\nonce-2\nonce-3\n"
    events = list(read_events(run_dir / "events.jsonl"))
    call = _first(events, "tool/requested", arguments={"n": 2})["call_id"]
    assert [e["type"] for e in events if e.get("call_id") == call and e["type"].startswith("tool/")] == [
        "tool/requested", "tool/requested", "tool/result"]
    assert not [e for e in events if e["type"] == "agent/error"]


def crashed_lines_run(tmp_path: Path, extra_settings: str = "") -> tuple[Path, Path, Path]:
    plan = write_plan(tmp_path, LINES.replace("settings: {plugins: [resume_tools]}",
                                              "settings: {plugins: [resume_tools]" + extra_settings + "}"))
    ws, run_dir, crashed = start_run(tmp_path, plan, env={"TEST_KILL_AT_LINE": "5"})
    assert crashed.returncode == -signal.SIGKILL
    return plan, ws, run_dir


def damage(log: Path, edit: Callable[[list[bytes]], list[bytes]]) -> None:
    log.write_bytes(b"".join(edit(log.read_bytes().splitlines(keepends=True))))


def seq_line(lines: list[bytes], type: str) -> int:
    return next(i for i, line in enumerate(lines) if f'"type":"{type}"'.encode() in line)


@pytest.mark.parametrize(("name", "edit", "what"), [
    ("gap", lambda ls: ls[:5] + ls[6:], "are missing"),
    ("duplicate", lambda ls: ls[:6] + [ls[5]] + ls[6:], "duplicate or out-of-order"),
    ("backward", lambda ls: ls[:5] + [ls[6], ls[5]] + ls[7:], "was expected"),
    ("foreign run", lambda ls: ls[:6] + [ls[6].replace(b'"run_id":"', b'"run_id":"other-')] + ls[7:], "belongs to run"),
    ("lost result", lambda ls: ls[:seq_line(ls, "tool/result")] + ls[seq_line(ls, "tool/result") + 1:], "are missing"),
])
def test_resume_refuses_a_damaged_log_naming_the_line(tmp_path: Path, name: str, edit: Callable, what: str) -> None:
    plan, ws, run_dir = crashed_lines_run(tmp_path)
    log = run_dir / "events.jsonl"
    damage(log, edit)
    before = log.read_bytes()
    refused = resume(plan, run_dir, ws)
    assert refused.returncode == 2, refused.stderr
    message = refused.stderr.strip()
    assert len(message.splitlines()) == 1 and what in message and f"{log}:" in message and "--force" in message
    assert "Traceback" not in refused.stderr and log.read_bytes() == before  # nothing appended to a damaged log
    if name == "gap":
        forced = resume(plan, run_dir, ws, "--force")
        assert forced.returncode == 0 and "warning:" in forced.stderr and what in forced.stderr


def test_a_torn_garbage_last_line_is_cut_before_appending(tmp_path: Path) -> None:
    plan, ws, run_dir = crashed_lines_run(tmp_path)
    log = run_dir / "events.jsonl"
    with open(log, "ab") as f:
        f.write(b'{"seq": 99, "garbage": "' + b"x" * 200_000)
    resumed = resume(plan, run_dir, ws)
    assert resumed.returncode == 0, resumed.stderr
    stream = read_events(log)
    seqs = [e["seq"] for e in stream]
    assert stream.torn_line is None and seqs == list(range(1, len(seqs) + 1))
    assert b"xxxx" not in log.read_bytes()
    assert (ws / "out" / "lines.txt").read_text() == ALL_LINES


def test_a_complete_but_unparsable_last_line_is_corruption_not_a_torn_write(tmp_path: Path) -> None:
    plan, ws, run_dir = crashed_lines_run(tmp_path)
    log = run_dir / "events.jsonl"
    with open(log, "ab") as f:
        f.write(b"not an event\n")
    refused = resume(plan, run_dir, ws)
    assert refused.returncode == 2 and "corrupt event line" in refused.stderr and "Traceback" not in refused.stderr


def checkpoint_of(run_dir: Path, seq: int, run: dict) -> None:
    from agentctl.events.checkpoint import write_checkpoint

    write_checkpoint(run_dir, seq, {"run": run})


@pytest.mark.parametrize("odd", ["past the end", "no run", "another run", "a directory"])
def test_an_odd_checkpoint_is_skipped_with_a_warning_and_the_log_read_instead(tmp_path: Path, odd: str) -> None:
    from agentctl.events.fold import RunState, state_at

    plan, ws, run_dir = crashed_lines_run(tmp_path)
    state = state_at(run_dir / "events.jsonl")
    last = state.last_seq
    if odd == "past the end":
        ahead = state.to_dict()
        ahead["last_seq"] = last + 50
        checkpoint_of(run_dir, last + 50, ahead)
    elif odd == "no run":
        checkpoint_of(run_dir, last, RunState(last_seq=last).to_dict())
    elif odd == "another run":
        other = state.to_dict()
        other["run_id"] = "someone-else"
        checkpoint_of(run_dir, last, other)
    else:
        (run_dir / "checkpoints" / f"ckpt-{last + 1:012d}.json").mkdir(parents=True)
    resumed = resume(plan, run_dir, ws)
    assert resumed.returncode == 0, resumed.stderr
    assert "warning: checkpoint" in resumed.stderr and "Traceback" not in resumed.stderr
    event = next(e for e in read_events(run_dir / "events.jsonl") if e["type"] == "run/resumed")
    assert event["checkpoint"] is None
    assert (ws / "out" / "lines.txt").read_text() == ALL_LINES


def test_replay_and_watch_warn_about_a_damaged_log_and_still_show_it(tmp_path: Path) -> None:
    from cli_helpers import invoke

    plan, ws, run_dir = crashed_lines_run(tmp_path)
    log = run_dir / "events.jsonl"
    damage(log, lambda ls: ls[:5] + ls[6:])
    replayed = invoke("replay", str(log), "--summary", cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    assert f"warning: {log}:6: seq 7 where 6 was expected" in replayed.stderr
    watched = invoke("watch", str(run_dir), cwd=tmp_path)
    assert f"warning: {log}:6:" in watched.stderr


def killed_when(tmp_path: Path, plan: Path, check: Callable[[list[dict[str, Any]]], bool], after: float = 0.0) -> tuple[Path, Path]:
    """Run ``plan`` and SIGKILL it from outside ``after`` seconds once its events pass
    ``check``. The workspace and the run directory."""
    ws = tmp_path / "ws"
    (ws / "out").mkdir(parents=True)
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCTL_")}
    with running("run", str(plan), *RUN, "--run-dir", str(run_dir), "--workspace", str(ws), cwd=ws,
                 env={**env, "PYTHONPATH": str(PLUGINS)}, stderr=subprocess.DEVNULL):
        wait_for(run_dir, check, timeout=30)
        time.sleep(after)
    return ws, run_dir


def _killed_while_sleeping(tmp_path: Path, plan: Path, status: str = "sleeping") -> tuple[Path, Path]:
    """Run ``plan``, SIGKILL it 1 s into its agent's sleep (or other ``status``: waiting,
    blocked), and leave it down 1.5 s more (time that counts against budgets and sleeps
    too). The workspace and the run directory."""
    ws, run_dir = killed_when(tmp_path, plan, lambda evs: any(e["type"] == "agent/status" and e.get("status") == status
                                                              for e in evs), after=1.0)
    time.sleep(1.5)
    return ws, run_dir


# waits out real seconds across a kill and a resume
def test_a_max_seconds_deadline_counts_from_the_first_spawn_across_a_resume(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, "name: slow\ntasks:\n  - id: sleeper\n    agent: script\n    restart: temporary\n"
                      "    budget: {max_seconds: 4}\n    steps: [{sleep: 60}]\n")
    ws, run_dir = _killed_while_sleeping(tmp_path, plan)
    resumed = resume(plan, run_dir, ws)
    events = list(read_events(run_dir / "events.jsonl"))
    spawned = next(e["t"] for e in events if e["type"] == "agent/spawned" and e["agent_id"] == "sleeper")
    back = next(e["t"] for e in events if e["type"] == "run/resumed")
    done = next(e for e in events if e["type"] == "agent/done" and e["agent_id"] == "sleeper")
    assert done["reason"] == "max_seconds" and resumed.returncode == 1
    # Counted from the resume, the deadline would fall 4 s after it; from the spawn, it had
    # at most 1.5 s left when the run came back.
    assert done["t"] - back < 3000 and done["t"] - spawned >= 4000


# waits out real seconds across a kill and a resume
def test_a_sleep_in_progress_sleeps_only_what_is_left_after_a_resume(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, "name: nap\ntasks:\n  - id: napper\n    agent: script\n    steps:\n"
                      "      - sleep: 4\n      - write: {path: out/awake.txt, content: \"awake\\n\"}\n")
    ws, run_dir = _killed_while_sleeping(tmp_path, plan)
    resumed = resume(plan, run_dir, ws)
    assert resumed.returncode == 0, resumed.stderr
    events = list(read_events(run_dir / "events.jsonl"))
    began = next(e["t"] for e in events if e["type"] == "agent/status" and e.get("status") == "sleeping")
    back = next(e["t"] for e in events if e["type"] == "run/resumed")
    woke = next(e["t"] for e in events if e["type"] == "tool/requested")
    # From zero, the sleep would end 4 s after the resume; it had at most 1.5 s left.
    assert woke - back < 3000 and woke - began >= 4000
    assert (ws / "out" / "awake.txt").read_text() == "awake\n"


def _first(events: list[dict[str, Any]], type: str, **fields: Any) -> dict[str, Any]:
    return next(e for e in events if e["type"] == type and all(e.get(k) == v for k, v in fields.items()))


def test_a_wait_timeout_counts_from_when_the_wait_began_across_a_resume(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, "name: waits\ntasks:\n  - id: waiter\n    agent: script\n    restart: temporary\n"
                      "    steps:\n      - write: {path: out/before.txt, content: x}\n"
                      "      - wait: {kind: never, timeout: 4}\n")
    _gives_up_its_full_time_after_it_began(tmp_path, plan, "waiting", ("agent/status", "waiting"), "timed out after 4")


def _gives_up_its_full_time_after_it_began(tmp_path: Path, plan: Path, status: str, began: tuple[str, str],
                                           error: str) -> Path:
    """Kill the run 1 s into ``status``, resume it 1.5 s later; the waiter fails with ``error``
    4 s after the event ``began`` (type, and status if any) as it would have without the
    crash: less than 3 s after the resume, not 4 s after it. The workspace."""
    ws, run_dir = _killed_while_sleeping(tmp_path, plan, status)
    resumed = resume(plan, run_dir, ws)
    assert resumed.returncode == 1
    events = list(read_events(run_dir / "events.jsonl"))
    start = _first(events, began[0], agent_id="waiter", **({"status": began[1]} if began[1] else {}))["t"]
    back = _first(events, "run/resumed")["t"]
    failed = _first(events, "agent/error", agent_id="waiter")
    assert error in failed["error"]
    assert failed["t"] - back < 3000 and failed["t"] - start >= 3900
    return ws


LOCK_WAIT = """\
name: lockwait
{policy}tasks:
  - id: holder
    agent: script
    steps:
      - lock: out/p
      - sleep: 5
      - unlock: out/p
  - id: waiter
    agent: script
    restart: temporary
    steps:
      - send: {{to: holder, kind: hello}}
      - lock: {{path: out/p, timeout: {timeout}}}
      - write: {{path: out/waiter.txt, content: got it}}
"""


def test_a_lock_wait_timeout_counts_from_when_the_wait_began_across_a_resume(tmp_path: Path) -> None:
    # The holder keeps the lock 5 s; the waiter gives up after 4 s of waiting, as it would
    # have without the crash. Counted from the resume, its wait would outlast the holder's
    # sleep, and it would get the lock.
    plan = write_plan(tmp_path, LOCK_WAIT.format(policy="", timeout=4))
    ws = _gives_up_its_full_time_after_it_began(tmp_path, plan, "blocked", ("lock/conflict", ""), "step lock failed: conflict")
    assert not (ws / "out" / "waiter.txt").exists()


def test_an_arbiter_timeout_counts_from_when_the_conflict_opened_across_a_resume(tmp_path: Path) -> None:
    # The arbiter (the plan's root) never answers: after 4 s the conflict is settled first-come.
    plan = write_plan(tmp_path, LOCK_WAIT.format(policy="policy: {conflicts: arbiter, conflict_timeout: 4}\n",
                                                 timeout=30))
    ws, run_dir = _killed_while_sleeping(tmp_path, plan, "blocked")
    resumed = resume(plan, run_dir, ws)
    assert resumed.returncode == 0, resumed.stderr
    events = list(read_events(run_dir / "events.jsonl"))
    opened = _first(events, "conflict/opened", agent_id="waiter")["t"]
    back = _first(events, "run/resumed")["t"]
    settled = [e for e in events if e["type"] == "conflict/resolved" and e["by"] == "timeout"]
    assert len(settled) == 1 and settled[0]["t"] > back
    assert settled[0]["t"] - back < 3000 and settled[0]["t"] - opened >= 3900
    assert (ws / "out" / "waiter.txt").read_text() == "got it"


def test_a_checkpoint_holds_the_state_of_its_seq_even_while_events_arrive_during_its_write(tmp_path: Path) -> None:
    import anyio

    from agentctl.events.checkpoint import Checkpointer, load_checkpoint

    def event(seq: int, type: str, **fields: Any) -> dict[str, Any]:
        return {"seq": seq, "t": seq, "run_id": "r", "type": type, "agent_id": "a", **fields}

    async def main() -> None:
        async def durable(seq: int) -> None:
            # The log syncs while the run goes on: the agent makes another call meanwhile.
            checkpointer.feed(event(4, "tool/requested", call_id="t2", tool="fs/read", arguments={}))

        checkpointer = Checkpointer(tmp_path, durable)
        checkpointer.feed(event(1, "run/started", pid=1))
        checkpointer.feed(event(2, "agent/spawned", parent_id=None, depth=0))
        checkpointer.feed(event(3, "tool/requested", call_id="t1", tool="fs/read", arguments={}))
        await checkpointer.checkpoint()

    anyio.run(main)
    ckpt = load_checkpoint(tmp_path)
    assert ckpt is not None and ckpt.seq == 3
    journal = ckpt.state.journals.get("a")
    assert journal is not None and [e["call_id"] for e in journal.effects] == ["t1"]


RELOCK = """\
name: relock
settings: {plugins: [resume_tools]}
tasks:
  - id: holder
    agent: script
    steps:
      - lock: {path: out/p, timeout: 5}
      - unlock: out/p
      - lock: out/p
      - send: {to: waiter, kind: go}
      - call: {tool: test/gated_line, args: {n: 1}}
      - unlock: out/p
  - id: waiter
    agent: script
    steps:
      - wait: {kind: go, timeout: 60}
      - lock: {path: out/p, timeout: 60}
      - call: {tool: test/line, args: {n: 2}}
      - unlock: out/p
"""


def _resumed_with_a_waiter(tmp_path: Path, text: str) -> list[dict[str, Any]]:
    """Run ``text`` until the waiter queues for the holder's lock and the holder's gated
    call has started, SIGKILL it, resume it: the events from the resume on, once both
    lines are written in order (the holder's first)."""
    plan = write_plan(tmp_path, text)
    ws, run_dir = killed_when(tmp_path, plan, lambda evs: any(e["type"] == "lock/conflict" and e["agent_id"] == "waiter"
                                                              for e in evs)
                              and any(e["type"] == "tool/requested" and e["tool"] == "test/gated_line" for e in evs))
    (ws / "go").touch()
    resumed = resume(plan, run_dir, ws)
    assert resumed.returncode == 0, resumed.stderr
    assert (ws / "out" / "lines.txt").read_text() == "line-01\nline-02\n"
    events = list(read_events(run_dir / "events.jsonl"))
    back = next(i for i, e in enumerate(events) if e["type"] == "run/resumed")
    return events[back:]


def test_a_lock_taken_released_and_taken_again_is_held_across_a_resume(tmp_path: Path) -> None:
    """The holder locked, unlocked and locked ``out/p`` again, the waiter queued for it, then
    the run died: on resume the holder keeps the lock until its own last unlock, so the
    waiter's line comes after the holder's, and the holder's replay touches no lock."""
    events = _resumed_with_a_waiter(tmp_path, RELOCK)
    holder = [(e["type"], e.get("by")) for e in events
              if e["type"].startswith("lock/") and e["agent_id"] == "holder"]
    # Given back at the resume, released once: by the holder's last step, after its line.
    assert holder == [("lock/acquired", "resume"), ("lock/released", "step")]


def _twice(crash_at_count: int) -> str:
    """The holder takes ``out/p`` twice and is killed while it holds it ``crash_at_count`` times."""
    gated = "      - send: {to: waiter, kind: go}\n      - call: {tool: test/gated_line, args: {n: 1}}\n"
    unlocks = ["      - unlock: out/p\n"] * 2
    unlocks.insert(2 - crash_at_count, gated)
    return ("name: twice\nsettings: {plugins: [resume_tools]}\ntasks:\n  - id: holder\n    agent: script\n    steps:\n"
            "      - lock: {path: out/p, timeout: 5}\n      - lock: out/p\n" + "".join(unlocks)
            + RELOCK[RELOCK.index("  - id: waiter"):])


@pytest.mark.parametrize("held", [1, 2])
def test_a_lock_taken_twice_is_held_as_often_across_a_resume(tmp_path: Path, held: int) -> None:
    """The holder took ``out/p`` twice (reentrant) and gave it back ``2 - held`` times when the
    run died, the waiter queued for it: resumed, the holder's unlocks count it down from
    ``held`` as they did live, so the waiter gets it only at the holder's last unlock."""
    events = _resumed_with_a_waiter(tmp_path, _twice(held))
    after = [(e["type"], e["agent_id"], e.get("by"), e.get("count")) for e in events
             if e["type"] in ("lock/acquired", "lock/released")]
    # Given back with its count; counted down by the holder's unlocks that were not yet
    # made, freed by the last; only then the waiter's.
    assert after[0] == ("lock/acquired", "holder", "resume", held)
    assert after[1:held + 1] == [("lock/released", "holder", "step", n) for n in range(held - 1, -1, -1)]
    assert after[held + 1][:2] == ("lock/acquired", "waiter")


TOOL_LOCK = """\
name: toollock
tasks:
  - id: writer
    agent: script
    steps:
      - append: {path: out/x.txt, content: "x\\n"}
      - send: {to: locker, kind: go}
  - id: locker
    agent: script
    steps:
      - wait: {kind: go, timeout: 30}
      - lock: out/x.txt
      - unlock: out/x.txt
"""


def test_the_path_lock_of_a_write_cut_by_a_crash_is_not_given_back_to_its_agent(tmp_path: Path) -> None:
    """fs/append holds its path's lock while it writes; killed mid-call, that hold is not a
    lock of the agent's steps: resume does not give it back (the rerun takes it again), nor
    replay it as one (the writer's replay would never end)."""
    plan = write_plan(tmp_path, TOOL_LOCK)
    ws, run_dir, crashed = start_run(tmp_path, plan, env={"AGENTCTL_FAULT": "kill@tool/prepared#1"})
    assert crashed.returncode == -signal.SIGKILL
    resumed = resume(plan, run_dir, ws)
    assert resumed.returncode == 0, resumed.stderr
    assert (ws / "out" / "x.txt").read_text() == "x\n"
    events = list(read_events(run_dir / "events.jsonl"))
    assert not [e for e in events if e["type"] == "lock/acquired" and e["by"] == "resume"]
    assert _first(events, "lock/acquired", agent_id="locker")["by"] == "step"


def test_an_unlock_made_before_the_crash_is_not_made_again(tmp_path: Path) -> None:
    """Killed in a sleep after lock, write, unlock: the last recorded call is the write, so
    the replay must still answer the unlock from the log (the lock is free at the crash, and
    a live unlock fails the step)."""
    plan = write_plan(tmp_path, "name: unlocked\ntasks:\n  - id: a\n    agent: script\n    steps:\n"
                      "      - lock: {path: out/p, timeout: 5}\n      - write: {path: out/one.txt, content: one}\n"
                      "      - unlock: out/p\n      - sleep: 1\n      - write: {path: out/two.txt, content: two}\n")
    ws, run_dir = killed_when(tmp_path, plan, lambda evs: any(e["type"] == "agent/status" and e.get("status") == "sleeping"
                                                              for e in evs))
    resumed = resume(plan, run_dir, ws)
    assert resumed.returncode == 0, resumed.stderr
    assert (ws / "out" / "two.txt").read_text() == "two"
    events = list(read_events(run_dir / "events.jsonl"))
    assert not [e for e in events if e["type"] in ("agent/error", "agent/restarted")]
