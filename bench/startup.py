"""Start-up: ``agentctl --version`` and ``agentctl --help`` against importing typer + rich.

Every command pays the CLI's start-up, so it must cost little more than the libraries
the CLI is made of. Each figure is the median CPU time (user + system) of a fresh
process, taken in alternating rounds with the baseline ``python -c "import typer, rich"``
(same interpreter, same run). CPU time rather than wall time: on a shared machine a
process's wall time is mostly its wait for a core. Issue 14's target: within 1.5x.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from .harness import Figure, alternate, figure

AGENTCTL = str(Path(sys.executable).parent / "agentctl")
BASELINE = [sys.executable, "-c", "import typer, rich"]


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def _timer(argv: list[str], *, cwd: str | None = None, env: dict[str, str] | None = None) -> float:
    """CPU seconds (user + system) a fresh process running ``argv`` used."""
    before = _cpu(resource.getrusage(resource.RUSAGE_CHILDREN))
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd, env=env)
    return _cpu(resource.getrusage(resource.RUSAGE_CHILDREN)) - before


def _tab(line: str, cwd: str) -> float:
    """CPU seconds of the completion bash asks for at the end of ``line`` (a Tab)."""
    words = line.split()
    env = {**os.environ, "_AGENTCTL_COMPLETE": "complete_bash", "COMP_WORDS": line,
           "COMP_CWORD": str(len(words) if line.endswith(" ") else len(words) - 1)}
    return _timer([AGENTCTL], cwd=cwd, env=env)


def _runs(root: Path, n: int) -> None:
    """``n`` run directories under ``root/.agentctl/runs``, each with a one-event log."""
    for i in range(n):
        run = root / ".agentctl" / "runs" / f"20261202-{i:06d}-cccccc"
        run.mkdir(parents=True)
        (run / "events.jsonl").write_text(f'{{"seq":1,"t":1,"run_id":"{run.name}","type":"run/started"}}\n')


def run(quick: bool, rounds: int) -> list[Figure]:
    """Median start-up CPU time of ``--version`` and ``--help`` against the typer + rich import,
    and of a Tab completing run ids against one completing command names."""
    with tempfile.TemporaryDirectory() as project:
        _runs(Path(project), 200)
        medians = alternate(max(rounds, 5) * (2 if quick else 4), {
            "baseline": lambda: _timer(BASELINE),
            "version": lambda: _timer([AGENTCTL, "--version"]),
            "help": lambda: _timer([AGENTCTL, "--help"]),
            "run_help": lambda: _timer([AGENTCTL, "run", "--help"]),
            "tab_commands": lambda: _tab("agentctl l", project),
            "tab_runs": lambda: _tab("agentctl logs 2026", project),
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
        figure("Tab: agentctl logs 2026<Tab>, 200 runs", "ms", medians["tab_runs"] * 1000, "Tab: command names",
               medians["tab_commands"] * 1000, round(1 / 1.25, 3), higher=False,
               note="CPU ms; run ids listed without importing the views; target within 1.25x"),
    ]
