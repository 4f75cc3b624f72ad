"""The runtime: the supervisor tree, the scheduler that steps agents, and shutdown.

Invoked from the reconciler and the CLI through :func:`open_runtime`. One task group
owns every task the runtime starts (the scheduler, the timer, and agents' tasks while
they wait on something); when ``open_runtime`` returns, none of them is left.

How an agent runs: a woken agent goes on the ready queue; the scheduler drains the
queue, calls each agent's step with its new messages and the results of its previous
actions, and carries out the actions. If they all complete at once the agent is simply
queued again with their results; if one must wait, the agent gets a task of its own
until it has its results. An agent with nothing to do has no task at all.
"""

from __future__ import annotations

import gc
import inspect
import os
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel

from ..errors import ActionError, AgentctlError, PolicyError, ToolError
from ..events.journal import Journal
from ..policy import UNLIMITED, Budget, Grant, Policy, grant_child
from ..services.bus import Bus, Inbox, Message
from ..services.locks import LockService
from .agent import Agent
from .conflicts import Conflicts
from .interpreter import check_actions, is_fast, run_action, run_fast
from .replay import Replay, ResumeContext
from .spec import AgentSpec, StepContext
from .supervisor import plan_restart, should_restart, within_intensity
from .timers import Timers

Emit = Callable[..., dict]
#: Agent turns the scheduler runs before it yields to the event loop.
THROUGHPUT = 512
#: Spawns between two ``gc.freeze()`` calls.
FREEZE_EVERY = 10_000


@dataclass(frozen=True, slots=True)
class Exit:
    """How an agent ended: ``done`` (with its status), ``failed`` or ``stopped``."""

    agent_id: str
    outcome: str
    status: str | None = None
    result: Any = None


@dataclass(frozen=True, slots=True)
class RuntimeStatistics:
    """Counters for the live view and benchmarks."""

    live: int
    spawned: int
    ended: int
    restarts: int
    steps: int
    ready: int
    tasks: int


