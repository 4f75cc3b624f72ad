"""The live view with 1,000 agents: time to fold their events and draw one frame.

The view redraws at most ten times a second, so a frame (render into a terminal-sized
console) must take well under 100 ms; folding the events that arrive between frames must
keep up too. Baseline: the 100 ms frame budget of a 10 fps view.
"""

from __future__ import annotations

import io
import statistics
import time

from rich.console import Console

from agentctl.events.fold import RunState
from agentctl.views.live import LiveView

from .harness import Figure, figure

AGENTS = 1_000


def _events() -> list[dict]:
    seq = 0

    def ev(type: str, agent: str | None, **fields: object) -> dict:
        nonlocal seq
        seq += 1
        return {"seq": seq, "t": 1_700_000_000_000 + seq, "run_id": "bench", "type": type, "agent_id": agent, **fields}

    out = [ev("run/started", None, pid=1, version="0", durability="batch", workspace="/w", plan="p.yaml"),
           ev("agent/spawned", "plan", parent_id=None, depth=0, model=None, kind="plan", tools=[], budget={},
              restart="temporary")]
    for i in range(AGENTS):
        parent = "plan" if i < 10 else f"a{i // 100}"
        out.append(ev("agent/spawned", f"a{i}", parent_id=parent, depth=1 if i < 10 else 2, model="m", kind="script",
                      tools=["fs/write"], budget={"max_steps": 50}, restart="transient"))
        out.append(ev("agent/status", f"a{i}", status="running", reason="act", steps=1))
        out.append(ev("tool/requested", f"a{i}", call_id=f"c{i}", tool="fs/write", arguments={"path": f"f{i}"}))
    return out


def run(quick: bool, rounds: int) -> list[Figure]:
    """Median frame time and fold rate with 1,000 agents."""
    events = _events()
    console = Console(file=io.StringIO(), width=160, height=50, force_terminal=True, color_system="truecolor")
    view = LiveView(console, state=RunState())
    start = time.perf_counter()
    for e in events:
        view.feed(e)
    fold_rate = len(events) / (time.perf_counter() - start)
    frames = []
    for _ in range(max(rounds, 5)):
        start = time.perf_counter()
        console.print(view.render())
        frames.append(time.perf_counter() - start)
        console.file.seek(0)
        console.file.truncate()
    frame = statistics.median(frames)
    return [figure(f"live view frame, {AGENTS:,} agents", "ms", frame * 1000, "10 fps frame budget", 100.0, 1.0,
                   higher=False, note=f"events folded into the view at {fold_rate:,.0f}/s")]
