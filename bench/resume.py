"""Resume time with a checkpoint: flat from a short log to a long one, and flat in a live
agent's history.

Synthetic run logs (ten live tasks under a root; under them batch agents whose workers
make tool calls and finish) of N and 100N events; a checkpoint is written 100 events before
the end, as the checkpointer would; the figure is the time ``load_resumed`` takes (find
the newest checkpoint, bisect the log to it, fold the tail), long log against short.

A live agent's history: a script agent takes and frees a lock H times (2H steps, each an
outcome in its journal) and then waits; the runtime records it in a real log, with a
checkpoint taken as it waits (with the agent's snapshot, or without: the journal only). The
figure is what resume costs, ``load_resumed`` plus starting the agent again until it is
caught up (restored from its snapshot, or its 2H steps replayed), at H = 50,000 against 500.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import anyio
import orjson

from agentctl.agents.script import script_codec, script_step
from agentctl.cli.resume import load_resumed
from agentctl.events.checkpoint import Checkpointer, _snapshot, write_checkpoint
from agentctl.events.fold import RunState, apply, fold
from agentctl.events.log import open_event_log
from agentctl.events.reader import read_events
from agentctl.plan.model import Step
from agentctl.runtime import AgentSpec, open_runtime
from agentctl.runtime.resume_state import ResumeContext

from .harness import Figure, figure


def _events(n: int):
    seq = 0

    def ev(type: str, agent: str | None, **fields: object) -> dict:
        nonlocal seq
        seq += 1
        return {"seq": seq, "t": seq, "run_id": "bench", "type": type, "agent_id": agent, **fields}

    yield ev("run/started", None, pid=1, version="0", durability="batch", workspace="/w", plan=None)
    yield ev("agent/spawned", "root", parent_id=None, depth=0, model=None, kind="plan", tools=[], budget={}, restart="temporary")
    for t in range(10):
        yield ev("agent/spawned", f"task{t}", parent_id="root", depth=1, model=None, kind="script", tools=["fs/write"],
                 budget={}, restart="transient")
    i = 0
    while seq < n - 300:
        # A batch agent under a task spawns workers that do the work and finish, then it
        # finishes too: the log grows, the live agents' histories (journals) barely do.
        b = f"b{i}"
        i += 1
        yield ev("agent/spawned", b, parent_id=f"task{i % 10}", depth=2, model=None, kind="script", tools=[],
                 budget={}, restart="transient")
        for w in range(30):
            a = f"{b}.{w}"
            yield ev("agent/spawned", a, parent_id=b, depth=3, model=None, kind="script", tools=["fs/write"],
                     budget={}, restart="transient")
            for k in range(3):
                yield ev("tool/requested", a, call_id=f"{a}.{k}", tool="fs/write", arguments={"path": f"{a}/{k}"})
                yield ev("tool/result", a, call_id=f"{a}.{k}", tool="fs/write", ok=True, error=None,
                         result={"bytes": 1}, duration_ms=0.1)
            yield ev("agent/done", a, status="ok", result=None, reason=None, steps=4)
        yield ev("agent/done", b, status="ok", result=None, reason=None, steps=31)
    while seq < n:
        yield ev("agent/status", "task0", status="waiting", reason="idle", steps=1)


def _make_run(d: Path, n: int) -> None:
    d.mkdir()
    events = list(_events(n))
    with open(d / "events.jsonl", "wb") as f:
        f.writelines(orjson.dumps(e) + b"\n" for e in events)
    state = RunState()
    cut = len(events) - 100
    for e in events[:cut]:
        apply(state, e)
    write_checkpoint(d, cut, _snapshot(state))


def _time(d: Path) -> float:
    start = time.perf_counter()
    resumed = load_resumed(d)
    assert resumed is not None and resumed.checkpoint is not None
    return time.perf_counter() - start


def _tail(d: Path) -> float:
    """Just the log's part: bisect to the checkpoint, read and fold the tail."""
    start = time.perf_counter()
    fold(read_events(d / "events.jsonl", start_seq=max(_read_seq(d)) + 1))
    return time.perf_counter() - start


def _read_seq(d: Path) -> list[int]:
    return [int(p.stem.split("-")[1]) for p in (d / "checkpoints").glob("ckpt-*.json")]


