"""Resume time with a checkpoint: flat from a short log to a long one, and flat in a live
agent's history.

Synthetic run logs (ten live tasks under a root; under them batch agents whose workers
make tool calls and finish, each task's last batch still running) of N and 100N events; a
checkpoint is written 100 events before the end by the ``Checkpointer``, with the snapshots
the runtime takes of the live agents (the tasks, each with its running batch as a live
child), as in a real run; the figure is the time ``load_resumed`` takes (find the newest
checkpoint, bisect the log to it, fold the tail), long log against short.

A live agent's history: a script agent takes and frees a lock H times (2H steps, each an
outcome in its journal) and then waits; the runtime records it in a real log, with a
checkpoint taken as it waits (with the agent's snapshot, or without: the journal only). The
figure is what resume costs, ``load_resumed`` plus starting the agent again until it is
caught up (restored from its snapshot, or its 2H steps replayed), at H = 50,000 against 500.
"""

from __future__ import annotations

import tempfile
import time
from functools import partial
from pathlib import Path

import anyio
import orjson

from agentctl.agents.factory import spec_for_task
from agentctl.agents.script import script_codec, script_step
from agentctl.cli.resume import load_resumed
from agentctl.events.checkpoint import Checkpointer
from agentctl.events.fold import RunState, apply, fold
from agentctl.events.log import open_event_log
from agentctl.events.reader import read_events
from agentctl.plan.model import Step, Task
from agentctl.runtime import AgentSpec, open_runtime
from agentctl.runtime.resume_state import ResumeContext

from .harness import Figure, alternate, figure

#: Task agents under the root; batch ``i`` belongs to task ``i % TASKS``.
TASKS = 10
WORKERS = 30
#: Events of one batch: its spawn, per worker a spawn, 3 calls (request and result) and an
#: end, and its own end.
PER_BATCH = 2 + WORKERS * 8
HEAD = 2 + TASKS


