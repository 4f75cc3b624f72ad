"""Tool calls on the Ray executor against the local tool pool (needs ``agentctl[ray]``).

A private Ray instance on this machine (``ray.init``, one CPU per core, no dashboard); both
planes run the same tools through the real work plane (events, validation, pool slot,
timeout), from one agent's point of view (``call_tool`` on the plane):

- per-call overhead: a trivial tool called 200 times in a row; ms per call on each plane;
- throughput of a CPU-bound tool (sha256 of its own 32-byte digest, over and over, for
  200 ms of CPU time: Python code that holds the GIL, as most tool code does) with N = 1,
  2 and 4 calls at once. The local pool runs sync tools in threads of this one process, so under the GIL its throughput
  stays at one call's worth whatever N; Ray runs each call in a worker process of its own
  and scales with the cores the cluster has (here: this machine's). Figures are calls/s,
  the Ray executor's over the local pool's at the same N.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio

from agentctl.events.log import open_event_log
from agentctl.executor import Executor
from agentctl.services.tools import ToolContext, default_registry
from agentctl.services.workers import LocalWorkPlane

from .harness import Figure, alternate, figure

CALLS = 200
SPIN_SECONDS = 0.2


def echo(x: int) -> int:
    """Return ``x``: the cheapest call there is."""
    return x


def spin(seconds: float) -> str:
    """Hash a 32-byte digest over and over until this thread has had ``seconds`` of CPU time.

    CPU time, not wall time: a machine shared with other work slows both planes alike,
    and each call still does the same work (the GIL is held throughout).
    """
    digest = b"\0" * 32
    start = time.thread_time()
    while time.thread_time() - start < seconds:
        for _ in range(1000):
            digest = hashlib.sha256(digest).digest()
    return digest.hex()[:16]


def _registry() -> Any:
    tools = default_registry()
    tools.tool("bench/echo", remote=True)(echo)
    tools.tool("bench/spin", remote=True)(spin)
    return tools


async def _plane_run(ray_plane: bool, work: Any) -> float:
    async with open_event_log(None, "bench", durability="none") as log:
        tools = _registry()
        if ray_plane:
            from agentctl.services.ray_plane import RayWorkPlane

            plane: Any = RayWorkPlane(log.emit, executor=Executor(kind="ray"), tools=tools, tool_workers=8)
        else:
            plane = LocalWorkPlane(log.emit, tools=tools, tool_workers=8)
        ctx = ToolContext(agent_id="a", workspace=Path.cwd(), run_id="bench")
        return float(await work(plane, ctx))


async def _per_call_ms(plane: Any, ctx: ToolContext) -> float:
    start = time.perf_counter()
    for i in range(CALLS):
        out = await plane.call_tool("a", "bench/echo", {"x": i}, ctx=ctx)
        assert out.ok and out.value == i, out
    return (time.perf_counter() - start) * 1000 / CALLS


async def _throughput(n: int, seconds: float, plane: Any, ctx: ToolContext) -> float:
    async def one() -> None:
        out = await plane.call_tool("a", "bench/spin", {"seconds": seconds}, ctx=ctx)
        assert out.ok, out

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
    return n / (time.perf_counter() - start)


def _measure(ray_plane: bool, work: Any) -> float:
    return anyio.run(_plane_run, ray_plane, work)


def run(quick: bool, rounds: int) -> list[Figure]:
    """Per-call overhead, and CPU-bound throughput at N = 1, 2, 4, Ray executor against the local pool."""
    try:
        import ray
    except ImportError:
        print("  ray_executor: skipped, Ray is not installed (pip install 'agentctl[ray]')", file=sys.stderr)
        return []
    from agentctl.services.ray_plane import connect

    cores = os.cpu_count() or 1
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
             object_store_memory=100 * 1024 * 1024)
    try:
        connect("local")  # already connected: a no-op, as in a run
        _measure(True, functools.partial(_throughput, cores * 2, 0.01))  # start the workers before timing
        per_call = alternate(rounds, {"ray": functools.partial(_measure, True, _per_call_ms),
                                      "local": functools.partial(_measure, False, _per_call_ms)})
        figures = [figure("trivial tool call, Ray executor", "ms", per_call["ray"], "local tool pool",
                          per_call["local"], None, higher=False,
                          note=f"{CALLS} calls in a row; the ratio is local ms / Ray ms (below 1: Ray costs more)")]
        for n in (1, 2, 4):
            rates = alternate(rounds, {
                "ray": functools.partial(_measure, True, functools.partial(_throughput, n, SPIN_SECONDS)),
                "local": functools.partial(_measure, False, functools.partial(_throughput, n, SPIN_SECONDS)),
            })
            load = os.getloadavg()[0]
            figures.append(figure(f"CPU-bound tool (200 ms CPU), N={n} at once", "/s", rates["ray"],
                                  "local tool pool, same N", rates["local"], None,
                                  note=f"{cores} cores, one Ray node, load average {load:.1f}; "
                                       f"ideal on an idle machine: Ray min(N, {cores}) / 0.2 s, local pool 1 / 0.2 s"))
        return figures
    finally:
        ray.shutdown()
