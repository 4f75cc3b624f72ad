"""Start-up: ``agentctl --version`` and ``agentctl --help`` against importing typer + rich.

Every command pays the CLI's start-up, so it must cost little more than the libraries
the CLI is made of. Each figure is the median CPU time (user + system) of a fresh
process, taken in alternating rounds with the baseline ``python -c "import typer, rich"``
(same interpreter, same run). CPU time rather than wall time: on a shared machine a
process's wall time is mostly its wait for a core. Issue 14's target: within 1.5x.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

from .harness import Figure, alternate, figure

AGENTCTL = str(Path(sys.executable).parent / "agentctl")
BASELINE = [sys.executable, "-c", "import typer, rich"]


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def _timer(argv: list[str]) -> float:
    """CPU seconds (user + system) a fresh process running ``argv`` used."""
    before = _cpu(resource.getrusage(resource.RUSAGE_CHILDREN))
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return _cpu(resource.getrusage(resource.RUSAGE_CHILDREN)) - before


def run(quick: bool, rounds: int) -> list[Figure]:
    """Median start-up CPU time of ``--version`` and ``--help`` against the typer + rich import."""
    medians = alternate(max(rounds, 5) * (2 if quick else 4), {
        "baseline": lambda: _timer(BASELINE),
        "version": lambda: _timer([AGENTCTL, "--version"]),
        "help": lambda: _timer([AGENTCTL, "--help"]),
        "run_help": lambda: _timer([AGENTCTL, "run", "--help"]),
    })
    base = medians["baseline"] * 1000
    target = round(1 / 1.5, 3)
    return [
        figure("start-up: agentctl --version", "ms", medians["version"] * 1000, "import typer, rich", base, target,
               higher=False, note="CPU ms of a fresh process; ratio = baseline / agentctl; target 1/1.5"),
        figure("start-up: agentctl --help", "ms", medians["help"] * 1000, "import typer, rich", base, target,
               higher=False),
        figure("start-up: agentctl run --help", "ms", medians["run_help"] * 1000, "import typer, rich", base, None,
               higher=False, note="context, no target: typer 0.29 imports pydantic to coerce a command's parameters"),
    ]
