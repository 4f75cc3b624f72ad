"""Fault injection: real ``agentctl run`` processes killed with SIGKILL from outside at every
event of a mixed plan, resumed (once, or killed again during the resume and resumed again),
and signalled with SIGTERM / SIGINT mid-call. After each case: exit 0, the workspace
byte-for-byte a clean run's, the log gap-free and readable, no call with a recorded result
run twice. Marked ``faults`` (``pytest -m faults``, in ``.ci/run``).

How a kill lands "at event N": the run is started with ``AGENTCTL_FAULT=stop@N`` and
freezes itself (SIGSTOP) as it emits event N; the test then sends the SIGKILL, as a crash
from outside would come. What the writer had not committed by then is lost, as in a crash.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import AGENTCTL, PLUGINS, running

from agentctl.events.reader import read_events

pytestmark = pytest.mark.faults

PLAN = PLUGINS / "fault_plan.yaml"
RUN = ("--no-ui", "--no-watch-plan")
#: Double crashes: the second kill lands this many events into the resume.
SECOND_KILLS = (2, 12)


def _env(fault: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCTL_")}
    env["PYTHONPATH"] = str(PLUGINS)
    if fault:
        env["AGENTCTL_FAULT"] = fault
    return env


def _stopped(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
    except (OSError, IndexError):
        return False


def run_until_killed(args: list[str], cwd: Path, fault: str) -> int | None:
    """Run agentctl with ``fault``; SIGKILL it from here once it froze itself. Its exit code
    if it finished first (the fault point was never reached), else None."""
    with running(*args, cwd=cwd, env=_env(fault)) as proc:
        while proc.poll() is None:
            if _stopped(proc.pid):
                proc.send_signal(signal.SIGKILL)
                proc.wait(30)
                return None
            time.sleep(0.005)
        return proc.returncode


def run_args(ws: Path, run_dir: Path) -> list[str]:
    return ["run", str(PLAN), *RUN, "--run-dir", str(run_dir), "--workspace", str(ws)]


def resume_args(run_dir: Path) -> list[str]:
    return ["run", str(PLAN), *RUN, "--resume", str(run_dir)]


def snapshot(ws: Path) -> dict[str, bytes]:
    return {str(p.relative_to(ws)): p.read_bytes() for p in sorted(ws.rglob("*")) if p.is_file() and "run" not in p.parts}


def check_run(ws: Path, run_dir: Path, expected: dict[str, bytes], case: str) -> None:
    events = list(read_events(run_dir / "events.jsonl"))
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), case
    assert events[-1]["type"] == "run/finished" and events[-1]["status"] == "ok", case
    assert snapshot(ws) == expected, (case, {k: v for k, v in snapshot(ws).items() if expected.get(k) != v})
    settled: dict[str, int] = {}
    for e in events:
        if (e["type"] == "tool/result" and e["ok"]) or (e["type"] == "tool/recovered" and e["applied"]):
            settled[e["call_id"]] = settled.get(e["call_id"], 0) + 1
    assert all(n == 1 for n in settled.values()), (case, {k: n for k, n in settled.items() if n > 1})
    # A call whose result was logged is never requested again.
    done_at: dict[str, int] = {}
    for e in events:
        if e["type"] in ("tool/result", "tool/recovered") and (e.get("ok") or e.get("applied")):
            done_at.setdefault(e["call_id"], e["seq"])
        if e["type"] == "tool/requested" and e["call_id"] in done_at:
            raise AssertionError((case, "requested again after its result", e["call_id"]))


def finish(ws: Path, run_dir: Path) -> None:
    proc = subprocess.run([AGENTCTL, *resume_args(run_dir)], cwd=ws, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, bytes], int]:
    tmp = tmp_path_factory.mktemp("clean")
    ws, run_dir = tmp / "ws", tmp / "ws" / "run"
    ws.mkdir()
    proc = subprocess.run([AGENTCTL, *run_args(ws, run_dir)], cwd=ws, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    events = list(read_events(run_dir / "events.jsonl"))
    types = {e["type"] for e in events}
    assert {"conflict/opened", "agent/message", "lock/acquired", "agent/spawned"} <= types
    return snapshot(ws), events[-1]["seq"]


def _single(expected: dict[str, bytes], tmp_path: Path, k: int) -> bool:
    ws = tmp_path / f"k{k}"
    ws.mkdir()
    run_dir = ws / "run"
    if run_until_killed(run_args(ws, run_dir), ws, f"stop@{k}") is not None:
        return False  # this run was shorter than the clean one: nothing to kill at k
    finish(ws, run_dir)
    check_run(ws, run_dir, expected, f"kill at {k}")
    return True


def _double(expected: dict[str, bytes], tmp_path: Path, first: int, second: int) -> bool:
    ws = tmp_path / f"k{first}-{second}"
    ws.mkdir()
    run_dir = ws / "run"
    if run_until_killed(run_args(ws, run_dir), ws, f"stop@{first}") is not None:
        return False
    on_disk = [e["seq"] for e in read_events(run_dir / "events.jsonl")] if (run_dir / "events.jsonl").exists() else []
    at = (on_disk[-1] if on_disk else 0) + second
    if run_until_killed(resume_args(run_dir), ws, f"stop@{at}") is not None:
        return False  # the resume finished before the second kill point
    finish(ws, run_dir)
    check_run(ws, run_dir, expected, f"kill at {first}, then {second} events into the resume")
    return True


def _all(cases: list[tuple[Any, ...]], fn: Any) -> int:
    """Run the cases two at a time (the processes, not the test, are the work); how many ran."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        return sum(pool.map(lambda case: fn(*case), cases))


def test_a_kill_at_every_event_resumes_to_the_clean_workspace(clean: tuple[dict[str, bytes], int], tmp_path: Path) -> None:
    expected, total = clean
    tried = _all([(expected, tmp_path, k) for k in range(1, total + 1)], _single)
    print(f"\nkill points tried: {tried} of {total} events")
    assert tried >= total * 0.9


def test_a_second_kill_during_the_resume_still_ends_in_the_clean_workspace(
    clean: tuple[dict[str, bytes], int], tmp_path: Path
) -> None:
    expected, total = clean
    cases = [(expected, tmp_path, first, second) for first in range(3, total, max(1, total // 12)) for second in SECOND_KILLS]
    tried = _all(cases, _double)
    print(f"\ndouble-crash points tried: {tried}")
    assert tried >= 20


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_tool_calls_then_resume_ends_in_the_clean_workspace(
    clean: tuple[dict[str, bytes], int], tmp_path: Path, signum: int
) -> None:
    expected, _ = clean
    for n in (1, 2, 4, 7):
        ws = tmp_path / f"s{n}"
        ws.mkdir()
        run_dir = ws / "run"
        # Frozen as it emits its n-th tool/prepared: the call is under way; the signal
        # is delivered when it is let go again.
        with running(*run_args(ws, run_dir), cwd=ws, env=_env(f"stop@tool/prepared#{n}"),
                     stderr=subprocess.DEVNULL) as proc:
            deadline = time.monotonic() + 60
            while not _stopped(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            proc.send_signal(signum)
            proc.send_signal(signal.SIGCONT)
            code = proc.wait(60)
        assert code in (130, 0), (n, code)
        if code == 130:
            finish(ws, run_dir)
        check_run(ws, run_dir, expected, f"signal {signum} at tool/prepared #{n}")
