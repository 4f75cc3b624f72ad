"""``ps``, ``logs``, ``prune`` and following a run to its end (``logs -f``, ``watch``).

Finished runs are made in-process (``CliRunner``); a live run, a run killed with SIGKILL and
a follower that must end with the run are real processes.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import FAILING, GATE, PLANS, events, of, running, wait_for
from typer.testing import CliRunner

from agentctl.cli.main import app


def agentctl(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def one_line_error(result: Any, text: str) -> None:
    assert result.exit_code == 2, result.output
    assert text in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output


def dead_run(runs: Path, name: str = "dead") -> Path:
    """A run whose process is gone without run/finished: its pid is that of a reaped process."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    run_dir = runs / name
    run_dir.mkdir(parents=True)
    started = {"seq": 1, "t": 1_700_000_000_000, "run_id": name, "type": "run/started", "agent_id": None,
               "pid": gone.pid, "version": "0", "durability": "batch", "workspace": None, "plan": None, "control": "x"}
    (run_dir / "events.jsonl").write_text(json.dumps(started) + "\n")
    return run_dir


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory (the cwd) with an ok run, a failed run and a dead one."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "failing.yaml").write_text(FAILING)
    assert agentctl("run", str(PLANS / "hello.yaml"), "--no-ui", "--no-watch-plan").exit_code == 0
    assert agentctl("run", "failing.yaml", "--no-ui", "--no-watch-plan").exit_code == 1
    dead_run(tmp_path / ".agentctl" / "runs", "zz-dead")
    return tmp_path


def test_ps_lists_unfinished_runs_or_all_as_text_and_json(project: Path) -> None:
    default = agentctl("ps", "-o", "json")
    assert default.exit_code == 0, default.output
    runs = json.loads(default.stdout)["runs"]
    assert [(r["id"], r["status"], r["alive"]) for r in runs] == [("zz-dead", "dead", False)]
    every = json.loads(agentctl("ps", "--all", "-o", "json").stdout)["runs"]
    # oldest first: the dead run's log says it started in 2023
    assert [(r["plan"], r["status"], r["reason"]) for r in every] == [
        (None, "dead", None), ("hello", "ok", "completed"), ("failing", "failed", "failed")]
    assert set(every[1]) == {"id", "dir", "plan", "plan_file", "status", "reason", "started", "duration_s", "agents",
                             "pid", "alive", "events", "approvals"}
    assert every[2]["agents"] == {"done": 1, "failed": 2}
    text = agentctl("ps", "-a")
    assert text.exit_code == 0
    lines = text.stdout.splitlines()
    assert "RUN" in lines[0] and "STATUS" in lines[0] and len(lines) == 4
    assert "dead" in lines[1] and "(gone)" in lines[1]
    assert agentctl("ps", "-o", "yaml").exit_code == 2
    # a damaged run is named on stderr and left out; the others are still listed
    damaged = project / ".agentctl" / "runs" / "bad"
    damaged.mkdir()
    (damaged / "events.jsonl").write_text("not an event\n{}\n")
    listed = agentctl("ps", "-a", "-o", "json")
    assert listed.exit_code == 0 and len(json.loads(listed.stdout)["runs"]) == 3
    assert "skipped" in listed.stderr and "bad" in listed.stderr


def test_logs_prints_plain_lines_filtered_by_agent_and_type(project: Path) -> None:
    run_dir = sorted((project / ".agentctl" / "runs").iterdir())[0]
    evs = events(run_dir)
    every = agentctl("logs", str(run_dir))
    assert every.exit_code == 0
    assert "run finished completed ok" in every.stdout and "greeter" in every.stdout
    greeter = agentctl("logs", run_dir.name, "--agent", "greeter").stdout.splitlines()
    assert greeter and all(" greeter  " in line for line in greeter)
    statuses = agentctl("logs", str(run_dir), "--type", "agent/status", "--agent", "greeter").stdout.splitlines()
    assert len(statuses) == len(of(evs, "agent/status", "greeter")) and all("agent/status" in s for s in statuses)
    tools = agentctl("logs", str(run_dir), "--type", "tool/*").stdout.splitlines()
    assert len(tools) == len([e for e in evs if e["type"].startswith("tool/")]) > 0
    one_line_error(agentctl("logs", str(run_dir), "--agent", "nobody"), "no agent 'nobody'")
    one_line_error(agentctl("logs", "no-such-run"), "no such run")
    (project / "notalog").mkdir()
    one_line_error(agentctl("logs", "notalog"), "no events.jsonl")
    (project / "README.md").write_text("# not\nan event log\n")
    for follow in ([], ["-f"]):
        one_line_error(agentctl("logs", "README.md", *follow), "README.md")


