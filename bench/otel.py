"""What ``--otel`` costs the append path: events emitted with the live trace subscribed.

Baseline: the same log and events without it, in the same run. The receiver is one that is
down (a closed port): the translator runs in the loop, the SDK's span objects are built in
the trace's thread and the exporter's retries in the SDK's, all in this process, so it is
the cost a run pays whatever the receiver does. Wall rates swing with the machine's load, so
CPU time per event is reported too (the emitting thread's, and every thread's). Needs the
``otel`` extra (skipped without).
The events are ``event_log``'s mix: one in four ends a tool call (a span each), plus spawns and ends.
"""

from __future__ import annotations

import socket
import tempfile
import time
from pathlib import Path
from statistics import median

import anyio

from agentctl.events.log import open_event_log

from .event_log import BATCH, _event
from .harness import Figure, alternate_samples, figure


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _emit(n: int, path: Path, traced: bool) -> tuple[float, float, float]:
    """Events per second of wall time while emitting, and CPU seconds per event: the emitting
    thread's, and the whole process's (every thread: the trace's and the SDK's too) until the
    trace is closed."""
    from agentctl.cli.otel import LiveTrace, OtelConfig

    path.unlink(missing_ok=True)
    trace = LiveTrace(OtelConfig(f"http://127.0.0.1:{_closed_port()}/v1/traces")) if traced else None
    start, cpu, own = time.perf_counter(), time.process_time(), time.thread_time()
    async with open_event_log(path, "bench", durability="none") as log:
        if trace is not None:
            log.subscribe(trace.feed)
        for i in range(n):
            kind, agent, fields = _event(i)
            log.emit(kind, agent, fields)
            if i % BATCH == 0:
                await anyio.sleep(0)
    rate, own = n / (time.perf_counter() - start), time.thread_time() - own
    if trace is not None:
        await anyio.to_thread.run_sync(trace.close)
    return rate, own / n, (time.process_time() - cpu) / n


def run(quick: bool, rounds: int) -> list[Figure]:
    """The emit rate and the CPU time per event with the live trace, against without."""
    from agentctl.cli.otel import sdk_installed

    if not sdk_installed():
        print("  otel: skipped (pip install -e '.[otel]')")
        return []
    n = 20_000 if quick else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        samples = alternate_samples(rounds, {
            "off": lambda: anyio.run(_emit, n, path, False),
            "on": lambda: anyio.run(_emit, n, path, True),
        })
    on, off = ([median(s[k] for s in samples[name]) for k in range(3)] for name in ("on", "off"))
    note = "context only: one event in four ends a tool call (a span); receiver down"
    return [figure(f"emit {n:,} events with --otel", "/s", on[0], "without --otel", off[0], None, note=note),
            figure("CPU per event, emitting thread", "us", on[1] * 1e6, "without --otel", off[1] * 1e6, None,
                   higher=False, note="time.thread_time of the loop that emits"),
            figure("CPU per event, whole process", "us", on[2] * 1e6, "without --otel", off[2] * 1e6, None,
                   higher=False, note="time.process_time, every thread, until the trace is closed")]