class Runtime:
    """A tree of agents and the services they act through. Build with :func:`open_runtime`."""

    def __init__(
        self,
        emit: Emit,
        *,
        run_id: str = "run",
        workspace: Path | None = None,
        plane: Any = None,
        tools: Any = None,
        policy: Policy | None = None,
        root_tools: frozenset[str] | None = None,
        inbox_size: int = 256,
        shell_enabled: bool = False,
        strategy: str = "one_for_one",
        max_restarts: int = 3,
        restart_period: float = 5.0,
        resume: ResumeContext | None = None,
        id_prefix: str = "",
        conflicts: str = "first_come",
        conflict_timeout: float = 10.0,
    ) -> None:
        from ..services.tools import default_registry
        from ..services.workers import LocalWorkPlane

        self.emit = emit
        self.run_id = run_id
        self.workspace = Path(workspace) if workspace is not None else None
        self.tools = tools if tools is not None else default_registry()
        self.plane = plane if plane is not None else LocalWorkPlane(emit, tools=self.tools)
        self.policy = policy or Policy()
        self.bus = Bus(emit, inbox_size=inbox_size, id_prefix=id_prefix)
        self.locks = LockService(emit, id_prefix=id_prefix)
        self.resume = resume
        self.conflicts = Conflicts(self, conflicts, conflict_timeout)
        self._inbox_size = inbox_size
        self.shell_enabled = shell_enabled
        self._root_grant = Grant(None, frozenset(self.tools.names()) if root_tools is None else root_tools, UNLIMITED)
        # The runtime supervises root agents the way an agent supervises its children.
        self._root_sup = AgentSpec(id="", step=_never, strategy=strategy, max_restarts=max_restarts, restart_period=restart_period)  # type: ignore[arg-type]
        self._root_restarts: deque[float] = deque()
        self._agents: dict[str, Agent] = {}
        self._roots: dict[str, Agent] = {}
        self._exits: dict[str, Exit] = {}
        self._waiters: dict[str, anyio.Event] = {}
        self._ready: deque[Agent] = deque()
        self._ready_event: anyio.Event | None = None
        self.timers = Timers()
        self._idle_event: anyio.Event | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._closing = False
        self._end_hooks: list[Callable[[str], Any]] = []
        self._spawned = self._ended = self._restarts = self._steps = self._tasks = 0

    # ------------------------------------------------------------------ public API

    def spawn(self, spec: AgentSpec, parent_id: str | None = None, *, journal: Journal | None = None) -> str:
        """Start an agent from ``spec`` under ``parent_id`` (``None``: a root agent).

        With ``journal`` (crash resume) the agent is started again rather than anew: its
        recorded messages are put back in its inbox, the locks it held are taken back
        for it, and its step function replays the journal (see ``runtime.replay``).

        Raises:
            PolicyError: the policy or the parent's budget refuses the child.
            ActionError: the id is taken by a live agent or the parent is unknown.
        """
        parent = None
        if parent_id is not None:
            parent = self._agents.get(parent_id)
            if parent is None:
                raise ActionError(f"no live agent {parent_id!r} to spawn under")
        return self._spawn(spec, parent, journal=journal)

    def stop(self, agent_id: str, reason: str = "requested") -> bool:
        """Stop ``agent_id`` and its subtree, children first. False if it is not live."""
        agent = self._agents.get(agent_id)
        if agent is None:
            return False
        self._stop_tree(agent, reason)
        return True

    def send(self, sender: str, to: str, kind: str = "chat", body: Any = None, thread_id: str | None = None) -> Any:
        """Route a message from outside the tree (``sender`` ``"user"`` reaches any agent)."""
        return self.bus.send(sender, to, kind, body, thread_id)

    def is_live(self, agent_id: str) -> bool:
        """Whether ``agent_id`` is running (or restarting)."""
        return agent_id in self._agents

    def live(self) -> list[str]:
        """Ids of live agents, in spawn order."""
        return list(self._agents)

    def exit_of(self, agent_id: str) -> Exit | None:
        """How ``agent_id`` last ended, if it has."""
        return self._exits.get(agent_id)

    def info(self, agent_id: str) -> dict[str, Any] | None:
        """A snapshot of a live agent: depth, parent, status, children, budget left."""
        agent = self._agents.get(agent_id)
        if agent is None:
            return None
        return {
            "id": agent.id,
            "parent_id": agent.parent.id if agent.parent else None,
            "depth": agent.depth,
            "status": agent.status,
            "children": list(agent.children),
            "model": agent.grant.model,
            "tools": sorted(agent.grant.tools),
            "budget": agent.grant.budget,
            "budget_left": agent.remaining(anyio.current_time()),
            "steps": agent.steps,
        }

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
        """Call ``fn(agent_id)`` whenever an agent ends (before a restart too), e.g. to free
        what a tool started for it. ``fn`` must not raise; a coroutine it returns runs as a
        runtime task, except during shutdown (owners clean up at run end themselves)."""
        self._end_hooks.append(fn)

    def statistics(self) -> RuntimeStatistics:
        """Counters of the tree and the scheduler."""
        return RuntimeStatistics(len(self._agents), self._spawned, self._ended, self._restarts, self._steps, len(self._ready), self._tasks)

    # ------------------------------------------------------------------ the tree

    def _spawn(
        self, spec: AgentSpec, parent: Agent | None, *, previous: Agent | None = None, journal: Journal | None = None
    ) -> str:
        if previous is None:
            grant = self._grant(spec, parent)
        else:
            grant = previous.grant
        inbox = self.bus.register(spec.id, parent.id if parent else None, spec.topology, self._inbox_for(journal))
        agent = Agent(spec, parent, grant, inbox)
        inbox.on_put = partial(self._wake, agent)
        siblings = parent.children if parent is not None else self._roots
        siblings[spec.id] = agent
        self._agents[spec.id] = agent
        now = anyio.current_time()
        if previous is not None:
            agent.steps, agent.tool_calls, agent.tokens = previous.steps, previous.tool_calls, previous.tokens
            agent.reserved, agent.spawned_children = previous.reserved, 0
            agent.deadline = previous.deadline
        else:
            self._spawned += 1
            if self._spawned % FREEZE_EVERY == 0:
                # A large tree of idle agents is long-lived: move it out of the GC's
                # generations so collections stop rescanning it (pauses over 100 ms at
                # 100,000 agents otherwise). Ended agents are still freed by refcounting.
                gc.freeze()
            if parent is not None:
                parent.spawned_children += 1
                parent.reserve_for(grant.budget)
            if grant.budget.max_seconds is not None:
                agent.deadline = now + grant.budget.max_seconds
            if journal is not None:
                self._resumed(agent, journal)
            else:
                self.emit(
                    "agent/spawned", spec.id,
                    parent_id=parent.id if parent else None, depth=agent.depth, model=grant.model,
                    kind=spec.kind, tools=sorted(grant.tools), budget=grant.budget.to_dict(), restart=spec.restart,
                )
        if agent.deadline is not None:
            self.timers.call_at(agent.deadline, partial(self._deadline, agent))
        if grant.budget.tick_ms:
            first = now + grant.budget.tick_ms / 1000
            self.timers.call_at(first, partial(self._tick, agent, first))
        self._wake(agent)
        return spec.id

    def _inbox_for(self, journal: Journal | None) -> Inbox | None:
        if journal is None or not journal.inbox:
            return None
        # Room for every recorded message on top of the usual capacity: none may be lost.
        inbox = Inbox(self._inbox_size + len(journal.inbox))
        for m in journal.inbox:
            inbox.put_nowait(Message(str(m["msg_id"]), str(m["from"]), str(m["to"]), str(m["kind"]), m.get("body"),
                                     m.get("thread_id"), int(m.get("t") or 0), m.get("via")))
        return inbox

    def _resumed(self, agent: Agent, journal: Journal) -> None:
        assert self.resume is not None
        for path, holders in self.resume.locks.items():
            if agent.id in holders:
                self.locks.try_acquire(agent.id, path, holders[agent.id])
        if journal.effects:
            agent.replay = Replay(journal)
        self.emit("agent/resumed", agent.id, parent_id=agent.parent.id if agent.parent else None,
                  replay=len(journal.effects), messages=len(journal.inbox))

    def _grant(self, spec: AgentSpec, parent: Agent | None) -> Grant:
        if spec.id in self._agents:
            raise ActionError(f"agent id {spec.id!r} is already live")
        depth = 0 if parent is None else parent.depth + 1
        try:
            if parent is not None and parent.grant.budget.max_children is not None and parent.spawned_children >= parent.grant.budget.max_children:
                raise PolicyError("max_children", f"{parent.id} may spawn at most {parent.grant.budget.max_children} children")
            return grant_child(
                policy=self.policy, depth=depth,
                parent=parent.grant if parent is not None else self._root_grant,
                parent_remaining=parent.remaining(anyio.current_time()) if parent is not None else None,
                model=spec.model, tools=None if spec.tools is None else self.tools.toolset(spec.tools), budget=spec.budget,
            )
        except AgentctlError as exc:
            rule = getattr(exc, "rule", "tools" if isinstance(exc, ToolError) else "id")
            self.emit("policy/refused", parent.id if parent else None, child_id=spec.id, rule=rule, error=str(exc))
            raise

    def _finish(self, agent: Agent, status: str, result: Any, reason: str | None = None) -> None:
        """The agent is done (its own ``done``, or a budget ran out)."""
        if agent.ended:
            return
        self._stop_children(agent, "parent_stopped")
        self.emit("agent/done", agent.id, status=status, result=result, reason=reason, steps=agent.steps)
        self._end(agent)
        self._exited(agent, Exit(agent.id, "done", status, result), abnormal=False)

    def _crash(self, agent: Agent, error: BaseException | str, where: str) -> None:
        """The agent failed: log it, end it, and let its supervisor decide."""
        if agent.ended:
            return
        kind = error if isinstance(error, str) else type(error).__name__
        self.emit("agent/error", agent.id, error=str(error), error_type=kind, where=where)
        self._stop_children(agent, "parent_stopped")
        self._end(agent)
        self._exited(agent, Exit(agent.id, "failed", "error", str(error)), abnormal=True)

    def _stop_tree(self, agent: Agent, reason: str, *, detach: bool = True) -> None:
        if agent.ended:
            return
        # A shutdown stops every agent as such (resume continues them); otherwise the
        # children go because their parent did.
        self._stop_children(agent, "shutdown" if reason == "shutdown" else "parent_stopped")
        self.emit("agent/stopped", agent.id, reason=reason)
        self._end(agent)
        if detach:
            self._detach(agent, Exit(agent.id, "stopped", reason))

    def _stop_children(self, agent: Agent, reason: str) -> None:
        for child in reversed(list(agent.children.values())):
            self._stop_tree(child, reason)

    def _end(self, agent: Agent) -> None:
        agent.ended = True
        agent.status = "ended"
        # Break the agent <-> inbox cycle, so refcounting frees it even after gc.freeze().
        agent.inbox.on_put = None
        if agent.scope is not None:
            agent.scope.cancel()
        self.locks.release_all(agent.id)
        if self._agents.get(agent.id) is agent:
            del self._agents[agent.id]
        self._ended += 1
        for hook in self._end_hooks:
            out = hook(agent.id)
            if inspect.iscoroutine(out):
                if self._tg is not None and not self._closing:
                    self._tg.start_soon(_awaited, out)
                else:
                    out.close()

    def _detach(self, agent: Agent, exit: Exit) -> None:
        """The agent ended for good: tell its parent, settle its budget, forget it."""
        parent = agent.parent
        if parent is not None and not parent.ended and exit.outcome != "stopped":
            # Like an OTP exit signal, but an ordinary message the parent's step can read.
            body = {"status": exit.status, "result": exit.result}
            self.bus.send(agent.id, parent.id, "done" if exit.outcome == "done" else "failed", body)
        if self.bus.inbox(agent.id) is agent.inbox:
            self.bus.unregister(agent.id)
        siblings = agent.parent.children if agent.parent is not None else self._roots
        if siblings.get(agent.id) is agent:
            del siblings[agent.id]
        if agent.parent is not None:
            agent.parent.settle_child(agent)
        self._exits[agent.id] = exit
        waiter = self._waiters.pop(agent.id, None)
        if waiter is not None:
            waiter.set()
        if not self._agents and self._idle_event is not None:
            self._idle_event.set()
            self._idle_event = None

    def _exited(self, agent: Agent, exit: Exit, *, abnormal: bool) -> None:
        sup = agent.parent
        if self._closing or (sup is not None and sup.ended) or not should_restart(agent.spec.restart, abnormal):
            self._detach(agent, exit)
            return
        sup_spec = sup.spec if sup is not None else self._root_sup
        if sup is not None:
            sup.restart_times = sup.restart_times if sup.restart_times is not None else deque()
            times = sup.restart_times
        else:
            times = self._root_restarts
        if not within_intensity(times, anyio.current_time(), sup_spec.max_restarts, sup_spec.restart_period):
            self._detach(agent, exit)
            if sup is not None:
                self._crash(sup, f"restart intensity exceeded: more than {sup_spec.max_restarts} restarts in {sup_spec.restart_period}s (last offender {agent.id})", "supervision")
            else:
                self.emit("agent/error", agent.id, error=f"restart intensity exceeded for root agents (last offender {agent.id})", error_type="RestartIntensity", where="supervision")
            return
        siblings = sup.children if sup is not None else self._roots
        plan = plan_restart(sup_spec.strategy, [(cid, c.spec.restart) for cid, c in siblings.items()], agent.id)
        olds = {cid: siblings[cid] for cid in (*plan.stop, *plan.restart) if cid in siblings}
        for cid in plan.stop:
            self._stop_tree(olds[cid], "supervisor", detach=cid not in plan.restart)
        for cid in plan.restart:
            old = olds[cid]
            self._restarts += 1
            self.emit("agent/restarted", cid, parent_id=sup.id if sup else None, strategy=sup_spec.strategy, restarts=len(times), offender=agent.id)
            self._spawn(old.spec, sup, previous=old)

    def _shutdown(self) -> None:
        self._closing = True
        for root in reversed(list(self._roots.values())):
            self._stop_tree(root, "shutdown")

    # ------------------------------------------------------------------ stepping

    def _wake(self, agent: Agent) -> None:
        if agent.scope is not None:
            if agent.interrupt is not None:
                agent.interrupt.set()
            return
        if agent.scheduled or agent.ended:
            return
        agent.scheduled = True
        self._ready.append(agent)
        if self._ready_event is not None:
            self._ready_event.set()
            self._ready_event = None

    def _set_status(self, agent: Agent, status: str, reason: str | None) -> None:
        if agent.status != status and not agent.ended:
            agent.status = status
            self.emit("agent/status", agent.id, status=status, reason=reason, steps=agent.steps)

    async def _scheduler(self) -> None:
        ready = self._ready
        while True:
            if not ready:
                self._ready_event = anyio.Event()
                await self._ready_event.wait()
            # Like an actor dispatcher's throughput setting: run up to THROUGHPUT turns
            # (agents woken meanwhile included) before letting I/O and tasks run.
            for _ in range(THROUGHPUT):
                if not ready:
                    break
                agent = ready.popleft()
                agent.scheduled = False
                self._turn(agent)
            await anyio.lowlevel.checkpoint()

    def _turn(self, agent: Agent) -> None:
        if agent.ended or agent.scope is not None:
            return
        if not agent.started:
            reason = "start"
            agent.started = True
        elif agent.results:
            reason = "results"
        elif len(agent.inbox):
            reason = "message"
        elif agent.tick_due:
            reason = "tick"
        else:
            return
        over = agent.exceeded()
        if over is not None:
            self._finish(agent, "budget_exceeded", None, reason=over)
            return
        messages = tuple(agent.inbox.drain()) if len(agent.inbox) else ()
        results, agent.results, agent.tick_due = agent.results, (), False
        agent.steps += 1
        self._steps += 1
        ctx = StepContext(
            agent.id, agent.parent.id if agent.parent else None, agent.depth, agent.spec, reason,
            messages, results, agent.state, agent.grant.model, agent.grant.tools, agent.grant.budget,
            tuple(agent.children) if agent.children else (), agent.steps, partial(self._left, agent),
        )
        try:
            out = agent.spec.step(ctx)
        except Exception as exc:  # a step function's bug is the agent's failure, not the runtime's
            self._crash(agent, exc, "step")
            return
        if inspect.isawaitable(out):
            self._start_task(agent, partial(self._async_step, agent, out))
        else:
            self._act(agent, out)

    def _act(self, agent: Agent, out: object) -> None:
        try:
            actions = check_actions(out)
        except ActionError as exc:
            self._crash(agent, exc, "action")
            return
        if not actions:
            self._set_status(agent, "waiting", "idle")
            if len(agent.inbox):
                self._wake(agent)
            return
        if all(map(is_fast, actions)):
            results = []
            add = results.append
            for action in actions:
                add(run_fast(self, agent, action))
                if agent.ended:
                    return
            agent.results = tuple(results)
            self._wake(agent)
        else:
            self._start_task(agent, partial(self._run_actions, agent, actions))

    async def _async_step(self, agent: Agent, pending: Awaitable[object]) -> None:
        try:
            out = await pending
        except Exception as exc:
            self._crash(agent, exc, "step")
            return
        actions = out
        try:
            actions = check_actions(out)
        except ActionError as exc:
            self._crash(agent, exc, "action")
            return
        if not actions or all(is_fast(a) for a in actions):
            agent.scope = None
            self._act(agent, actions)
        else:
            await self._run_actions(agent, actions)

    async def _run_actions(self, agent: Agent, actions: list[Any]) -> None:
        results = []
        for action in actions:
            results.append(await run_action(self, agent, action))
            if agent.ended:
                return
        agent.results = tuple(results)

    def _start_task(self, agent: Agent, work: Callable[[], Awaitable[None]]) -> None:
        assert self._tg is not None
        self._set_status(agent, "running", "act")
        scope = anyio.CancelScope()
        agent.scope = scope
        self._tasks += 1
        self._tg.start_soon(self._agent_task, agent, scope, work, name=f"agent:{agent.id}")

    async def _agent_task(self, agent: Agent, scope: anyio.CancelScope, work: Callable[[], Awaitable[None]]) -> None:
        try:
            with scope:
                await work()
        except Exception as exc:
            self._crash(agent, exc, "action")
        finally:
            self._tasks -= 1
            if agent.scope is scope:
                agent.scope = None
                if not agent.ended:
                    if agent.results or len(agent.inbox):
                        self._wake(agent)
                    else:
                        self._set_status(agent, "waiting", "idle")

    @staticmethod
    def _left(agent: Agent) -> Budget:
        return agent.remaining(anyio.current_time())

    def _tool_context(self, agent: Agent) -> Any:
        from ..services.tools import ToolContext

        return ToolContext(
            agent_id=agent.id, workspace=self.workspace or Path(os.getcwd()), run_id=self.run_id,
            locks=self.locks, shell_enabled=self.shell_enabled, extra={"runtime": self},
        )

    # ------------------------------------------------------------------ timers

    def _call_later(self, delay: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` from the timer task after ``delay`` seconds."""
        self.timers.call_later(delay, fn)

    def _deadline(self, agent: Agent) -> None:
        if not agent.ended:
            self._finish(agent, "budget_exceeded", None, reason="max_seconds")

    def _tick(self, agent: Agent, due: float) -> None:
        if agent.ended:
            return
        agent.tick_due = True
        self._wake(agent)
        # The next tick keeps the period, but never piles up behind a slow loop.
        nxt = max(due + (agent.grant.budget.tick_ms or 0) / 1000, anyio.current_time())
        self.timers.call_at(nxt, partial(self._tick, agent, nxt))


def _never(ctx: StepContext) -> None:
    return None


async def _awaited(coro: Awaitable[Any]) -> None:
    await coro


@asynccontextmanager
async def open_runtime(emit: Emit, **options: Any) -> AsyncIterator[Runtime]:
    """Run a :class:`Runtime` for the duration of the ``async with`` block.

    On the way out, normal or not, every live agent is stopped (reason ``shutdown``,
    roots in reverse start order, children first) and every task the runtime started
    has ended before this returns. ``options`` are :class:`Runtime`'s keyword arguments.
    """
    rt = Runtime(emit, **options)
    async with anyio.create_task_group() as tg:
        rt._tg = tg
        tg.start_soon(rt._scheduler, name="agentctl:scheduler")
        tg.start_soon(rt.timers.run, name="agentctl:timers")
        try:
            yield rt
        finally:
            rt._shutdown()
            tg.cancel_scope.cancel()
