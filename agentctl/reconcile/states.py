"""Task states of a run as the events tell them: for ``agentctl diff --run`` and resume.

Invoked from the CLI. The spec keys come from the plan version the run last applied
(its copy in the run directory), the statuses from the fold of its events.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import PlanError
from ..events.fold import RunState
from ..plan.load import load_plan
from ..plan.model import Plan
from .diff import TaskState


def last_applied_plan(run_dir: Path) -> tuple[Plan | None, int]:
    """The last plan version a run applied (its copy ``plan.vN.*``) and N (0: none)."""
    copies = sorted(Path(run_dir).glob("plan.v*"), key=lambda p: int(p.name.split(".v")[1].split(".")[0]))
    for copy in reversed(copies):
        try:
            return load_plan(copy), int(copy.name.split(".v")[1].split(".")[0])
        except PlanError:
            continue
    return None, 0


def task_states(plan: Plan, state: RunState) -> dict[str, TaskState]:
    """Each task's :class:`TaskState` in ``state`` (tasks stopped or never started: absent)."""
    states: dict[str, TaskState] = {}
    for task in plan.tasks:
        agent = state.agents.get(task.id)
        if agent is None or agent.status == "stopped":
            continue
        if agent.status == "done":
            status = str(agent.done_status or "ok")
        elif agent.status == "failed":
            status = "failed"
        else:
            status = "running"
        states[task.id] = TaskState(task.spec_key(), status)
    return states