def _worker(pairs: int) -> AgentSpec:
    steps = [Step("lock", {"path": "p", "mode": "write", "timeout": 0.0}), Step("unlock", "p")] * pairs
    steps.append(Step("wait", {"kind": "go", "timeout": None}))
    return AgentSpec("worker", script_step(steps, lambda task: AgentSpec("never", lambda ctx: [])), kind="script",
                     state_codec=script_codec(steps))


async def _caught_up(rt: object, agent_id: str) -> None:
    # The worker is caught up once it waits for its message again (its replay over).
    while (rt.info(agent_id) or {}).get("status") != "waiting":  # type: ignore[attr-defined]
        await anyio.sleep(0.001)


async def _record_history(d: Path, pairs: int, snapshots: bool) -> None:
    d.mkdir()
    async with open_event_log(d / "events.jsonl", "bench", durability="none") as log:
        ckpt = Checkpointer(d, log.flushed, every_events=1 << 60, every_seconds=1e9)
        log.subscribe(ckpt.feed)
        log.emit("run/started", None, pid=1, version="0", durability="none", workspace=str(d), plan=None)
        async with open_runtime(log.emit) as rt:
            if snapshots:
                ckpt.snapshots = rt.snapshots
            rt.spawn(_worker(pairs))
            await _caught_up(rt, "worker")
            await ckpt.checkpoint()
            rt.stop("worker", "shutdown")


def _resume_time(d: Path, pairs: int) -> float:
    spec = _worker(pairs)

    async def resume() -> float:
        start = time.perf_counter()
        resumed = load_resumed(d)
        assert resumed is not None and resumed.checkpoint is not None
        async with open_runtime(lambda *a, **k: {"t": 0}, resume=ResumeContext(resumed.journals)) as rt:
            rt.spawn(spec, journal=resumed.journals.get("worker"))
            await _caught_up(rt, "worker")
            return time.perf_counter() - start

    return anyio.run(resume)


def run(quick: bool, rounds: int) -> list[Figure]:
    """Resume time at 100N events against N (1.0 = flat); a live agent's, at 100H steps against H."""
    small, big = (10_000, 200_000) if quick else (10_000, 1_000_000)
    with tempfile.TemporaryDirectory() as tmp:
        _make_run(Path(tmp) / "small", small)
        _make_run(Path(tmp) / "big", big)
        runs = max(rounds, 3)
        t_small = sorted(_time(Path(tmp) / "small") for _ in range(runs))[runs // 2]
        t_big = sorted(_time(Path(tmp) / "big") for _ in range(runs))[runs // 2]
        tail_small = sorted(_tail(Path(tmp) / "small") for _ in range(runs))[runs // 2]
        tail_big = sorted(_tail(Path(tmp) / "big") for _ in range(runs))[runs // 2]
        short, long = (500, 10_000) if quick else (500, 50_000)
        agent: dict[str, float] = {}
        for name, pairs, snapshots in (("short", short, True), ("long", long, True), ("long, no snapshot", long, False)):
            d = Path(tmp) / f"agent-{name}"
            anyio.run(_record_history, d, pairs, snapshots)
            _resume_time(d, pairs)  # warm: the first runtime of the process pays for imports
            agent[name] = sorted(_resume_time(d, pairs) for _ in range(runs))[runs // 2]
    return [
        figure(f"resume, log part: {big:,} vs {small:,} events", "ms", tail_big * 1000, f"{small:,}-event log",
               tail_small * 1000, 0.67, higher=False, note="bisect to the checkpoint + fold the tail; 1.0 = flat"),
        figure(f"resume, total: {big:,} vs {small:,} events", "ms", t_big * 1000, f"{small:,}-event log",
               t_small * 1000, 0.67, higher=False,
               note="the checkpoint holds live agents' journals, which grow with what they did "
                    "(here a spawn record per batch), not with the log"),
        figure(f"resume, a live agent's history: {2 * long:,} vs {2 * short:,} steps", "ms", agent["long"] * 1000,
               f"{2 * short:,}-step history", agent["short"] * 1000, 0.67, higher=False,
               note=f"load + restart until caught up, from its snapshot; without one (the journal replayed): "
                    f"{agent['long, no snapshot'] * 1000:,.1f} ms"),
    ]
