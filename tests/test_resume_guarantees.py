"""Crash resume keeps its promises: each case here broke before (issue 11, "what was seen")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from agentctl.events.reader import read_events

HERE = Path(__file__).parent
PLUGINS = HERE / "plugins"
AGENTCTL = str(Path(sys.executable).parent / "agentctl")
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


LINES = """\
name: lines
settings: {plugins: [resume_tools]}
tasks:
  - id: liner
    agent: script
    steps:
""" + "".join(f"      - call: {{tool: test/line, args: {{n: {n}}}}}\n" for n in range(1, 9))


def test_a_double_crash_reruns_no_recorded_call(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, LINES)
    ws, run_dir, first = start_run(tmp_path, plan, env={"TEST_KILL_AT_LINE": "4"})
    assert first.returncode == -signal.SIGKILL
    second = resume(plan, run_dir, ws, env={"TEST_KILL_AT_LINE": "7"})
    assert second.returncode == -signal.SIGKILL
    third = resume(plan, run_dir, ws)
    assert third.returncode == 0, third.stderr
    assert (ws / "out" / "lines.txt").read_text() == "".join(f"line-{n:02d}\n" for n in range(1, 9))
    requested = [e["call_id"] for e in read_events(run_dir / "events.jsonl") if e["type"] == "tool/requested"]
    results = [e["call_id"] for e in read_events(run_dir / "events.jsonl") if e["type"] == "tool/result"]
    # Each call has one id for life (a rerun of an interrupted call keeps it), and no id is reused.
    assert len(results) == len(set(results)) == 8
    assert set(requested) == set(results)