def test_prune_deletes_finished_runs_only(project: Path) -> None:
    runs = project / ".agentctl" / "runs"
    assert agentctl("run", str(PLANS / "hello.yaml"), "--no-ui", "--no-watch-plan").exit_code == 0
    names = sorted(d.name for d in runs.iterdir())
    newest = max((n for n in names if n != "zz-dead"), key=lambda n: events(runs / n)[-1]["t"])
    dry = agentctl("prune", "--keep", "1", "--dry-run")
    assert dry.exit_code == 0 and "would delete 2 of 3" in dry.stdout
    assert sorted(d.name for d in runs.iterdir()) == names
    assert agentctl("prune", "--keep", "1").exit_code == 0
    # the newest finished run and the dead (unfinished) one stay
    assert sorted(d.name for d in runs.iterdir()) == [newest, "zz-dead"]
    assert "deleted 0 of 1" in agentctl("prune", "--older-than", "1d").stdout
    assert agentctl("prune", "--older-than", "0s").exit_code == 0
    assert sorted(d.name for d in runs.iterdir()) == ["zz-dead"]
    one_line_error(agentctl("prune"), "exactly one of")
    one_line_error(agentctl("prune", "--keep", "1", "--older-than", "1d"), "exactly one of")
    one_line_error(agentctl("prune", "--older-than", "soon"), "--older-than")
    damaged = runs / "bad"
    damaged.mkdir()
    (damaged / "events.jsonl").write_text("garbage\n{}\n")
    assert agentctl("prune", "--keep", "0").exit_code == 0 and damaged.exists()


def test_logs_follow_ends_with_the_runs_exit_code(tmp_path: Path) -> None:
    plan = tmp_path / "p.yaml"
    plan.write_text(GATE)
    run_dir = tmp_path / "run"
    with running("run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", str(run_dir), cwd=tmp_path):
        wait_for(run_dir, lambda e: of(e, "run/started"))
        with running("logs", str(run_dir), "-f", cwd=tmp_path, stdout=subprocess.PIPE, stderr=None) as follower:
            wait_for(run_dir, lambda e: of(e, "agent/status", "gate"))
            assert follower.poll() is None
            assert agentctl("stop", str(run_dir)).exit_code == 0
            out, _ = follower.communicate(timeout=20)
    assert follower.returncode == 130
    assert out.splitlines()[-1].endswith("run finished stopped failed  events=" + str(len(events(run_dir))))


def test_watch_and_logs_notice_a_run_killed_without_run_finished(tmp_path: Path) -> None:
    plan = tmp_path / "p.yaml"
    plan.write_text(GATE)
    run_dir = tmp_path / "run"
    with running("run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", str(run_dir), cwd=tmp_path) as runner:
        wait_for(run_dir, lambda e: of(e, "agent/status", "gate"))
        with running("logs", "-f", str(run_dir), cwd=tmp_path, stdout=subprocess.PIPE) as follower:
            runner.send_signal(signal.SIGKILL)
            runner.wait(20)
            out, err = follower.communicate(timeout=20)
    assert follower.returncode == 1
    assert f"pid {runner.pid}) is gone without run/finished" in err and "--resume" in err
    assert "gate" in out
    watched = agentctl("watch", str(run_dir))  # in-process: the run is long gone either way
    assert watched.exit_code == 1 and "gone without run/finished" in watched.stderr
    # not a terminal: plain lines, the same as run --no-ui would print
    assert "spawned  parent=plan" in watched.stdout


