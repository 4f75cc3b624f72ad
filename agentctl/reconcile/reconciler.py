"""The root agent ``plan``: makes the agent tree match the plan, on every edit.

Invoked from ``agentctl run``: the CLI loads each valid save of the plan file, hands it
to :meth:`Reconciler.set_plan` and wakes the root with a ``reconcile`` message. The
root's step diffs the plan against its children (task agents at depth 1, with the
task's id as agent id) and returns the stops and spawns that close the gap. A task's
``done`` or ``failed`` message is a reconcile too: it may unblock dependants. Like a
Kubernetes controller it is level-triggered: the same plan twice changes nothing.
"""

from __future__ import annotations

from typing import Any

from .. import actions as act
from ..agents.factory import spec_for_task
from ..events.emit import Emit
from ..events.fold import RunState
from ..events.journal import Journal, Journals
from ..events.types import PlanDiff
from ..plan.model import Plan
from ..policy import PLAN_ROOT
from ..runtime.runtime import Runtime
from ..runtime.spec import AgentSpec, StepContext
from .diff import Diff, TaskState, diff_plan
from .states import task_states

ROOT_ID = PLAN_ROOT


class Reconciler:
    """Holds the desired plan and steps the root agent towards it.

    Args:
        plan: the first plan.
        emit: the event log's emit, for ``plan/diff``.
        keep_running: stay alive when every task has finished (for further edits).
    """

    def __init__(self, plan: Plan, emit: Emit, *, keep_running: bool = False) -> None:
        self.plan = plan
        self.version = 1
        self.emit = emit
        self.keep_running = keep_running
        self.tasks: dict[str, TaskState] = {}
        self._waiting: set[str] = set()
        self._applied = 0

    def spec(self) -> AgentSpec:
        """The root agent's spec (supervision settings from the first plan)."""
        s = self.plan.settings
        return AgentSpec(
            id=ROOT_ID, step=self.step, kind="plan", restart="temporary",
            strategy=s.strategy,  # type: ignore[arg-type]
            max_restarts=s.max_restarts, restart_period=s.restart_period,
        )

    @classmethod
    def resumed(cls, plan: Plan, state: RunState, journals: Journals, version: int, emit: Emit, *,
                keep_running: bool = False) -> Reconciler:
        """The root of a run that died, continuing where its events left it: ``plan`` is the
        version it last applied (number ``version``), task states come from ``state`` (the
        fold), and tasks with a journal (live when it died) count as running."""
        reconciler = cls(plan, emit, keep_running=keep_running)
        reconciler.tasks = task_states(plan, state)
        for task in plan.tasks:
            if task.id in journals.by_agent:
                reconciler.tasks[task.id] = TaskState(task.spec_key(), "running")
        reconciler.version = reconciler._applied = version
        return reconciler

    def respawn(self, rt: Runtime, journals: Journals) -> None:
        """Start the root again in ``rt`` and under it every task that has a journal (each
        replays it, see :mod:`agentctl.runtime.recovery`). The root replays nothing (it
        reconciles afresh) but counts its tasks' restarts before the crash against its
        ``max_restarts`` again."""
        root = journals.get(ROOT_ID)
        rt.spawn(self.spec(), journal=Journal(restarts=list(root.restarts) if root is not None else []))
        for task in self.plan.tasks:
            journal = journals.get(task.id)
            if journal is not None:
                rt.spawn(spec_for_task(task, self.plan.defaults), ROOT_ID, journal=journal)

    def set_plan(self, plan: Plan) -> None:
        """Make ``plan`` the desired state; the next root step reconciles it."""
        self.plan = plan
        self.version += 1

    def task_stopped(self, task_id: str) -> None:
        """A running task was stopped from outside (``agentctl stop --agent``): it has ended,
        not ok, and is not started again until an edit changes it; wake the root to settle."""
        state = self.tasks.get(task_id)
        if state is not None and state.status == "running":
            self.tasks[task_id] = TaskState(state.key, "stopped")

    def step(self, ctx: StepContext) -> list[act.Action]:
        """The root's step: record finished tasks, then close the gap to the plan."""
        for msg in ctx.messages:
            state = self.tasks.get(msg.sender)
            if msg.kind in ("done", "failed") and state is not None and state.status == "running":
                status = (msg.body or {}).get("status") if msg.kind == "done" else "failed"
                self.tasks[msg.sender] = TaskState(state.key, str(status or "ok"))
        for result in ctx.results:
            # A spawn the policy refused (its policy/refused event says why) fails the task:
            # it will not start by itself, and waiting for it would hang the run.
            if isinstance(result.action, act.Spawn) and not result.ok:
                state = self.tasks.get(result.action.spec.id)
                if state is not None and state.status == "running":
                    self.tasks[result.action.spec.id] = TaskState(state.key, "failed")
        actions = self._reconcile()
        if actions:
            return actions
        return self._finish_if_settled()

    def _reconcile(self) -> list[act.Action]:
        diff = diff_plan(self.plan, self.tasks, frozenset(self._waiting))
        if self._applied != self.version or not diff.empty:
            self._applied = self.version
            if not diff.empty:
                self.emit(PlanDiff(agent_id=ROOT_ID, version=self.version, added=list(diff.added),
                                   removed=list(diff.removed), changed=list(diff.changed)))
        self._waiting = set(diff.waiting) | set(diff.blocked)
        return self._apply(diff)

    def _apply(self, diff: Diff) -> list[act.Action]:
        actions: list[act.Action] = []
        for tid in diff.stop:
            actions.append(act.stop(tid))
            self.tasks.pop(tid, None)
        for tid in diff.changed:
            self.tasks.pop(tid, None)
        for tid in diff.start:
            task = self.plan.task(tid)
            assert task is not None
            actions.append(act.spawn(spec_for_task(task, self.plan.defaults)))
            self.tasks[tid] = TaskState(task.spec_key(), "running")
        return actions

    def _finish_if_settled(self) -> list[act.Action]:
        if self.keep_running or self._waiting - set(self.blocked()):
            return []
        planned = [t.id for t in self.plan.tasks]
        if any(self.tasks.get(tid, TaskState(None, "running")).status == "running" for tid in planned if tid not in self.blocked()):
            return []
        return [act.done(self.outcome(), self.summary())]

    def blocked(self) -> list[str]:
        """Tasks that can never start because a dependency did not finish ok."""
        return [tid for tid in self._waiting if tid in {t.id for t in self.plan.tasks} and self._blocked(tid)]

    def _blocked(self, tid: str) -> bool:
        task = self.plan.task(tid)
        return task is not None and any(
            self.tasks.get(dep) is not None and self.tasks[dep].status not in ("ok", "running") for dep in task.depends_on
        )

    def outcome(self) -> str:
        """``ok`` when every task of the plan finished ok, else ``failed``."""
        ok = all(self.tasks.get(t.id) is not None and self.tasks[t.id].status == "ok" for t in self.plan.tasks)
        return "ok" if ok else "failed"

    def summary(self) -> dict[str, Any]:
        """Each task's status, for the root's ``done`` result."""
        return {t.id: (self.tasks[t.id].status if t.id in self.tasks else "blocked") for t in self.plan.tasks}
