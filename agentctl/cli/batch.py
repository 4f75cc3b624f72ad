"""``agentctl batch PLAN... [--param name=v1,v2] [--parallel N] [--ray ADDRESS]``: many runs, one summary.

Each run is a normal ``agentctl run`` with its own run directory (``.agentctl/runs/<batch>-NN``,
so ``ps``, ``logs`` and ``replay`` see it) and its own workspace
(``.agentctl/batches/<batch>/NN-<plan>/``). ``--param name=v1,v2`` runs every plan once per
value (several ``--param``: every combination), with ``${name}`` in the plan's text replaced
by the value; the filled-in copies are kept in the batch directory. Runs go on this machine,
at most ``--parallel`` at once, or with ``--ray`` as Ray tasks on a cluster
(:mod:`agentctl.cli.batch_ray`). Progress: on a terminal a live table, one row per run
drawn from its own log (:mod:`agentctl.views.batch`); otherwise, or with ``-o plain``, a
plain line on stderr as each run starts and ends (``-o json``: as each ends). Then a table
(or ``-o json``) of every run's outcome, duration, tokens and failures. Exit code: 0 every
run ok, 1 any run not ok, 2 bad input (nothing run), 130 stopped by Ctrl-C or SIGTERM (each
running run stopped as Ctrl-C stops it, so resumable; a second one kills them).
"""

from __future__ import annotations

import functools
import itertools
import re
import time
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from ..errors import PlanError
from .complete import complete_plan
from .errors import EXIT_INTERRUPTED, fail_plan, fail_usage
from .jsonout import print_json

if TYPE_CHECKING:
    from .batch_jobs import Job, Outcome, Stop

_PARAM = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
BATCHES = Path(".agentctl") / "batches"
RUNS = Path(".agentctl") / "runs"


class BatchOutput(str, Enum):
    """What ``batch`` prints: the live table on a terminal (text), plain lines, or one JSON object."""

    text = "text"
    plain = "plain"
    json = "json"


def batch_command(
    plans: list[Path] = typer.Argument(..., metavar="PLAN...", help="Plan files to run (each once per parameter combination).", autocompletion=complete_plan),
    param: list[str] = typer.Option([], "--param", metavar="NAME=V1,V2", help="NAME=V1,V2,...: run each plan once per value, ${NAME} in its text replaced (repeatable: every combination)."),
    parallel: int = typer.Option(4, "--parallel", metavar="N", help="Runs at once (on a cluster: at most this many submitted at once)."),
    ray: Optional[str] = typer.Option(None, "--ray", metavar="ADDRESS", help="Run each run as a Ray task on this cluster: auto, local, HOST:PORT or ray://HOST:PORT (needs agentctl[ray])."),
    workspace: Optional[Path] = typer.Option(None, "--workspace", metavar="DIR", help="One workspace for every run [default: a directory of its own per run]."),
    output: BatchOutput = typer.Option(BatchOutput.text, "-o", "--output", metavar="text|plain|json", help="text: a live table on a terminal (plain lines elsewhere), then the summary table; plain: plain lines as runs start and end, then the table; json: one object (keys in docs/cli.md)."),
) -> None:
    """Run many plans, or one plan over many parameters.

    Each is a normal run with its own run directory; a table of outcomes follows.
    Exit 0 every run ok, 1 any not ok, 2 bad input (nothing was run).
    """
    import anyio

    from ..plan.schema import EXECUTOR_ADDRESS
    from .clusters import ray_missing
    from .session import is_tty, new_run_id

    if parallel < 1:
        fail_usage(f"--parallel: expected an integer >= 1, got {parallel}")
    if ray is not None:
        if not re.match(EXECUTOR_ADDRESS, ray):
            fail_usage(f"--ray: expected auto, local, HOST:PORT or ray://HOST:PORT, got {ray!r}")
        if (missing := ray_missing()) is not None:
            fail_usage(missing)
    grid = _param_grid(param)
    batch_id = new_run_id()
    texts = _read_plans(plans, grid)
    jobs = _jobs(batch_id, texts, grid, workspace)
    typer.echo(f"batch {batch_id}: {len(jobs)} runs {'on the Ray cluster at ' + ray if ray else 'on this machine'}"
               f", at most {parallel} at once", err=True)
    start = time.perf_counter()
    if output is BatchOutput.text and is_tty():
        outcomes, stopped = anyio.run(_run_live, jobs, parallel, ray)
    else:
        plain = _Progress(len(jobs))
        outcomes, stopped = anyio.run(_run, jobs, parallel, ray, plain, None if output is BatchOutput.json else plain.started)
    outcomes.sort(key=lambda o: o.job.index)
    took = time.perf_counter() - start
    if output is BatchOutput.json:
        print_json({"batch_id": batch_id, "runs": [o.to_dict() for o in outcomes], "duration_s": round(took, 3),
                    "ok": sum(o.status == "ok" for o in outcomes), "not_ok": sum(o.status != "ok" for o in outcomes)})
    else:
        _print_table(outcomes, took)
    raise typer.Exit(EXIT_INTERRUPTED if stopped else 0 if all(o.status == "ok" for o in outcomes) else 1)


def _param_grid(params: Sequence[str]) -> list[dict[str, str]]:
    """Every combination of the ``--param`` values (one empty combination without any)."""
    axes: dict[str, list[str]] = {}
    for raw in params:
        m = _PARAM.match(raw)
        if m is None or not m[2]:
            fail_usage(f"--param: expected NAME=V1,V2,... (NAME letters, digits, _), got {raw!r}")
        if m[1] in axes:
            fail_usage(f"--param: {m[1]} given twice; list its values once: {m[1]}=V1,V2")
        axes[m[1]] = m[2].split(",")
    return [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())]


