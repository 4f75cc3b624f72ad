"""Helpers for tests that drive the real ``agentctl`` command in subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agentctl.events.reader import read_events

ROOT = Path(__file__).parent.parent
PLANS = ROOT / "plans"
AGENTCTL = str(Path(sys.executable).parent / "agentctl")

Events = list[dict[str, Any]]


def cli(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``agentctl ARGS`` to completion."""
    return subprocess.run([AGENTCTL, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    """Start ``agentctl ARGS`` in the background (stderr kept for failure messages)."""
    return subprocess.Popen([AGENTCTL, *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def events(run_dir: Path) -> Events:
    """The events a run has written so far (a torn final line is left out)."""
    path = run_dir / "events.jsonl"
    return list(read_events(path)) if path.exists() else []


def wait_for(run_dir: Path, check: Callable[[Events], Any], timeout: float = 20) -> Events:
    """Poll the run's events until ``check`` holds; fail with the latest events at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = events(run_dir)
        if check(found):
            return found
        time.sleep(0.05)
    tail = [(e["seq"], e["type"], e.get("agent_id")) for e in events(run_dir)[-10:]]
    raise AssertionError(f"timed out waiting; last events: {tail}")


def of(evs: Sequence[dict[str, Any]], type: str, agent: str | None = None) -> Events:
    """The events of one type (and agent)."""
    return [e for e in evs if e["type"] == type and (agent is None or e.get("agent_id") == agent)]


def save(path: Path, text: str) -> None:
    """Save like an editor: write a temporary file, then rename it over the target."""
    tmp = path.with_name(path.name + ".swp")
    tmp.write_text(text)
    os.replace(tmp, path)