def test_ps_reads_a_finished_runs_end_only_and_a_damaged_end_is_one_line(project: Path) -> None:
    runs = project / ".agentctl" / "runs"
    ok = next(d for d in runs.iterdir() if events(d)[-1].get("status") == "ok")
    # A finished run is told by its log's end: damage before it does not reach ps without --all.
    log = ok / "events.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(lines[0] + b"damaged in the middle\n" + b"".join(lines[1:]))
    listed = agentctl("ps", "-o", "json")
    assert listed.exit_code == 0 and listed.stderr == ""
    assert [r["id"] for r in json.loads(listed.stdout)["runs"]] == ["zz-dead"]
    # A run killed mid-write: its torn last line is passed over, as every reader does; it is dead.
    torn = runs / "zz-torn"
    torn.mkdir()
    dead = (runs / "zz-dead" / "events.jsonl").read_bytes()
    (torn / "events.jsonl").write_bytes(dead.replace(b'"zz-dead"', b'"zz-torn"') + b'{"seq": 2, "t": 17000, "type": "agent/sta')
    # A last line that is not JSON, newline and all, is damage: one line names the file and line.
    bad = runs / "zz-bad-end"
    bad.mkdir()
    (bad / "events.jsonl").write_bytes(lines[0] + b"\x00\x01 not an event\n")
    for all_runs in ([], ["--all"]):
        listed = agentctl("ps", *all_runs, "-o", "json")
        assert listed.exit_code == 0 and "Traceback" not in listed.output
        found = {r["id"]: r["status"] for r in json.loads(listed.stdout)["runs"]}
        assert found["zz-torn"] == "dead" and "zz-bad-end" not in found
        errors = [line for line in listed.stderr.splitlines() if "zz-bad-end" in line]
        assert len(errors) == 1 and errors[0].startswith(
            "error: skipped .agentctl/runs/zz-bad-end: .agentctl/runs/zz-bad-end/events.jsonl:2: corrupt event line: not JSON"), listed.stderr
    # prune reads ends only too: it names the run it cannot tell about, keeps it, and deletes the rest.
    pruned = agentctl("prune", "--keep", "0")
    assert pruned.exit_code == 0 and bad.exists() and not ok.exists()
    assert [line for line in pruned.stderr.splitlines() if line.startswith("error:")] == [
        line for line in listed.stderr.splitlines() if "zz-bad-end" in line]


def test_logs_tail_prints_the_last_events_read_from_the_end(project: Path) -> None:
    run_dir = next(d for d in (project / ".agentctl" / "runs").iterdir() if events(d)[-1].get("status") == "ok")
    last = events(run_dir)[-1]["seq"]
    whole = agentctl("logs", str(run_dir)).stdout.splitlines()
    in_tail = [line for line in whole if int(line.split(" #")[1].split()[0]) > last - 6]
    for follow in ([], ["-f"]):  # a finished run: -f prints the same and ends with its exit code
        tail = agentctl("logs", str(run_dir), "--tail", "6", *follow)
        assert tail.exit_code == 0 and tail.stdout.splitlines() == in_tail, tail.output
    assert agentctl("logs", str(run_dir), "-n", "0").stdout == ""
    # An agent that is in the run but not in its tail prints nothing; one not in the run is refused.
    quiet = agentctl("logs", str(run_dir), "-n", "1", "--agent", "greeter-helper")
    assert (quiet.exit_code, quiet.stdout) == (0, "")
    one_line_error(agentctl("logs", str(run_dir), "-n", "1", "--agent", "nobody"), "no agent 'nobody'")
    # A damaged last line: one line naming it, exit 2.
    with open(run_dir / "events.jsonl", "ab") as f:
        f.write(b"\x00 damaged\n")
    one_line_error(agentctl("logs", str(run_dir), "-n", "3"), f"events.jsonl:{last + 1}: corrupt event line")