def _read_plans(plans: Sequence[Path], grid: list[dict[str, str]]) -> list[tuple[Path, list[str]]]:
    """Each plan with its text per combination, every one checked; bad input exits 2 before any run."""
    from ..plan.load import parse_plan, read_plan_text

    out, problems = [], []
    for plan in plans:
        if not plan.exists():
            fail_usage(f"plan file not found: {plan}")  # a directory or a FIFO: read_plan_text says so
        try:
            text = read_plan_text(plan)
        except PlanError as exc:
            fail_plan([exc])
        unused = [name for name in grid[0] if "${" + name + "}" not in text]
        if unused:
            fail_usage(f"{plan}: --param {unused[0]} is given, but the plan has no ${{{unused[0]}}} to fill in")
        filled = [_fill(text, combo) for combo in grid]
        for text_n in dict.fromkeys(filled):  # each distinct text checked once
            try:
                parse_plan(text_n, filename=str(plan))
            except PlanError as exc:
                problems.extend([exc, *exc.more])
        out.append((plan, filled))
    fail_plan(problems)
    return out


def _fill(text: str, combo: dict[str, str]) -> str:
    for name, value in combo.items():
        text = text.replace("${" + name + "}", value)
    return text


def _jobs(batch_id: str, texts: list[tuple[Path, list[str]]], grid: list[dict[str, str]],
          workspace: Path | None) -> list[Job]:
    from .batch_jobs import Job

    home = (BATCHES / batch_id).resolve()
    jobs = []
    index = itertools.count(1)
    for plan, filled in texts:
        for combo, text in zip(grid, filled, strict=True):
            n = next(index)
            label = f"{n:02d}-{plan.stem}" + ("[" + ",".join(f"{k}={v}" for k, v in combo.items()) + "]" if combo else "")
            path = plan.resolve()
            if combo:
                path = home / "plans" / f"{n:02d}-{plan.name}"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            ws = workspace.resolve() if workspace is not None else home / f"{n:02d}-{plan.stem}"
            jobs.append(Job(n, label, str(path), str(plan.resolve().parent), str((RUNS / f"{batch_id}-{n:02d}").resolve()),
                            str(ws), combo))
    return jobs


class _Progress:
    """One plain line on stderr per run as it starts (:meth:`started`) and as it ends."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0

    def started(self, job: Job) -> None:
        typer.echo(f"[start] {job.name}: run directory {job.run_dir}", err=True)

    def __call__(self, o: Outcome) -> None:
        self.done += 1
        where = f" on {o.node[:12]}" if o.node else ""
        why = f": {o.error}" if o.error and o.status != "ok" else ""
        typer.echo(f"[{self.done}/{self.total}] {o.job.name} {o.status} in {o.duration_s:.1f}s{where}{why}", err=True)


async def _run(jobs: list[Job], parallel: int, ray: str | None, progress: Callable[[Outcome], None],
               started: Callable[[Job], None] | None) -> tuple[list[Outcome], bool]:
    """Every job, at most ``parallel`` at once: here, or as Ray tasks on the cluster at ``ray``; and
    whether Ctrl-C or SIGTERM stopped the batch (here only)."""
    import anyio

    from .batch_jobs import Stop, run_all, run_job_here

    if ray is not None:
        from .batch_ray import run_on_cluster  # Ray only when asked for

        return await run_on_cluster(jobs, parallel, ray, progress, started), False

    stop = Stop()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_stop_on_signals, stop)
        outcomes = await run_all(jobs, parallel, functools.partial(run_job_here, stop=stop), progress, started, stop)
        tg.cancel_scope.cancel()
    return outcomes, stop.asked.is_set()


async def _stop_on_signals(stop: Stop) -> None:
    """A first Ctrl-C or SIGTERM asks every run to stop; a second forces them."""
    import signal

    import anyio

    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            if stop.asked.is_set():
                stop.forced.set()
                return
            typer.echo("stopping: each running run ends as Ctrl-C ends it; Ctrl-C again kills them", err=True)
            stop.asked.set()


async def _run_live(jobs: list[Job], parallel: int, ray: str | None) -> tuple[list[Outcome], bool]:
    """:func:`_run` with the live table on the terminal, each row read from its run's log."""
    import anyio
    from rich.console import Console

    from ..views.batch import BatchProgress

    view = BatchProgress([(job.name, Path(job.run_dir) / "events.jsonl") for job in jobs])
    shown = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(view.show, Console(), shown)
        try:
            ended = await _run(jobs, parallel, ray, lambda o: view.ended(o.job.name, o.status), None)
        finally:
            shown.set()
    return ended


def _print_table(outcomes: list[Outcome], took: float) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=None, box=None, header_style="bold")
    for column in ("run", "status", "exit", "seconds", "tokens", "tools", "failures", "first failure"):
        table.add_column(column, justify="right" if column in ("exit", "seconds", "tokens", "tools", "failures") else "left")
    for o in outcomes:
        # Text, not markup: a name like 01-p[n=1] or an error text is shown as it is.
        table.add_row(Text(o.job.name), o.status, "-" if o.exit_code is None else str(o.exit_code), f"{o.duration_s:.1f}",
                      str(o.tokens), str(o.tool_calls), str(o.failures), Text((o.error or "")[:80]))
    console = Console(width=160)
    console.print(table)
    ok = sum(o.status == "ok" for o in outcomes)
    console.print(f"{ok}/{len(outcomes)} runs ok in {took:.1f}s; run directories: {RUNS}/<batch>-NN")
