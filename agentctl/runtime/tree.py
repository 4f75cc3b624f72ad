"""The supervision tree: agents start, end, and are restarted by their supervisor.

A part of :class:`agentctl.runtime.runtime.Runtime`, acting through the services of its
:class:`~agentctl.runtime.kernel.Kernel`. Called by the runtime's public ``spawn``/``stop``
and by ``open_runtime`` at shutdown; by the scheduler (:mod:`agentctl.runtime.scheduler`)
when a step fails or a budget runs out; by the interpreter and crash recovery through
their handle (:class:`~agentctl.runtime.action_services.ActionServices`), and through the runtime
by the bridge tools, for spawn, stop and done.

When an agent ends, its supervisor (its parent; the runtime for root agents) decides
what happens through the pure rules of :mod:`agentctl.runtime.supervision`; this module
carries the decision out. An agent spawned with a journal (crash resume) is started
again rather than anew.
"""

from __future__ import annotations

import gc
import inspect
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import anyio

from ..errors import ActionError, AgentctlError, PolicyError, ToolError
from ..events.journal import Journal
from ..policy import PLAN_ROOT, UNLIMITED, Grant, Policy, Supervision, grant_spawn, grant_supervision, reserved_id_error
from ..services.bus import Inbox
from . import snapshots
from .agent import Agent
from .kernel import Kernel
from .lineage import LiveChild, live_children
from .resume_state import Replay, ResumeContext
from .spec import AgentSpec, Strategy
from .supervision import plan_restart, should_restart, within_intensity
from .timers import clock

#: Spawns between two ``gc.freeze()`` calls.
FREEZE_EVERY = 10_000


@dataclass(frozen=True, slots=True)
class Exit:
    """How an agent ended: ``done`` (with its status), ``failed`` or ``stopped``."""

    agent_id: str
    outcome: str
    status: str | None = None
    result: Any = None


