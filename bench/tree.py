"""A fan-out/fan-in tree: 10 children, each 10 grandchildren, each 10 leaves (1,110 agents).

Every leaf finishes at once; every parent finishes when all its children have reported
``done``; the figure is the time until the root's ``done``. Baseline: the same tree of
bare anyio tasks, each reporting to its parent through a memory stream.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import anyio

from agentctl import actions as act
from agentctl.events.log import open_event_log
from agentctl.runtime import AgentSpec, StepContext, open_runtime

from .harness import Figure, alternate, figure

FAN, DEPTH = 10, 3


def _node(level: int):
    def step(ctx: StepContext) -> list:
        if level == DEPTH:
            return [act.done("ok", 1)]
        if ctx.reason == "start":
            ctx.state["left"] = FAN
            return [act.spawn(AgentSpec(f"{ctx.agent_id}.{i}", _node(level + 1))) for i in range(FAN)]
        ctx.state["left"] -= sum(1 for m in ctx.messages if m.kind == "done")
        return [act.done("ok", FAN)] if ctx.state["left"] == 0 else []

    return step


async def _ours() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        return await _ours_in(Path(tmp) / "events.jsonl")


async def _ours_in(path: Path) -> float:
    async with open_event_log(path, "bench", durability="batch") as log:
        async with open_runtime(log.emit) as rt:
            start = time.perf_counter()
            rt.spawn(AgentSpec("root", _node(0)))
            await rt.wait("root")
            return time.perf_counter() - start


async def _bare() -> float:
    async def node(level: int, report: anyio.abc.ObjectSendStream[int]) -> None:
        if level < DEPTH:
            send, receive = anyio.create_memory_object_stream[int](FAN)
            async with anyio.create_task_group() as tg:
                for _ in range(FAN):
                    tg.start_soon(node, level + 1, send.clone())
                for _ in range(FAN):
                    await receive.receive()
        await report.send(1)

    send, receive = anyio.create_memory_object_stream[int](1)
    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(node, 0, send)
        await receive.receive()
    return time.perf_counter() - start


def run(quick: bool, rounds: int) -> list[Figure]:
    """Time to the root's done (a run takes ~60 ms, so five times the rounds: noise settles)."""
    medians = alternate(rounds * 5, {"agentctl": lambda: anyio.run(_ours), "anyio": lambda: anyio.run(_bare)})
    return [figure("tree of 1,110 agents, leaves report up", "ms", medians["agentctl"] * 1000, "anyio tasks+streams",
                   medians["anyio"] * 1000, 1.0, higher=False, note="agentctl logs every spawn, message and done to a file (fsync per batch)")]
