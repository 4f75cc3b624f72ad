"""Start-up: ``agentctl --version`` and ``agentctl --help`` against importing typer + rich.

Every command pays the CLI's start-up, so it must cost little more than the libraries
the CLI is made of. Each figure is the median wall time of a fresh process, taken in
alternating rounds with the baseline ``python -c "import typer, rich"`` (same
interpreter, same run). Issue 14's target: within 1.5x of the baseline.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from .harness import Figure, alternate, figure

AGENTCTL = str(Path(sys.executable).parent / "agentctl")
BASELINE = [sys.executable, "-c", "import typer, rich"]


def _timer(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def run(quick: bool, rounds: int) -> list[Figure]:
    """Median start-up of ``--version`` and ``--help`` against the typer + rich import."""
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
               higher=False, note="fresh process each; ratio = baseline time / agentctl time; target 1/1.5"),
        figure("start-up: agentctl --help", "ms", medians["help"] * 1000, "import typer, rich", base, target,
               higher=False),
        figure("start-up: agentctl run --help", "ms", medians["run_help"] * 1000, "import typer, rich", base, None,
               higher=False, note="context, no target: typer 0.29 imports pydantic to coerce a command's parameters"),
    ]
