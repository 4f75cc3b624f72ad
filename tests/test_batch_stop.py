"""Stopping ``agentctl batch`` on this machine: SIGTERM (or Ctrl-C) to the batch process alone
stops each running run as Ctrl-C stops one (its log ends ``interrupted``; resumable), starts no
more, prints the table and exits 130; a second signal kills the runs. Real processes throughout;
no run's process may outlive the batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from cli_helpers import AGENTCTL, events, of, reaped, wait_for

pytestmark = pytest.mark.slow

SLEEPER = """\
name: sleeper ${n}
tasks:
  - id: a
    agent: script
    steps:
      - sleep: 120
      - done: ok
"""


def _started(tmp_path: Path) -> subprocess.Popen[str]:
    (tmp_path / "sleeper.yaml").write_text(SLEEPER)
    return subprocess.Popen([AGENTCTL, "batch", "sleeper.yaml", "--param", "n=1,2,3", "--parallel", "2", "-o", "json"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _sleeping_runs(tmp_path: Path) -> list[Path]:
    """The run directories of the first two runs, once both are in their sleep."""
    runs: list[Path] = []

    def both_sleeping(_: object) -> bool:
        runs[:] = sorted((tmp_path / ".agentctl" / "runs").glob("*-0[12]"))
        return len(runs) == 2 and all(any(e.get("status") == "sleeping" for e in events(r)) for r in runs)

    wait_for(tmp_path, both_sleeping, timeout=60)  # (tmp_path: any directory; the check finds the runs)
    return runs


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_stops_each_running_run_resumably_starts_no_more_and_exits_130(tmp_path: Path) -> None:
    with reaped(_started(tmp_path)) as batch:
        runs = _sleeping_runs(tmp_path)
        pids = [of(events(r), "run/started")[0]["pid"] for r in runs]
        batch.send_signal(signal.SIGTERM)  # to the batch alone, not its process group
        out, err = batch.communicate(timeout=60)
    assert batch.returncode == 130, err
    report = json.loads(out)
    assert [(r["name"], r["status"], r["exit_code"]) for r in report["runs"]] == [
        ("01-sleeper[n=1]", "interrupted", 130), ("02-sleeper[n=2]", "interrupted", 130),
        ("03-sleeper[n=3]", "interrupted", None)]
    assert report["runs"][2]["error"] == "not started: the batch was stopped"
    assert not list((tmp_path / ".agentctl" / "runs").glob("*-03"))
    for run in runs:
        last = events(run)[-1]
        assert (last["type"], last["reason"]) == ("run/finished", "interrupted")
    assert not any(_alive(pid) for pid in pids)
    assert "stopping: each running run ends as Ctrl-C ends it" in err


def test_a_second_signal_kills_the_runs_and_leaves_them_resumable(tmp_path: Path) -> None:
    with reaped(_started(tmp_path)) as batch:
        runs = _sleeping_runs(tmp_path)
        pids = [of(events(r), "run/started")[0]["pid"] for r in runs]
        try:
            # Each run is held mid-shutdown: stopped, it cannot act on the first signal.
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            batch.send_signal(signal.SIGINT)
            assert batch.stderr is not None
            while "stopping" not in (line := batch.stderr.readline()):
                assert line, "the batch ended without saying it was stopping"
            batch.send_signal(signal.SIGINT)
            out, err = batch.communicate(timeout=60)
        finally:
            for pid in pids:
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
    assert batch.returncode == 130, err
    report = json.loads(out)
    assert [r["status"] for r in report["runs"]] == ["lost", "lost", "interrupted"]
    assert not any(_alive(pid) for pid in pids)
    for run in runs:
        assert not of(events(run), "run/finished")  # killed: resumable, as after any crash
