"""``agentctl validate``, ``schema`` and ``diff``: look at plans without running them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from .errors import fail_plan, fail_usage
from .views import resolve_run

if TYPE_CHECKING:
    from rich.console import Console

    from ..plan.model import Plan
    from ..reconcile import Diff, TaskState


def _load(path: Path) -> Plan:
    from ..plan.load import load_plan

    if not path.exists():
        fail_usage(f"plan file not found: {path}")
    return load_plan(path)


def validate_command(plan: Path = typer.Argument(..., help="The plan file to check.")) -> None:
    """Check PLAN and say everything that is wrong: file, line, key path, expected and got.

    Beyond the file itself: the plugins and step functions it names import (from beside
    the plan too), every tool it names exists and would be granted, and no spawn would be
    refused by the depth policy or the budget ledger.
    """
    from ..errors import PlanError
    from ..reconcile.preflight import plan_code, preflight
    from ..services.tools.docker import check_docker

    with plan_code(plan):
        try:
            loaded = _load(plan)
            problems = preflight(loaded)
        except PlanError as exc:
            problems = [exc, *exc.more]
    fail_plan(problems)
    if (engine_problem := check_docker(loaded)) is not None:
        fail_usage(engine_problem)
    typer.echo(f"{plan}: ok: plan {loaded.name!r}, {len(loaded.tasks)} tasks")


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
    plan: Path = typer.Argument(..., help="The edited plan."),
    run: Optional[Path] = typer.Option(None, "--run", help="A run directory to compare with [default: compare with nothing running]."),
) -> None:
    """Dry-run the reconciler: what PLAN would spawn, stop or restart, before anything is applied."""
    from rich.console import Console

    from ..reconcile import diff_plan

    new = _load(plan)
    states: dict[str, TaskState] = {}
    fold = None
    if run is not None:
        states, fold = run_task_states(resolve_run(run))
    d = diff_plan(new, states)
    render_diff(new, d, states, fold, Console())


def render_diff(plan: Plan, d: Diff, states: dict[str, TaskState], fold: Any, console: Console) -> None:
    """Print what the reconciler would do."""
    from rich.table import Table

    table = Table(title=f"plan {plan.name!r}: what a reconcile would do", show_lines=False)
    for column in ("task", "action", "budget reserved", "locks given up"):
        table.add_column(column)
    restarts = set(d.changed) & set(d.stop)
    for tid in d.stop:
        if tid not in restarts:
            table.add_row(tid, "[red]stop[/]", "-", ", ".join(_subtree_locks(fold, tid)) if fold else "-")
    for tid in d.start:
        task = plan.task(tid)
        budget = (plan.defaults.budget.overlay(task.budget) if task and task.budget else plan.defaults.budget).to_dict()
        reserved = ", ".join(f"{k}={v}" for k, v in budget.items() if v is not None) or "inherit"
        action = "[yellow]restart[/]" if tid in restarts else ("[green]spawn[/]" if tid not in states else "[yellow]rerun[/]")
        locks = ", ".join(_subtree_locks(fold, tid)) if fold and tid in restarts else "-"
        table.add_row(tid, action, reserved, locks or "-")
    for tid in d.waiting:
        table.add_row(tid, "wait for dependencies", "-", "-")
    for tid in d.blocked:
        table.add_row(tid, "[red]blocked[/] (a dependency failed)", "-", "-")
    if not table.row_count:
        console.print(f"plan {plan.name!r}: no changes")
        return
    console.print(table)