class Tree:
    """Spawns agents, ends them, and restarts them as their supervisor's strategy says.

    Acts through the ``kernel``'s services; grants spawns under ``policy`` (a live plan edit
    replaces it) and starts agents of a crash resume again from ``resume``.
    """

    def __init__(
        self,
        kernel: Kernel,
        policy: Policy,
        resume: ResumeContext | None,
        root_tools: frozenset[str] | None,
        *,
        inbox_size: int,
        strategy: Strategy,
        max_restarts: int,
        restart_period: float,
    ) -> None:
        self.policy = policy
        self._resume = resume
        self._emit = kernel.emit
        self._set_status = kernel.set_status
        self._bus = kernel.bus
        self._locks = kernel.locks
        self._tools = kernel.tools
        self._timers = kernel.timers
        self._task_group = kernel.tasks
        self._wake = kernel.ready.wake
        self._agents = kernel.agents
        self._inbox_size = inbox_size
        self._root_grant = Grant(None, frozenset(self._tools.names()) if root_tools is None else root_tools, UNLIMITED)
        # The runtime supervises root agents the way an agent supervises its children.
        self._root_sup = Supervision(strategy, max_restarts, restart_period)
        self._root_restarts: deque[float] = deque()
        self._roots: dict[str, Agent] = {}
        self._exits: dict[str, Exit] = {}
        self._waiters: dict[str, anyio.Event] = {}
        self._idle_event: anyio.Event | None = None
        self._closing = False
        self._end_hooks: list[Callable[[str], Any]] = []
        #: Agents spawned (restarts not counted), ended (restarts counted) and restarted so far.
        self.spawned = self.ended = self.restarts = 0

    # ------------------------------------------------------------------ what the runtime answers from

    def exit_of(self, agent_id: str) -> Exit | None:
        """How ``agent_id`` last ended, if it has."""
        return self._exits.get(agent_id)

    async def wait(self, agent_id: str) -> Exit:
        """Wait until ``agent_id`` ends for good (not merely for a restart)."""
        while agent_id in self._agents or agent_id not in self._exits:
            event = self._waiters.setdefault(agent_id, anyio.Event())
            await event.wait()
        return self._exits[agent_id]

    async def wait_idle(self) -> None:
        """Wait until no agent is live."""
        while self._agents:
            self._idle_event = self._idle_event or anyio.Event()
            await self._idle_event.wait()

    def on_agent_end(self, fn: Callable[[str], Any]) -> None:
        """Call ``fn(agent_id)`` whenever an agent ends (see :meth:`Runtime.on_agent_end`)."""
        self._end_hooks.append(fn)

    # ------------------------------------------------------------------ starting

    def spawn(
        self, spec: AgentSpec, parent: Agent | None, *, previous: Agent | None = None, journal: Journal | None = None,
        granted: Grant | None = None,
    ) -> str:
        """Start ``spec`` under ``parent`` (``None``: a root), or again after ``previous`` (a restart).

        ``granted``: a live child its restored parent's snapshot names (crash resume), started
        with the grant it had, and already counted among the parent's spawns.

        Raises:
            PolicyError: the policy or the parent's budget refuses the child.
            ActionError: the id is taken by a live agent.
        """
        if granted is not None:
            grant = granted
        elif previous is None:
            grant = self._grant(spec, parent)
        else:
            grant = previous.grant
        snap: snapshots.Restored | None = None
        children: tuple[LiveChild, ...] = ()
        if journal is not None and journal.snapshot is not None:
            journal, snap, children = self._snapshot_of(spec, journal, grant, 0 if parent is None else parent.depth + 1)
        replayed = Replay(journal) if journal is not None else None
        inbox = self._bus.register(spec.id, parent.id if parent else None, spec.topology,
                                   self._inbox_for(replayed, snap.turns if snap is not None else 0))
        agent = Agent(spec, parent, grant, inbox)
        inbox.on_put = partial(self._wake, agent)
        siblings = parent.children if parent is not None else self._roots
        siblings[spec.id] = agent
        if parent is not None and previous is None:
            parent.spawned_child(spec.id)
        self._agents[spec.id] = agent
        now = clock()
        if previous is not None:
            agent.steps, agent.tool_calls, agent.tokens = previous.steps, previous.tool_calls, previous.tokens
            agent.reserved, agent.spawned_children = previous.reserved, 0
            agent.deadline = previous.deadline
        else:
            self.spawned += 1
            if self.spawned % FREEZE_EVERY == 0:
                # A large tree of idle agents is long-lived: move it out of the GC's
                # generations so collections stop rescanning it (pauses over 100 ms at
                # 100,000 agents otherwise). Ended agents are still freed by refcounting.
                gc.freeze()
            if parent is not None:
                if granted is None:  # a restored child was counted in its parent's snapshot
                    parent.spawned_children += 1
                parent.reserve_for(grant.budget)
            if grant.budget.max_seconds is not None:
                agent.deadline = now + grant.budget.max_seconds
            if journal is not None and replayed is not None:
                self._resumed(agent, journal, replayed, snap)
                for child in children:
                    if child.journal is None:
                        agent.hold_for_ended(child.spec.id, child.grant.budget)
                        agent.ended_before(child.spec.id)
                    else:
                        self.spawn(child.spec, agent, journal=child.journal, granted=child.grant)
            else:
                self._emit(
                    "agent/spawned", spec.id,
                    parent_id=parent.id if parent else None, depth=agent.depth, kind=spec.kind, restart=spec.restart,
                    **grant.to_dict(),
                )
        if agent.deadline is not None:
            self._timers.call_at(agent.deadline, partial(self._deadline, agent))
        if grant.budget.tick_ms:
            first = now + grant.budget.tick_ms / 1000
            self._timers.call_at(first, partial(self._tick, agent, first))
        self._wake(agent)
        return spec.id

    def _inbox_for(self, replayed: Replay | None, steps: int) -> Inbox | None:
        if replayed is None:
            return None
        # Room for every recorded message on top of the usual capacity: none may be lost.
        inbox = Inbox(self._inbox_size + len(replayed.mail) + len(replayed.held))
        inbox.steps = steps  # a snapshot's: the steps the agent had taken
        replayed.deliver(inbox)  # those that came before its next step
        return inbox

    def _snapshot_of(
        self, spec: AgentSpec, journal: Journal, grant: Grant, depth: int
    ) -> tuple[Journal, snapshots.Restored | None, tuple[LiveChild, ...]]:
        """The snapshot a checkpoint kept for the agent and the live children it names, or
        (when it cannot be used) its whole journal, from the log, to replay instead."""
        assert self._resume is not None
        try:
            snap = snapshots.restored(spec, journal.snapshot)
            return journal, snap, live_children(spec, journal, grant=grant, depth=depth, policy=self.policy,
                                                journals=self._resume.journals, parents=self._resume.parents)
        except snapshots.SnapshotError as exc:
            full = self._resume.full_journal(spec.id) if self._resume.full_journal is not None else None
            if full is not None:
                full.take_calls(journal)
            self._resume.warn(f"agent {spec.id}: the checkpoint's snapshot of its state cannot be used: {exc}; "
                              + ("replaying its whole history from the log instead" if full is not None
                                 else "its history before the snapshot is not in the log read; replaying what followed"))
            return (full if full is not None else journal), None, ()

    def _resumed(self, agent: Agent, journal: Journal, replayed: Replay, snap: snapshots.Restored | None) -> None:
        assert self._resume is not None
        if agent.deadline is not None and journal.started_t is not None:
            # max_seconds counts from the agent's first spawn, not from this process's start.
            spent = max(0.0, time.time() - journal.started_t / 1000)
            agent.deadline = clock() + max(0.0, agent.budget.max_seconds - spent)  # type: ignore[operator]
        if journal.began_t is not None:
            agent.clock_t = journal.began_t / 1000
        # The locks its steps held, from its own log (a shutdown released them, a crash did
        # not); a tool's hold of the path it was writing went with its call (a rerun takes
        # it again).
        for path, (mode, count) in journal.held_locks().items():
            self._locks.restore(agent.id, path, mode, count)
        if not replayed.finished:
            agent.replay = replayed
        # What comes live while it replays came after all of it: read once that is over.
        agent.inbox.hold(replayed.held)
        if journal.restarts:
            # Its restart window goes on across the crash: the downtime counts as time passed.
            wall_ahead = time.time() - clock()
            agent.restart_times = deque(t / 1000 - wall_ahead for t in journal.restarts)
        if journal.charges:
            agent.charges = deque(dict(c) for c in journal.charges)  # marked as held (hold_for_ended)
        agent.heard_t = agent.inbox.last_t()  # the recorded messages its first step reads
        if snap is not None:
            snapshots.apply(agent, snap)
            # What it was carrying out starts again on the clock of the step that asked for it
            # (a sleep or a lock wait waits only what is left); replayed steps run on the clock
            # of the snapshot's time, moved on by each outcome and message.
            replays = agent.replay is not None or agent.heard_t is not None
            agent.clock_t = snap.since / 1000 if snap.actions else snap.t / 1000 if replays else None
        self._emit("agent/resumed", agent.id, parent_id=agent.parent.id if agent.parent else None,
                  replay=len(journal.effects), messages=len(journal.inbox), snapshot=snap is not None, held=True)
        if agent.replay is None:
            self.caught_up(agent)  # nothing to replay: its first step is live
        if snap is not None and not snap.actions:
            self._set_status(agent, "waiting", "idle")  # as it was: a message wakes it

    def caught_up(self, agent: Agent) -> None:
        """``agent`` (resumed) has replayed its past: the messages that came live meanwhile
        are read from its next step on. Logged (``agent/replayed``, with the step), so that a
        later resume hands them over at that step again."""
        held = agent.inbox.release()
        self._emit("agent/replayed", agent.id, step=agent.inbox.steps, messages=held)

    def _grant(self, spec: AgentSpec, parent: Agent | None) -> Grant:
        # Trusted code may start the run's root under its reserved name; nothing else may.
        checked = None if parent is None and spec.id == PLAN_ROOT else spec.id
        if (checked is None or reserved_id_error(checked) is None) and spec.id in self._agents:
            raise ActionError(f"agent id {spec.id!r} is already live")
        depth = 0 if parent is None else parent.depth + 1
        try:
            return grant_spawn(
                policy=self.policy, depth=depth, agent_id=checked,
                parent=parent.grant if parent is not None else self._root_grant,
                parent_remaining=parent.remaining(clock()) if parent is not None else None,
                spawned_children=parent.spawned_children if parent is not None else 0,
                model=spec.model, tools=None if spec.tools is None else self._tools.toolset(spec.tools), budget=spec.budget,
                approve=spec.approve, supervise=spec.supervise,
            )
        except AgentctlError as exc:
            rule = getattr(exc, "rule", "tools" if isinstance(exc, ToolError) else "id")
            self._emit("policy/refused", parent.id if parent else None, child_id=spec.id, rule=rule, error=str(exc))
            raise

    # ------------------------------------------------------------------ ending

    def finish(self, agent: Agent, status: str, result: Any, reason: str | None = None) -> None:
        """The agent is done (its own ``done``, or a budget ran out)."""
        if agent.ended:
            return
        self._ending(agent, "parent_stopped")
        self._emit("agent/done", agent.id, status=status, result=result, reason=reason, steps=agent.steps,
                  **_unread(agent))
        self._end(agent)
        self._exited(agent, Exit(agent.id, "done", status, result), abnormal=False)

    def crash(self, agent: Agent, error: BaseException | str, where: str, kind: str | None = None) -> None:
        """The agent failed: log it, end it, and let its supervisor decide. ``kind``: the
        error's type (default: the exception's class)."""
        if agent.ended:
            return
        kind = kind or (type(error).__name__ if isinstance(error, BaseException) else "error")
        call = agent.interrupted_call
        if call is not None:
            # Failing over a call a crash (or a lost worker) left unknown: a restart would run
            # the agent's earlier steps again, effects and all. The agent fails for good, naming it.
            kind, error = "interrupted", f"{error} (after call {call}, interrupted by a crash or a lost worker)"
        self._ending(agent, "parent_stopped")
        self._emit("agent/error", agent.id, error=str(error), error_type=kind, where=where, **_unread(agent))
        self._end(agent)
        exit = Exit(agent.id, "failed", "error", str(error))
        if call is not None:
            self._detach(agent, exit)
        else:
            self._exited(agent, exit, abnormal=True)

    def stop_tree(self, agent: Agent, reason: str, *, detach: bool = True, report: bool = False) -> None:
        """Stop ``agent`` and its subtree; ``report``: tell its parent (someone else asked)."""
        if agent.ended:
            return
        # A shutdown stops every agent as such (resume continues them); otherwise the
        # children go because their parent did.
        self._ending(agent, "shutdown" if reason == "shutdown" else "parent_stopped")
        self._emit("agent/stopped", agent.id, reason=reason, **_unread(agent))
        self._end(agent)
        if detach:
            self._detach(agent, Exit(agent.id, "stopped", reason), report=report)

    def _ending(self, agent: Agent, reason: str) -> None:
        """Before ``agent``'s end is logged: what its ended children took counts (a resumed
        agent's records not yet charged again), and its live children stop (``reason``)."""
        agent.charge_due()
        self._stop_children(agent, reason)

    def _stop_children(self, agent: Agent, reason: str) -> None:
        for child in reversed(list(agent.children.values())):
            self.stop_tree(child, reason)

    def _end(self, agent: Agent) -> None:
        agent.ended = True
        agent.status = "ended"
        # Break the agent <-> inbox cycle, so refcounting frees it even after gc.freeze().
        agent.inbox.on_put = None
        if agent.scope is not None:
            agent.scope.cancel()
        self._locks.release_all(agent.id)
        if self._agents.get(agent.id) is agent:
            del self._agents[agent.id]
        self.ended += 1
        for hook in self._end_hooks:
            out = hook(agent.id)
            if inspect.iscoroutine(out):
                if self._task_group.is_open and not self._closing:
                    self._task_group.start_soon(_awaited, out)
                else:
                    out.close()

    def _detach(self, agent: Agent, exit: Exit, *, report: bool = True) -> None:
        """The agent ended for good: tell its parent, settle its budget, forget it."""
        parent = agent.parent
        if parent is not None and not parent.ended and (report or exit.outcome != "stopped"):
            # An OTP exit signal that the parent's step reads as a message: outside the
            # inbox bound, so a parent of 10,000 children that end at once hears of each.
            body = {"status": exit.status, "result": exit.result}
            self._bus.signal(agent.id, parent.id, exit.outcome, body)
        if self._bus.inbox(agent.id) is agent.inbox:
            self._bus.unregister(agent.id)
        siblings = agent.parent.children if agent.parent is not None else self._roots
        if siblings.get(agent.id) is agent:
            del siblings[agent.id]
        if parent is not None:
            self._charge(parent, agent, exit)
        self._exits[agent.id] = exit
        waiter = self._waiters.pop(agent.id, None)
        if waiter is not None:
            waiter.set()
        if not self._agents and self._idle_event is not None:
            self._idle_event.set()
            self._idle_event = None

    def _charge(self, parent: Agent, child: Agent, exit: Exit) -> None:
        """Settle the ended ``child``'s budget with its parent, and log what it was charged
        (a resume charges it again from the log: the child is not started again). Not
        logged for a shutdown: a resume starts the child again, and charges it when it ends."""
        parent.settle_child(child)
        if parent.grant.budget != UNLIMITED and not parent.ended and not (exit.outcome == "stopped"
                                                                          and exit.status == "shutdown"):
            self._emit("budget/charged", parent.id, child_id=child.id, steps=child.steps,
                       tool_calls=child.tool_calls, tokens=child.tokens, step=parent.inbox.steps)

    # ------------------------------------------------------------------ supervision

    def resupervise(self, agent: Agent, asked: Supervision | None) -> None:
        """Supervise ``agent``'s children from now on as ``asked`` (a live plan edit), granted
        as a spawn asking for it would be; its next restart decision uses it, and children it
        spawns from now on inherit it. Live descendants are granted theirs again under it, so
        none stays looser than its parent.

        Raises:
            PolicyError: the depth policy refuses it (the agent keeps what it has).
        """
        try:
            flags = self._supervision(agent, asked)
        except PolicyError as exc:
            self._emit("policy/refused", agent.parent.id if agent.parent else None, child_id=agent.id,
                       rule=exc.rule, error=str(exc))
            raise
        pending = [(agent, flags)]
        while pending:
            current, flags = pending.pop()
            if flags == current.grant.supervise:
                continue
            current.grant = replace(current.grant, supervise=flags)
            self._emit("agent/supervision", current.id, **flags.to_dict())
            for child in current.children.values():
                try:
                    again = self._supervision(child, child.spec.supervise)
                except PolicyError:  # it asked for what is now looser than its parent: cut to it
                    mine = child.grant.supervise
                    again = Supervision(mine.strategy, min(mine.max_restarts or 0, flags.max_restarts or 0),
                                        max(mine.restart_period or 0.0, flags.restart_period or 0.0))
                pending.append((child, again))

    def _supervision(self, agent: Agent, asked: Supervision | None) -> Supervision:
        parent = agent.parent.grant.supervise if agent.parent is not None and agent.depth >= 2 else None
        return grant_supervision(asked, parent, self.policy.rule_for(agent.depth).supervise, agent.depth)

    def _exited(self, agent: Agent, exit: Exit, *, abnormal: bool) -> None:
        sup = agent.parent
        if self._closing or (sup is not None and sup.ended) or not should_restart(agent.spec.restart, abnormal):
            self._detach(agent, exit)
            return
        flags = sup.grant.supervise if sup is not None else self._root_sup
        if sup is not None:
            sup.restart_times = sup.restart_times if sup.restart_times is not None else deque()
            times = sup.restart_times
        else:
            times = self._root_restarts
        assert flags.max_restarts is not None and flags.restart_period is not None and flags.strategy is not None
        if not within_intensity(times, clock(), flags.max_restarts, flags.restart_period):
            self._detach(agent, exit)
            if sup is not None:
                self.crash(sup, f"restart intensity exceeded: more than {flags.max_restarts} restarts in {flags.restart_period}s (last offender {agent.id})", "supervision", "RestartIntensity")
            else:
                self._emit("agent/error", agent.id, error=f"restart intensity exceeded for root agents (last offender {agent.id})", error_type="RestartIntensity", where="supervision", unread=0, unread_from={})
            return
        siblings = sup.children if sup is not None else self._roots
        plan = plan_restart(flags.strategy, [(cid, c.spec.restart) for cid, c in siblings.items()], agent.id)
        olds = {cid: siblings[cid] for cid in (*plan.stop, *plan.restart) if cid in siblings}
        for cid in plan.stop:
            self.stop_tree(olds[cid], "supervisor", detach=cid not in plan.restart)
        for cid in plan.restart:
            old = olds[cid]
            self.restarts += 1
            self._emit("agent/restarted", cid, parent_id=sup.id if sup else None, strategy=flags.strategy,
                       restarts=len(times), offender=agent.id, steps=old.steps, tool_calls=old.tool_calls,
                       tokens=old.tokens)
            self.spawn(old.spec, sup, previous=old)
            if sup is not None:
                # A restart notice, as a signal: the supervisor hears of it whatever its inbox holds.
                self._bus.signal(cid, sup.id, "restarted", {"offender": agent.id, "restarts": len(times)})

    def shutdown(self) -> None:
        """Stop every agent as at the end of the run (roots in reverse start order); no restarts from now on."""
        self._closing = True
        for root in reversed(list(self._roots.values())):
            self.stop_tree(root, "shutdown")

    # ------------------------------------------------------------------ the agent's clocks

    def _deadline(self, agent: Agent) -> None:
        if not agent.ended:
            self.finish(agent, "budget_exceeded", None, reason="max_seconds")

    def _tick(self, agent: Agent, due: float) -> None:
        if agent.ended:
            return
        agent.tick_due = True
        self._wake(agent)
        # The next tick keeps the period, but never piles up behind a slow loop.
        nxt = max(due + (agent.grant.budget.tick_ms or 0) / 1000, clock())
        self._timers.call_at(nxt, partial(self._tick, agent, nxt))


def _unread(agent: Agent) -> dict[str, Any]:
    """The end event's account of what the agent left in its inbox."""
    by_sender = agent.inbox.unread()
    return {"unread": sum(by_sender.values()), "unread_from": by_sender}


async def _awaited(coro: Awaitable[Any]) -> None:
    await coro
