"""Spawning idle agents: rate, RSS per agent, idle CPU and the longest GC pause.

The agentctl side emits its events (spawned, status) into an in-memory log, so RSS counts
agents, not a file's page cache. Each side runs in a fresh subprocess (``python -m bench.spawn --child SIDE N``) so RSS
is measured from a clean start. Baseline: bare anyio tasks, each waiting on its own
memory stream (an inbox). Both sides call ``gc.collect(); gc.freeze()`` after the bulk
spawn, before RSS and idle CPU are read (the GC pause is measured before that), and both
run with the cyclic GC otherwise on. agentctl's runtime also freezes every 10,000 spawns
on its own (``agentctl.runtime.tree.FREEZE_EVERY``); that is part of what is measured.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time

import anyio
import psutil

from .harness import Figure, alternate, figure


class _Pauses:
    """The longest GC pause seen (gc.callbacks)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._start = 0.0
        gc.callbacks.append(self._on)

    def _on(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.longest = max(self.longest, time.perf_counter() - self._start)

    def stop(self) -> float:
        """Stop watching (so the explicit ``gc.collect`` after the spawn is not counted); the longest pause."""
        gc.callbacks.remove(self._on)
        return self.longest


async def _ours(n: int) -> dict:
    from agentctl.events.log import open_event_log
    from agentctl.runtime import AgentSpec, open_runtime

    def idle(ctx: object) -> list:
        return []

    async with open_event_log(None, "bench", durability="none") as log:
        async with open_runtime(log.emit) as rt:
            rss0, pauses = psutil.Process().memory_info().rss, _Pauses()
            start = time.perf_counter()
            for i in range(n):
                rt.spawn(AgentSpec(f"a{i}", idle))
            while rt.statistics().ready:
                await anyio.sleep(0)
            elapsed = time.perf_counter() - start
            return await _settle(n, elapsed, rss0, pauses)


async def _bare(n: int) -> dict:
    started = 0
    all_started = anyio.Event()

    async def agent(receive: object) -> None:
        nonlocal started
        started += 1
        if started == n:
            all_started.set()
        async for _ in receive:  # type: ignore[attr-defined]
            pass

    async with anyio.create_task_group() as tg:
        rss0, pauses = psutil.Process().memory_info().rss, _Pauses()
        start = time.perf_counter()
        keep = []
        for _ in range(n):
            send, receive = anyio.create_memory_object_stream[object](256)
            keep.append(send)
            tg.start_soon(agent, receive)
        # Spawned means running and waiting on its inbox, as an agentctl agent is after its first step.
        await all_started.wait()
        elapsed = time.perf_counter() - start
        result = await _settle(n, elapsed, rss0, pauses)
        tg.cancel_scope.cancel()
    return result


async def _settle(n: int, elapsed: float, rss0: int, pauses: _Pauses) -> dict:
    longest = pauses.stop()
    gc.collect()
    gc.freeze()
    rss = psutil.Process().memory_info().rss - rss0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await anyio.sleep(2.0)
    idle = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    return {"rate": n / elapsed, "rss": rss / n, "idle_cpu": idle, "gc_pause": longest}


def _child(side: str, n: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.spawn", "--child", side, str(n)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def run(quick: bool, rounds: int) -> list[Figure]:
    """Spawn rate, RSS per agent, idle CPU and GC pauses at 10k (quick) or 100k agents."""
    n = 10_000 if quick else 100_000
    results: dict[str, list[dict]] = {"agentctl": [], "anyio": []}

    def sample(side: str) -> float:
        r = _child(side, n)
        results[side].append(r)
        return r["rate"]

    rates = alternate(rounds, {"agentctl": lambda: sample("agentctl"), "anyio": lambda: sample("anyio")})
    med = {side: {k: sorted(r[k] for r in rs)[len(rs) // 2] for k in rs[0]} for side, rs in results.items()}
    ours, base = med["agentctl"], med["anyio"]
    return [
        figure(f"spawn {n:,} idle agents", "/s", rates["agentctl"], "anyio tasks+inbox", rates["anyio"], 2.0),
        figure(f"RSS per idle agent ({n:,})", "B", ours["rss"], "anyio tasks+inbox", base["rss"], 1.0, higher=False),
        figure(f"idle CPU, {n:,} agents", "%", ours["idle_cpu"] * 100, "1% of a core", 1.0, 1.0, higher=False,
               note=f"bare anyio: {base['idle_cpu'] * 100:.2f}%"),
        figure(f"longest GC pause during {n:,} spawns", "ms", ours["gc_pause"] * 1000, "anyio tasks+inbox",
               base["gc_pause"] * 1000, None, higher=False,
               note="no target in the issue; agentctl's runtime calls gc.freeze() every 10,000 spawns itself"),
    ]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        side, count = sys.argv[2], int(sys.argv[3])
        print(json.dumps(anyio.run(_ours if side == "agentctl" else _bare, count)))
