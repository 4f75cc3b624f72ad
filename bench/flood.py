"""A message flood: one agent sends N messages as fast as its steps can return them.

The source agent's step returns ``BATCH`` sends to a sink child per step, N in all, into a
real ``EventLog`` on a temp file (durability ``batch``), with the runtime wired as ``agentctl
run`` wires it (backpressure from the log's writer). Each measurement runs in a fresh
subprocess, so that its peak RSS (``ru_maxrss``) is its own: the figure is the peak over the
RSS of the idle runtime, measured just before the flood starts, against the issue's bound of
100 MB; and messages/s beside the one-way rate (:mod:`bench.one_way`) measured in the same run.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

from agentctl import actions as act
from agentctl.events.log import open_event_log
from agentctl.runtime import AgentSpec, StepContext, open_runtime

from .harness import Figure, alternate, figure
from .one_way import agentctl_rate

BATCH = 64
BOUND_MB = 100.0


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def flood(n: int, path: Path) -> dict[str, float]:
    """Run the flood in this process: messages/s, idle and peak RSS (MB), and the log's throttling."""
    async with open_event_log(path, "bench", durability="batch") as log:
        async with open_runtime(log.emit, backpressure=log) as rt:
            idle = _rss_mb()
            done = anyio.Event()

            def sink(ctx: StepContext) -> list:
                return []

            def source(ctx: StepContext) -> list:
                if ctx.reason == "start":
                    ctx.state["sent"] = 0
                    return [act.spawn(AgentSpec("sink", sink))]
                k = min(BATCH, n - ctx.state["sent"])
                if k == 0:
                    done.set()
                    return [act.done()]
                ctx.state["sent"] += k
                return [act.send("sink", "m", i) for i in range(k)]

            start = time.perf_counter()
            rt.spawn(AgentSpec("source", source))
            await done.wait()
            rate = n / (time.perf_counter() - start)
            stats = log.statistics()
    return {"rate": rate, "idle_mb": idle, "peak_mb": _rss_mb(), "throttled": stats.throttled}


def measure(n: int) -> dict[str, float]:
    """One flood in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-m", "bench.flood", str(n)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def run(quick: bool, rounds: int) -> list[Figure]:
    """Peak RSS over idle (against the 100 MB bound) and msgs/s beside one-way, same run."""
    n = 200_000 if quick else 1_000_000
    last: dict[str, float] = {}

    def one_flood() -> float:
        last.update(measure(n))
        return last["peak_mb"] - last["idle_mb"]

    def flood_rate() -> float:
        return last["rate"]

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        got = alternate(rounds, {
            "growth": one_flood,
            "rate": flood_rate,
            "one_way": lambda: anyio.run(agentctl_rate, min(n, 400_000), path, "batch"),
        })
    note = f"{n:,} msgs from one agent, {BATCH} sends per step, log batch; a fresh process per flood"
    return [
        figure("flood peak RSS over idle", "MB", got["growth"], "bound (issue 12)", BOUND_MB, 1.0, higher=False,
               note=note),
        figure("flood msgs/s", "/s", got["rate"], "one_way msgs/s (log batch)", got["one_way"], None,
               note=f"same run; producers throttled {int(last.get('throttled', 0))} times in the last flood"),
    ]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(anyio.run(flood, int(sys.argv[1]), Path(tmp) / "events.jsonl")))
