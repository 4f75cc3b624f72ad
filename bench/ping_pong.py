"""Ping-pong: parent and child bounce one message N times through the real bus.

Each message is logged (durability ``batch``) as ``agent/message``. The figure is round
trips/s. Baseline: bare anyio tasks bouncing over two memory object streams. Peers,
where installed: pykka ``ask``, autogen-core ``send_message``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import anyio

from agentctl import actions as act
from agentctl.events.log import open_event_log
from agentctl.runtime import AgentSpec, StepContext, open_runtime

from . import peers
from .harness import Figure, alternate, figure


async def agentctl_rate(n: int, path: Path) -> float:
    """Round trips/s between a parent and its child."""
    path.unlink(missing_ok=True)
    async with open_event_log(path, "bench", durability="batch") as log:
        async with open_runtime(log.emit, backpressure=log) as rt:
            done = anyio.Event()

            def child(ctx: StepContext) -> list:
                return [act.send("parent", "pong") for m in ctx.messages if m.kind == "ping"]

            def parent(ctx: StepContext) -> list:
                if ctx.reason == "start":
                    ctx.state["n"] = 0
                    return [act.spawn(AgentSpec("child", child)), act.send("child", "ping")]
                out = []
                for _ in ctx.messages:
                    ctx.state["n"] += 1
                    if ctx.state["n"] >= n:
                        done.set()
                        return []
                    out.append(act.send("child", "ping"))
                return out

            start = time.perf_counter()
            rt.spawn(AgentSpec("parent", parent))
            await done.wait()
            return n / (time.perf_counter() - start)


async def anyio_rate(n: int) -> float:
    """Round trips/s between two bare tasks over memory object streams."""
    to_child, child_in = anyio.create_memory_object_stream[int](256)
    to_parent, parent_in = anyio.create_memory_object_stream[int](256)

    async def child() -> None:
        async for m in child_in:
            await to_parent.send(m)

    async with anyio.create_task_group() as tg:
        tg.start_soon(child)
        start = time.perf_counter()
        for i in range(n):
            await to_child.send(i)
            await parent_in.receive()
        rate = n / (time.perf_counter() - start)
        tg.cancel_scope.cancel()
    return rate


def run(quick: bool, rounds: int) -> list[Figure]:
    """Round trips/s against the anyio baseline."""
    n = 30_000 if quick else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        rates = alternate(rounds, {
            "agentctl": lambda: anyio.run(agentctl_rate, n, path),
            "anyio": lambda: anyio.run(anyio_rate, n),
            **peers.runners(n, round_trips=True),
        })
    others = {k: v for k, v in rates.items() if k not in ("agentctl", "anyio")}
    return [figure("ping_pong round trips/s (log batch)", "/s", rates["agentctl"], "anyio streams", rates["anyio"], 0.5,
                   peers=others, note=f"{n:,} round trips; each leg is an agent/message event")]
