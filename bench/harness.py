"""The benchmark harness: alternating rounds, medians, ratios against a baseline.

Every workload measures agentctl and its baseline (and peers, where installed) in the
same process run, alternating, for several rounds, and reports medians. Figures are
ratios against a baseline measured in the same run; where an issue sets an absolute bound
instead (idle CPU, reconcile latency) that bound stands in as the baseline, and says so.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from typing import Any, TypeVar

import anyio
import anyio.abc

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Figure:
    """One workload's result, as printed and as ``--json``.

    ``ratio`` is value / baseline_value when higher is better (``higher=True``), else
    baseline_value / value, so a ratio above 1 always means agentctl did better.
    ``target`` is the ratio the issue asks for; ``None`` (and ``met`` ``None``) for a
    figure reported for context only.
    """

    name: str
    value: float
    unit: str
    baseline: str
    baseline_value: float
    ratio: float
    target: float | None
    met: bool | None
    peers: dict[str, float]
    note: str = ""


def figure(name: str, unit: str, ours: float, baseline: str, base: float, target: float | None, *,
           higher: bool = True, peers: dict[str, float] | None = None, note: str = "") -> Figure:
    """Build a :class:`Figure` from medians."""
    ratio = (ours / base if higher else base / ours) if ours and base else 0.0
    met = None if target is None else ratio >= target
    return Figure(name, round(ours, 2), unit, baseline, round(base, 2), round(ratio, 3), target, met,
                  {k: round(v, 2) for k, v in (peers or {}).items()}, note)


def alternate_samples(rounds: int, runners: dict[str, Callable[[], T]]) -> dict[str, list[T]]:
    """Run each runner once per round, in turn, and return each one's results.

    Every other round takes them in the opposite order, so that none always runs first
    (on a warming or cooling machine, going first is an advantage or a handicap)."""
    samples: dict[str, list[T]] = {name: [] for name in runners}
    order = list(runners.items())
    for round_ in range(rounds):
        for name, run in order if round_ % 2 == 0 else reversed(order):
            samples[name].append(run())
    return samples


def alternate(rounds: int, runners: dict[str, Callable[[], float]]) -> dict[str, float]:
    """Run each runner once per round, in turn, and return each one's median."""
    return {name: statistics.median(values) for name, values in alternate_samples(rounds, runners).items()}


async def stop_server(server: anyio.abc.Process, grace: float = 5.0) -> None:
    """End a bench's server process: SIGTERM, then SIGKILL if it has not exited within
    ``grace`` seconds, so that a server stuck on the way out neither hangs the bench nor
    is left behind."""
    server.terminate()
    with anyio.move_on_after(grace):
        await server.wait()
        return
    server.kill()
    await server.wait()


def machine() -> dict[str, Any]:
    """Facts printed with the results."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    versions = {}
    for pkg in ("agentctl", "anyio", "orjson", "pykka", "autogen-core"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return {"cores": os.cpu_count(), "cpu": cpu, "python": sys.version.split()[0],
            "platform": platform.platform(), **versions}


def report(figures: list[Figure], *, as_json: bool) -> None:
    """Print the figures: a table, or one JSON object per line."""
    if as_json:
        for f in figures:
            print(json.dumps(asdict(f)))
        return
    print(f"{'workload':<42} {'agentctl':>14} {'baseline':>24} {'ratio':>7} {'target':>7}  met")
    for f in figures:
        base = f"{f.baseline_value:,.1f} ({f.baseline})"
        target = "-" if f.target is None else f"{f.target:.2f}"
        met = "-" if f.met is None else ("yes" if f.met else "NO")
        print(f"{f.name:<42} {f.value:>10,.1f} {f.unit:<4}{base:>24} {f.ratio:>7.2f} {target:>7}  {met}")
        for peer, value in f.peers.items():
            print(f"{'':<42} {'':>14} {value:>14,.1f} ({peer})")
        if f.note:
            print(f"{'':<42} {f.note}")