def _batches(n: int) -> int:
    """How many batches a log of ``n`` events holds (the last ``TASKS`` are still running)."""
    return max(TASKS, -(-(n - 300 - HEAD) // PER_BATCH))


def _events(n: int):
    seq = 0

    def ev(type: str, agent: str | None, **fields: object) -> dict:
        nonlocal seq
        seq += 1
        return {"seq": seq, "t": seq, "run_id": "bench", "type": type, "agent_id": agent, **fields}

    yield ev("run/started", None, pid=1, version="0", durability="batch", workspace="/w", plan=None)
    yield ev("agent/spawned", "root", parent_id=None, depth=0, model=None, kind="plan", tools=[], budget={}, restart="temporary")
    for t in range(TASKS):
        yield ev("agent/spawned", f"task{t}", parent_id="root", depth=1, model=None, kind="script", tools=["fs/write"],
                 budget={}, restart="transient")
    batches = _batches(n)
    for i in range(batches):
        # A batch agent under a task spawns workers that do the work and finish, then it
        # finishes too (all but each task's last, still waiting when the log ends): the log
        # grows, and so would the tasks' journals, a spawn record per batch, but for snapshots.
        b = f"b{i}"
        yield ev("agent/spawned", b, parent_id=f"task{i % TASKS}", depth=2, model=None, kind="script", tools=[],
                 budget={}, restart="transient")
        for w in range(WORKERS):
            a = f"{b}.{w}"
            yield ev("agent/spawned", a, parent_id=b, depth=3, model=None, kind="script", tools=["fs/write"],
                     budget={}, restart="transient")
            for k in range(3):
                yield ev("tool/requested", a, call_id=f"{a}.{k}", tool="fs/write", arguments={"path": f"{a}/{k}"})
                yield ev("tool/result", a, call_id=f"{a}.{k}", tool="fs/write", ok=True, error=None,
                         result={"bytes": 1}, duration_ms=0.1)
            yield ev("agent/done", a, status="ok", result=None, reason=None, steps=4)
        if i < batches - TASKS:
            yield ev("agent/done", b, status="ok", result=None, reason=None, steps=31)
    while seq < n:
        yield ev("agent/status", "task0", status="waiting", reason="idle", steps=1)


def _task(t: int, batches: int) -> AgentSpec:
    """The script of task ``t`` as the log has it run: a spawn step per batch, then a wait."""
    wait = Step("wait", {"kind": "go", "timeout": None})
    steps = [Step("spawn", Task(f"b{i}", "script", steps=(
        *(Step("spawn", Task(f"b{i}.{w}", "script", steps=tuple(Step("write", {"path": f"b{i}.{w}/{k}", "content": "x"})
                                                              for k in range(3)))) for w in range(WORKERS)),
        wait))) for i in range(t, batches, TASKS)]
    return spec_for_task(Task(f"task{t}", "script", tools=("fs/write",), steps=(*steps, wait)))


def _make_run(d: Path, n: int, *, snapshots: bool = True) -> None:
    d.mkdir()
    events = list(_events(n))
    with open(d / "events.jsonl", "wb") as f:
        f.writelines(orjson.dumps(e) + b"\n" for e in events)
    state = RunState()
    cut = len(events) - 100
    for e in events[:cut]:
        apply(state, e)
    anyio.run(_checkpoint, d, state, _batches(n), snapshots)


async def _checkpoint(d: Path, state: RunState, batches: int, snapshots: bool) -> None:
    """The checkpoint a run in that state writes: the ``Checkpointer``'s, with the runtime's
    snapshots of its live agents (unless ``snapshots`` is false: the journals whole). The
    runtime gets the agents there as a resume would, each task replaying its journal (its
    running batch started again with its own)."""

    async def durable(seq: int) -> None:
        return None

    # A worker still running at the checkpoint runs again, writing into the run's workspace.
    (d / "ws").mkdir()
    async with open_runtime(lambda *a, **k: {"t": 0}, workspace=d / "ws",
                            resume=ResumeContext(state.journals, parents=state.parents())) as rt:
        for t in range(TASKS):
            rt.spawn(_task(t, batches), journal=state.journals.get(f"task{t}"))
        for i in range(batches - TASKS, batches):
            await _caught_up(rt, f"b{i}")
        for t in range(TASKS):
            await _caught_up(rt, f"task{t}")
        ckpt = Checkpointer(d, durable, state=state)
        ckpt.snapshots = rt.snapshots if snapshots else None
        await ckpt.checkpoint()
        assert all((state.journals.get(f"task{t}").snapshot is not None) == snapshots  # type: ignore[union-attr]
                   for t in range(TASKS))
        for t in range(TASKS):
            rt.stop(f"task{t}", "shutdown")


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
        logs = {"small": small, "big": big, "big, no snapshots": big}
        for name, n in logs.items():
            _make_run(Path(tmp) / name, n, snapshots="no snapshots" not in name)
        runs = max(rounds, 3)
        # Milliseconds each: many rounds, the runs in turn, so that a busy moment of a
        # shared machine falls on every side alike.
        loads = alternate(max(rounds, 15), {
            **{name: partial(_time, Path(tmp) / name) for name in logs},
            "tail small": partial(_tail, Path(tmp) / "small"), "tail big": partial(_tail, Path(tmp) / "big")})
        t_small, t_big, tail_small, tail_big = loads["small"], loads["big"], loads["tail small"], loads["tail big"]
        short, long = (500, 10_000) if quick else (500, 50_000)
        histories = (("short", short, True), ("long", long, True), ("long, no snapshot", long, False))
        for name, pairs, snapshots in histories:
            d = Path(tmp) / f"agent-{name}"
            anyio.run(_record_history, d, pairs, snapshots)
            _resume_time(d, pairs)  # warm: the first runtime of the process pays for imports
        agent = alternate(max(rounds, 9), {name: partial(_resume_time, Path(tmp) / f"agent-{name}", pairs)
                                           for name, pairs, snapshots in histories if snapshots})
        agent["long, no snapshot"] = sorted(_resume_time(Path(tmp) / "agent-long, no snapshot", long)
                                            for _ in range(runs))[runs // 2]
    return [
        figure(f"resume, log part: {big:,} vs {small:,} events", "ms", tail_big * 1000, f"{small:,}-event log",
               tail_small * 1000, 0.67, higher=False, note="bisect to the checkpoint + fold the tail; 1.0 = flat"),
        figure(f"resume, total: {big:,} vs {small:,} events", "ms", t_big * 1000, f"{small:,}-event log",
               t_small * 1000, 0.67, higher=False,
               note="the checkpoint holds live agents' snapshots (each task's, its running batch as a live "
                    "child) and what their journals logged since; without snapshots (a spawn record per batch "
                    f"in each task's journal): {loads['big, no snapshots'] * 1000:,.1f} ms"),
        figure(f"resume, a live agent's history: {2 * long:,} vs {2 * short:,} steps", "ms", agent["long"] * 1000,
               f"{2 * short:,}-step history", agent["short"] * 1000, 0.67, higher=False,
               note=f"load + restart until caught up, from its snapshot; without one (the journal replayed): "
                    f"{agent['long, no snapshot'] * 1000:,.1f} ms"),
    ]
