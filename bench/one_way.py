"""One-way messaging: a parent agent sends N messages to its child through the real bus.

Every message is routed by the ``Bus`` and logged as an ``agent/message`` event into a
real ``EventLog`` on a temp file, once with durability ``none`` and once with ``batch``
(fsync per group commit). The parent's step returns ``BATCH`` sends at once; the child's
step counts what it got. The figure is messages/s until the child has all N.

Baseline: a bare anyio memory object stream (buffer 256), producer and consumer tasks.
Peers, where installed: pykka ``tell``, autogen-core ``publish_message``.
"""

from __future__ import annotations

import tempfile
import time
from functools import partial
from pathlib import Path

import anyio

from agentctl import actions as act
from agentctl.events.log import open_event_log
from agentctl.runtime import AgentSpec, StepContext, open_runtime

from . import peers
from .harness import Figure, alternate, figure

BATCH = 64  # messages the parent hands over per step, as a chatty agent would


async def agentctl_rate(n: int, path: Path, durability: str) -> float:
    """Messages/s from parent to child, logged with ``durability``."""
    path.unlink(missing_ok=True)
    async with open_event_log(path, "bench", durability=durability) as log:  # type: ignore[arg-type]
        async with open_runtime(log.emit, backpressure=log) as rt:
            done = anyio.Event()

            def child(ctx: StepContext) -> list:
                got = ctx.state["got"] = ctx.state.get("got", 0) + len(ctx.messages)
                if got >= n:
                    done.set()
                return []

            def parent(ctx: StepContext) -> list:
                if ctx.reason == "start":
                    ctx.state["sent"] = 0
                    return [act.spawn(AgentSpec("child", child))]
                k = min(BATCH, n - ctx.state["sent"])
                ctx.state["sent"] += k
                return [act.send("child", "m", i) for i in range(k)]

            start = time.perf_counter()
            rt.spawn(AgentSpec("parent", parent))
            await done.wait()
            return n / (time.perf_counter() - start)


async def anyio_rate(n: int) -> float:
    """Messages/s through a bare memory object stream (buffer 256)."""
    send, receive = anyio.create_memory_object_stream[int](256)

    async def consume() -> None:
        for _ in range(n):
            await receive.receive()

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        for i in range(n):
            await send.send(i)
    return n / (time.perf_counter() - start)


def run(quick: bool, rounds: int) -> list[Figure]:
    """One-way rates with the log at durability ``none`` and ``batch``."""
    n = 100_000 if quick else 400_000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        rates = alternate(rounds, {
            "none": lambda: anyio.run(agentctl_rate, n, path, "none"),
            "batch": lambda: anyio.run(agentctl_rate, n, path, "batch"),
            "anyio": lambda: anyio.run(anyio_rate, n),
            **peers.runners(n, round_trips=False),
        })
    others = {k: v for k, v in rates.items() if k not in ("none", "batch", "anyio")}
    note = f"{n:,} msgs; parent returns {BATCH} sends per step; each message is an agent/message event"
    return [
        figure("one_way msgs/s (log none)", "/s", rates["none"], "anyio stream", rates["anyio"], 1.0, peers=others,
               note=note),
        figure("one_way msgs/s (log batch)", "/s", rates["batch"], "anyio stream", rates["anyio"], 1.0,
               note="same, fsync per group commit"),
    ]


if __name__ == "__main__":
    import sys

    with tempfile.TemporaryDirectory() as tmp:
        mode = sys.argv[1] if len(sys.argv) > 1 else "batch"
        print(anyio.run(partial(agentctl_rate, 100_000, Path(tmp) / "e.jsonl", mode)))
