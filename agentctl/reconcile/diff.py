"""What a plan asks for compared with what runs: a pure function, like a controller's diff.

Invoked from :mod:`agentctl.reconcile.reconciler` on every reconcile, and from
``agentctl diff`` as a dry run. Level-triggered: the same plan against the same state
gives an empty diff, so reconciling twice does nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..plan.model import Plan, Task


@dataclass(frozen=True, slots=True)
class TaskState:
    """What the reconciler knows of one task's agent.

    Attributes:
        key: the spec key (``Task.spec_key()``) the agent was started with.
        status: ``running``, or how it finished: ``ok`` or another done status, ``failed``.
    """

    key: object
    status: str


@dataclass(frozen=True, slots=True)
class Diff:
    """The changes one reconcile makes.

    Attributes:
        added: tasks in the plan with no agent yet (started now or once dependencies finish).
        removed: running tasks no longer in the plan (their subtrees are stopped).
        changed: tasks whose spec changed (stopped if running, started again).
        start: tasks to spawn now, in plan order (dependencies all finished ok).
        stop: running tasks to stop now.
        waiting: tasks waiting for dependencies.
        blocked: tasks that can never start because a dependency failed.
    """

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    start: tuple[str, ...] = ()
    stop: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()
    blocked: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """Whether nothing is added, removed or changed."""
        return not (self.added or self.removed or self.changed)


def _ready(task: Task, states: Mapping[str, TaskState], fresh: set[str]) -> str:
    """``ready``, ``waiting`` or ``blocked`` by the task's dependencies (a dependency
    that starts again now counts as running, whatever its old outcome)."""
    verdict = "ready"
    for dep in task.depends_on:
        state = states.get(dep)
        if state is None or state.status == "running" or dep in fresh:
            verdict = "waiting"
        elif state.status != "ok":
            return "blocked"
    return verdict


def diff_plan(plan: Plan, states: Mapping[str, TaskState], started: frozenset[str] = frozenset()) -> Diff:
    """Compare ``plan`` with the task ``states`` (running and finished, by id).

    ``started`` are tasks already counted as added by an earlier reconcile that are still
    waiting for dependencies, so they are not reported as added again.
    """
    desired = {task.id: task for task in plan.tasks}
    removed = tuple(tid for tid, s in states.items() if tid not in desired and s.status == "running")
    added: list[str] = []
    changed: list[str] = []
    start: list[str] = []
    stop: list[str] = list(removed)
    waiting: list[str] = []
    blocked: list[str] = []
    fresh_ids = {tid for tid, task in desired.items() if tid not in states or states[tid].key != task.spec_key()}
    for tid, task in desired.items():
        state = states.get(tid)
        fresh = tid in fresh_ids
        if state is None:
            if tid not in started:
                added.append(tid)
        elif fresh:
            changed.append(tid)
            if state.status == "running":
                stop.append(tid)
        if not fresh:
            continue
        verdict = _ready(task, states, fresh_ids)
        if verdict == "ready":
            start.append(tid)
        elif verdict == "waiting":
            waiting.append(tid)
        else:
            blocked.append(tid)
    return Diff(tuple(added), removed, tuple(changed), tuple(start), tuple(stop), tuple(waiting), tuple(blocked))
