"""Listing runs: ``agentctl ps`` over many runs, and a run's end in a long log.

Synthetic run logs in the writer's own line format: each run a root and task agents that
call a model (streamed: ``llm/delta`` events, most of a real log's lines) and a tool, and
end; every run but the newest ends with ``run/finished``, the newest is still going.

* ``ps`` over R runs: what it reads now (each finished run's last lines only, the
  unfinished one folded: :func:`agentctl.cli.runs.readable_runs` with ``finished=False``)
  against folding every log and keeping the unfinished runs, as it read before (same runs,
  same process, alternating rounds).
* A run's end: :func:`agentctl.views.runs.read_run_end` (the last event, read from the end
  of the file) against :func:`agentctl.views.runs.read_run` (the fold of the whole log) on
  one long log: the ratio grows with the log, the end's cost does not.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from agentctl.cli.runs import readable_runs
from agentctl.views.runs import read_run, read_run_end

from .harness import Figure, alternate, figure

#: Events of one task agent: spawn, status, 3 model calls of 20 deltas each, a tool call, done.
PER_AGENT = 2 + 3 * 22 + 2 + 1


def _events(run_id: str, agents: int, finished: bool) -> Iterator[dict[str, Any]]:
    seq = 0

    def event(type_: str, agent: str | None, **fields: Any) -> dict[str, Any]:
        nonlocal seq
        seq += 1
        return {"seq": seq, "t": 1_796_000_000_000 + seq, "run_id": run_id, "type": type_, "agent_id": agent, **fields}

    yield event("run/started", None, pid=1, version="0", durability="batch", workspace="/w", plan="/w/p.yaml",
                control="/w/c.sock", executor="local", address=None)
    yield event("plan/loaded", None, file="/w/p.yaml", name="bench", version=1, tasks=agents, changed=[])
    yield event("agent/spawned", "plan", parent_id=None, depth=0, kind="plan")
    for a in range(agents):
        agent = f"task-{a}"
        yield event("agent/spawned", agent, parent_id="plan", depth=1, kind="llm")
        yield event("agent/status", agent, status="running")
        for c in range(3):
            call = f"{agent}-l{c}"
            yield event("llm/requested", agent, call_id=call, provider="openai", model="m", messages=2 + c, tools=["fs/read"])
            for _ in range(20):
                yield event("llm/delta", agent, call_id=call, content="a few streamed tokens ")
            yield event("llm/result", agent, call_id=call, ok=True, reply={"content": "x" * 200, "tool_calls": []},
                        prompt_tokens=100, completion_tokens=40, duration_ms=900)
        yield event("tool/requested", agent, call_id=f"{agent}-t", tool="fs/read", arguments={"path": "notes.txt"})
        yield event("tool/result", agent, call_id=f"{agent}-t", ok=True, result="y" * 300, duration_ms=2)
        yield event("agent/done", agent, status="ok", result="done")
    if finished:
        yield event("run/finished", None, reason="completed", status="ok", events=seq + 1)


def write_run(root: Path, run_id: str, agents: int, *, finished: bool) -> Path:
    """A run directory under ``root`` with a synthetic log; returns it."""
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    with open(run_dir / "events.jsonl", "wb") as f:
        for e in _events(run_id, agents, finished):
            f.write(orjson.dumps(e) + b"\n")
    return run_dir


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _ps_before(root: Path) -> None:
    """What ``ps`` read before: every run folded, then the finished ones left out."""
    [i for i in readable_runs(root) if i.finished is None]


def run(quick: bool, rounds: int) -> list[Figure]:
    """``ps`` over many runs, and a run's end in a long log, each against reading the whole logs."""
    runs, agents, long_agents = (50, 20, 2_000) if quick else (200, 40, 12_000)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        for r in range(runs):
            write_run(root, f"20261202-{r:06d}-aaaaaa", agents, finished=r < runs - 1)
        events = runs * (agents * PER_AGENT + 4)
        listed = alternate(rounds, {
            "ends": lambda: _timed(lambda: readable_runs(root, finished=False)),
            "whole": lambda: _timed(lambda: _ps_before(root)),
        })
        long = write_run(Path(tmp) / "long", "20261202-000000-bbbbbb", long_agents, finished=True)
        size_mb = (long / "events.jsonl").stat().st_size / 1e6
        end = alternate(rounds, {
            "end": lambda: _timed(lambda: read_run_end(long)),
            "whole": lambda: _timed(lambda: read_run(long)),
        })
    return [
        figure(f"ps: {runs} runs ({events:,} events), 1 unfinished", "ms", listed["ends"] * 1000,
               "fold every log", listed["whole"] * 1000, 10.0, higher=False,
               note="finished runs read from their log's end; ratio = whole / ends; target 10x"),
        figure(f"a run's end in a {size_mb:.0f} MB log", "ms", end["end"] * 1000, "fold the whole log",
               end["whole"] * 1000, 100.0, higher=False,
               note="read_run_end against read_run; grows with the log; target 100x"),
    ]
