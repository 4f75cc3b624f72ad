"""Messaging: one-way parent->child and ping-pong, routed through the bus with events logged.

Baseline: bare anyio memory object streams (buffer 256). Peers, where installed: pykka
actors (``tell`` / ``ask``) and autogen-core's ``SingleThreadedAgentRuntime``
(``publish_message`` one-way, ``send_message`` round trips).
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

BATCH = 64  # messages a sender hands over per step, as a chatty agent would


async def _agentctl_one_way(n: int, log_dir: Path) -> float:
    async with open_event_log(log_dir / "events.jsonl", "bench", durability="batch") as log:
        async with open_runtime(log.emit) as rt:
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


async def _agentctl_ping_pong(n: int, log_dir: Path) -> float:
    async with open_event_log(log_dir / "events.jsonl", "bench", durability="batch") as log:
        async with open_runtime(log.emit) as rt:
            done = anyio.Event()

            def child(ctx: StepContext) -> list:
                return [act.send("parent", "pong") for m in ctx.messages if m.kind == "ping"]

            def parent(ctx: StepContext) -> list:
                if ctx.reason == "start":
                    ctx.state["n"] = 0
                    return [act.spawn(AgentSpec("child", child)), act.send("child", "ping")]
                out = []
                for m in ctx.messages:
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


async def _bare_one_way(n: int) -> float:
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


async def _bare_ping_pong(n: int) -> float:
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


def _peers(n: int, round_trips: bool) -> dict[str, object]:
    try:
        from . import peers
    except ImportError:
        print("peers skipped: not installed (pip install -e '.[bench]')")
        return {}
    found: dict[str, object] = {"pykka " + ("ask" if round_trips else "tell"): lambda: peers.pykka_rate(n, round_trips)}
    try:
        import autogen_core  # noqa: F401
    except ImportError:
        return found
    # autogen-core is two orders slower: a fifth of the messages keeps the run short.
    found["autogen-core " + ("send_message" if round_trips else "publish_message")] = lambda: peers.autogen_rate(n // 5, round_trips)
    return found


def run(quick: bool, rounds: int) -> list[Figure]:
    """One-way and ping-pong figures."""
    n_one, n_pp = (100_000, 30_000) if quick else (400_000, 100_000)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        one = alternate(rounds, {
            "agentctl": lambda: anyio.run(_agentctl_one_way, n_one, d),
            "anyio": lambda: anyio.run(_bare_one_way, n_one),
            **_peers(n_one, False),  # type: ignore[dict-item]
        })
        pp = alternate(rounds, {
            "agentctl": lambda: anyio.run(_agentctl_ping_pong, n_pp, d),
            "anyio": lambda: anyio.run(_bare_ping_pong, n_pp),
            **_peers(n_pp, True),  # type: ignore[dict-item]
        })
    peers_one = {k: v for k, v in one.items() if k not in ("agentctl", "anyio")}
    peers_pp = {k: v for k, v in pp.items() if k not in ("agentctl", "anyio")}
    return [
        figure("one-way msgs/s (logged)", "/s", one["agentctl"], "anyio stream", one["anyio"], 1.0, peers=peers_one,
               note=f"sender hands {BATCH} messages per step; every message is an agent/message event (fsync per batch)"),
        figure("ping-pong round trips/s (logged)", "/s", pp["agentctl"], "anyio stream", pp["anyio"], 0.5, peers=peers_pp),
    ]
