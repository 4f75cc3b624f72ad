"""Reconcile latency: a plan save -> the first ``agent/spawned`` of the new task.

The real CLI runs ``agentctl run PLAN --no-ui --keep-running`` in a subprocess; 50 times a
task is added to the plan (written to a temp file and renamed over it, as editors save),
and the time from the rename to the new agent's ``agent/spawned`` line in events.jsonl is
taken by tailing the file. Baseline: watchfiles' own notification latency (``awatch``)
for the same kind of save, in this process, with debounce 30 ms and step 10 ms. The
latency targets (p50 <= 100 ms, p95 <= 250 ms) are absolute, so they are the baseline
column; the watchfiles figures are in the notes.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import watchfiles

from .harness import Figure, figure

TASK = "  - id: t{n}\n    agent: script\n    steps: [{{wait: never}}]\n"


def _save(path: Path, text: str) -> float:
    tmp = path.with_name(".plan.tmp")
    tmp.write_text(text)
    saved = time.perf_counter()
    os.replace(tmp, path)
    return saved


def _wait_spawned(events: Path, agent: str, offset: int, deadline: float) -> tuple[float, int]:
    while time.perf_counter() < deadline:
        if events.exists():
            with open(events, "rb") as f:
                f.seek(offset)
                data = f.read()
            if f'"type":"agent/spawned","agent_id":"{agent}"'.encode() in data:
                return time.perf_counter(), offset + data.rfind(b"\n") + 1
        time.sleep(0.001)
    raise TimeoutError(agent)


def _ours(edits: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        plan, run_dir = d / "plan.yaml", d / "run"
        text = "name: bench\ntasks:\n" + TASK.format(n=0)
        plan.write_text(text)
        agentctl = str(Path(sys.executable).parent / "agentctl")
        proc = subprocess.Popen([agentctl, "run", str(plan), "--no-ui", "--keep-running", "--durability", "none",
                                 "--run-dir", str(run_dir), "--workspace", str(d)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _, offset = _wait_spawned(run_dir / "events.jsonl", "t0", 0, time.perf_counter() + 30)
            latencies = []
            for n in range(1, edits + 1):
                time.sleep(0.05)  # editors do not save twice in one debounce window
                text += TASK.format(n=n)
                saved = _save(plan, text)
                seen, offset = _wait_spawned(run_dir / "events.jsonl", f"t{n}", offset, saved + 10)
                latencies.append(seen - saved)
            return latencies
        finally:
            proc.terminate()
            proc.wait(10)


async def _watchfiles(edits: int) -> list[float]:
    """Save -> awatch notification, per save, for the same kind of save as :func:`_ours`."""
    latencies: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        plan = Path(tmp) / "plan.yaml"
        plan.write_text("x")
        stop = anyio.Event()
        notify, notified = anyio.create_memory_object_stream[float](edits * 4)

        async def watch() -> None:
            async for _ in watchfiles.awatch(tmp, debounce=30, step=10, recursive=False, stop_event=stop):
                notify.send_nowait(time.perf_counter())

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            await anyio.sleep(0.5)  # the watcher is armed
            for n in range(edits):
                await anyio.sleep(0.05)  # as in _ours: no two saves in one debounce window
                saved = _save(plan, f"x{n}")
                with anyio.fail_after(10):
                    seen = await notified.receive()
                latencies.append(seen - saved)
                while True:  # one save may be reported twice (write + rename): drop extras
                    try:
                        notified.receive_nowait()
                    except anyio.WouldBlock:
                        break
            stop.set()
    return latencies


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p * (len(values) - 1))))]


def run(quick: bool, rounds: int) -> list[Figure]:
    """p50 and p95 over 50 edits (both sizes: the run is a few seconds)."""
    edits = 50
    ours, base = _ours(edits), anyio.run(_watchfiles, edits)
    return [
        figure("reconcile p50: save -> spawned", "ms", statistics.median(ours) * 1000, "100 ms target", 100.0, 1.0,
               higher=False, note=f"watchfiles alone (same debounce): p50 {statistics.median(base) * 1000:.1f} ms"),
        figure("reconcile p95: save -> spawned", "ms", _pct(ours, 0.95) * 1000, "250 ms target", 250.0, 1.0,
               higher=False, note=f"watchfiles alone: p95 {_pct(base, 0.95) * 1000:.1f} ms"),
    ]
