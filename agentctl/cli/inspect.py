"""``agentctl validate``, ``schema`` and ``diff``: look at plans without running them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from .complete import complete_plan, complete_run
from .errors import EXIT_USAGE, fail_plan, fail_usage
from .jsonout import Output, output_option, print_json
from .locate import RUNS, resolve_run
from .views import blame_the_log

if TYPE_CHECKING:
    from rich.console import Console

    from ..errors import PlanError, PolicyError
    from ..plan.model import Plan
    from ..policy import Grant
    from ..reconcile import Diff, TaskState


def _load(path: Path) -> Plan:
    from ..plan.load import load_plan

    if not path.exists():
        fail_usage(f"plan file not found: {path}")
    return load_plan(path)


def validate_command(plan: Path = typer.Argument(..., help="The plan file to check.", autocompletion=complete_plan), output: Output = output_option()) -> None:
    """Check a plan and list every problem in it.

    Each problem says where and what: file, line, key path, expected and got.

    Beyond the file itself: the plugins and step functions it names import (from beside
    the plan too), every tool it names exists and would be granted, and no spawn would be
    refused by the depth policy or the budget ledger. Lists every command and module it runs.
    """
    from ..errors import PlanError
    from ..plan.code import plan_code
    from ..plan.runs import code_it_runs
    from ..reconcile.preflight import preflight
    from ..services.tools.docker import check_docker

    loaded: Plan | None = None
    if output is Output.json and not plan.exists():
        problems = [PlanError("plan file not found", file=str(plan))]
    else:
        with plan_code(plan):
            try:
                loaded = _load(plan)
                problems = preflight(loaded)
            except PlanError as exc:
                problems = [exc, *exc.more]
    if output is Output.json:
        _print_validation(plan, loaded, problems)
    fail_plan(problems)
    assert loaded is not None
    if (engine_problem := check_docker(loaded)) is not None:
        fail_usage(engine_problem)
    typer.echo(f"{plan}: ok: plan {loaded.name!r}, {len(loaded.tasks)} tasks")
    runs = code_it_runs(loaded)
    typer.echo("runs code (see docs/security.md):" if runs else "runs no commands, plugins or python modules")
    for line in runs:
        typer.echo(f"  {line}")


def _print_validation(path: Path, plan: Plan | None, problems: list[PlanError]) -> None:
    """Print the ``validate -o json`` object and exit: 0 when there is nothing wrong, else 2."""
    from ..services.tools.docker import check_docker

    errors = [p.to_dict() for p in problems]
    if plan is not None and not errors and (engine_problem := check_docker(plan)) is not None:
        errors.append({"message": engine_problem, "file": str(path)})
    print_json({"file": str(path), "ok": not errors, "plan": plan.name if plan else None,
                "tasks": len(plan.tasks) if plan else None, "errors": errors})
    raise typer.Exit(EXIT_USAGE if errors else 0)


def schema_command() -> None:
    """Print the JSON Schema of plan files (for editors)."""
    from ..plan.schema import plan_json_schema

    typer.echo(json.dumps(plan_json_schema(), indent=2))


def run_task_states(run_dir: Path) -> tuple[dict[str, TaskState], Any]:
    """The task states of a run, from its events and the last plan version it applied."""
    from ..events.fold import state_at
    from ..reconcile.states import last_applied_plan, task_states

    state = state_at(run_dir / "events.jsonl")
    applied, _ = last_applied_plan(run_dir)
    return (task_states(applied, state) if applied else {}), state


def _subtree_locks(state: Any, root: str) -> list[str]:
    out: list[str] = []
    todo = [root]
    while todo:
        agent = state.agents.get(todo.pop())
        if agent is None:
            continue
        out.extend(f"{path} ({mode}, {agent.id})" for path, mode in agent.locks.items())
        todo.extend(agent.children)
    return out


def diff_command(
    plan: Path = typer.Argument(..., help="The edited plan.", autocompletion=complete_plan),
    run: Optional[Path] = typer.Option(None, "--run", metavar="RUN", help="A run directory or run id to compare with [default: the newest run; none: compare with nothing running].", autocompletion=complete_run),
    output: Output = output_option(),
) -> None:
    """Show what an edit of a plan would change in a run.

    A dry run of the reconciler: what PLAN would spawn, stop or restart, before anything
    is applied.

    Exit code 0 when nothing would change, 1 when something would, 2 on an error.
    """
    from rich.console import Console

    from ..plan.code import plan_code
    from ..reconcile import ROOT_ID, diff_plan
    from ..reconcile.preflight import plan_grants
    from ..views.watch import newest_run

    states: dict[str, TaskState] = {}
    fold = None
    run_dir = None if str(run) == "none" else resolve_run(run) if run is not None else newest_run(RUNS)
    # A log whose events do not fit their definitions is named, not a traceback.
    with blame_the_log(run_dir / "events.jsonl") if run_dir is not None else nullcontext():
        if run_dir is not None:
            states, fold = run_task_states(run_dir)
        with plan_code(plan):
            new = _load(plan)
            d = diff_plan(new, states)
            # Granted as the run would grant them: running tasks hold their reservations first.
            root = fold.agents.get(ROOT_ID) if fold is not None else None
            grants = plan_grants(new, [t for t, s in states.items() if s.status == "running" and t not in d.stop],
                                 root.steps + 1 if root is not None else 1)
        rows = diff_rows(new, d, states, fold, grants)
        changes = any(r["action"] in CHANGES for r in rows)
        if output is Output.json:
            print_json({"plan": new.name, "file": str(plan), "run": None if run_dir is None else str(run_dir),
                        "changes": changes, "tasks": rows})
        else:
            render_diff(new, rows, run_dir, Console())
    raise typer.Exit(1 if changes else 0)


#: Diff actions that change a run (waiting and blocked tasks do not; a refused spawn fails its task).
CHANGES = frozenset({"spawn", "stop", "restart", "rerun", "refused", "supervise"})


def diff_rows(plan: Plan, d: Diff, states: dict[str, TaskState], fold: Any,
              grants: Mapping[str, Grant | PolicyError] | None = None) -> list[dict[str, Any]]:
    """What a reconcile would do, one object per task it concerns (the ``tasks`` of ``diff -o json``).

    A spawn that ``grants`` (:func:`agentctl.reconcile.preflight.plan_grants`) says the run
    would refuse is action ``refused``, with the run's own words in ``error``.
    """
    from ..errors import PolicyError

    rows: list[dict[str, Any]] = []
    restarts = set(d.changed) & set(d.stop)
    for tid in d.stop:
        if tid not in restarts:
            rows.append({"task": tid, "action": "stop", "budget": None, "locks": _subtree_locks(fold, tid) if fold else [],
                         "error": None})
    for tid in d.start:
        task = plan.task(tid)
        grant = (grants or {}).get(tid)
        locks = _subtree_locks(fold, tid) if fold and tid in restarts else []
        if isinstance(grant, PolicyError):
            rows.append({"task": tid, "action": "refused", "budget": None, "locks": locks, "error": str(grant)})
            continue
        if grant is not None:
            budget = grant.budget.to_dict()
        else:
            budget = (plan.defaults.budget.overlay(task.budget) if task and task.budget else plan.defaults.budget).to_dict()
        action = "restart" if tid in restarts else ("spawn" if tid not in states else "rerun")
        rows.append({"task": tid, "action": action, "budget": {k: v for k, v in budget.items() if v is not None},
                     "locks": locks, "error": None})
    rows.extend(_supervise_rows(d, states, fold, grants or {}))
    rows.extend({"task": tid, "action": "wait", "budget": None, "locks": [], "error": None} for tid in d.waiting)
    rows.extend({"task": tid, "action": "blocked", "budget": None, "locks": [], "error": None} for tid in d.blocked)
    for row in rows:
        row.setdefault("supervise", None)
    return rows


def _supervise_rows(d: Diff, states: dict[str, TaskState], fold: Any,
                    grants: Mapping[str, Grant | PolicyError]) -> list[dict[str, Any]]:
    """Running tasks the edit leaves running whose supervision it changes (applied live,
    ``agent/supervision``): action ``supervise``, with the new values in ``supervise``."""
    from ..errors import PolicyError

    rows: list[dict[str, Any]] = []
    for tid, state in states.items():
        agent = fold.agents.get(tid) if fold is not None else None
        grant = grants.get(tid)
        if state.status != "running" or tid in d.stop or agent is None or not agent.supervise:
            continue
        if isinstance(grant, PolicyError):
            if grant.rule == "supervise":
                rows.append({"task": tid, "action": "refused", "budget": None, "locks": [], "error": str(grant)})
        elif grant is not None and grant.supervise.to_dict() != agent.supervise:
            rows.append({"task": tid, "action": "supervise", "budget": None, "locks": [], "error": None,
                         "supervise": grant.supervise.to_dict()})
    return rows


_ACTION_TEXT = {"stop": "[red]stop[/]", "spawn": "[green]spawn[/]", "restart": "[yellow]restart[/]", "rerun": "[yellow]rerun[/]",
                "wait": "wait for dependencies", "blocked": "[red]blocked[/] (a dependency failed)",
                "refused": "[red]refused[/]: {error}", "supervise": "[yellow]supervise[/] (live): {supervise}"}


def render_diff(plan: Plan, rows: list[dict[str, Any]], run_dir: Path | None, console: Console) -> None:
    """Print what the reconciler would do."""
    from rich.markup import escape
    from rich.table import Table

    against = f"against the run in {run_dir}" if run_dir is not None else "with nothing running"
    if not rows:
        console.print(f"plan {plan.name!r}: no changes {against}")
        return
    table = Table(title=f"plan {plan.name!r}: what a reconcile would do {against}", show_lines=False)
    for column in ("task", "action", "budget reserved", "locks given up"):
        table.add_column(column)
    for r in rows:
        budget = r["budget"]
        reserved = "-" if budget is None else ", ".join(f"{k}={v}" for k, v in budget.items()) or "inherit"
        flags = r.get("supervise") or {}
        action = _ACTION_TEXT[r["action"]].format(error=escape(r["error"] or ""), supervise=escape(
            f"{flags.get('max_restarts')} in {flags.get('restart_period')}s, {flags.get('strategy')}"))
        table.add_row(r["task"], action, reserved, ", ".join(r["locks"]) or "-")
    console.print(table)
