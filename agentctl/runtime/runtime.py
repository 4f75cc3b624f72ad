"""The runtime: a tree of agents, the services they act through, and its public API.

Invoked from the reconciler and the CLI through :func:`open_runtime`. One task group
owns every task the runtime starts (the scheduler, the timer, and agents' tasks while
they wait on something); when ``open_runtime`` returns, none of them is left.

:class:`Runtime` is a facade: it builds the services, hands them to its parts in one frozen
:class:`~agentctl.runtime.kernel.Kernel`, and answers the public API from the parts, each
with the state it keeps: the supervision tree (:mod:`agentctl.runtime.tree`: spawning,
ending, restarting, shutdown), the scheduler (:mod:`agentctl.runtime.scheduler`: agents'
turns), lock conflicts (:mod:`agentctl.runtime.conflicts`) and the timers
(:mod:`agentctl.runtime.timers`). The scheduler carries actions out through the
interpreter, whose handle (:class:`~agentctl.runtime.action_services.ActionServices`) holds
only the services and parts actions act on, never the runtime.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from ..errors import ActionError
from ..events.emit import Emit
from ..events.journal import Journal
from ..policy import Policy, Supervision
from ..services.approvals import Approvals
from ..services.bus import Bus, SendResult
from ..services.locks import LockService
from ..services.tools.registry import ToolContext, ToolRegistry
from ..services.workers import LocalWorkPlane, WorkPlane
from .action_services import ActionServices
from .agent import Agent
from .agent_control import LLMChildFactory, RuntimeAgentControl
from .conflicts import Conflicts
from .kernel import Kernel, ReadyQueue, Tasks
from .resume_state import ResumeContext
from .scheduler import Backpressure, Scheduler
from .snapshots import take as take_snapshot
from .spec import AgentSpec, Strategy
from .timers import Timers, clock
from .tree import Exit, Tree


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
    """A tree of agents and the services they act through. Build with :func:`open_runtime`.

    ``llm_child`` builds the spec of an ``llm`` child for the ``agent/spawn`` tool when a
    script or python agent calls it (a run passes ``agentctl.agents.llm.llm_child_spec``);
    without it that tool refuses. ``approvals`` holds the calls agents' approval gates
    catch (a resumed run passes one built from its log).
    """

    def __init__(
        self,
        emit: Emit,
        *,
        run_id: str = "run",
        workspace: Path | None = None,
        plane: WorkPlane | None = None,
        tools: ToolRegistry | None = None,
        policy: Policy | None = None,
        root_tools: frozenset[str] | None = None,
        inbox_size: int = 256,
        shell_enabled: bool = False,
        protected: tuple[Path, ...] = (),
        strategy: Strategy = "one_for_one",
        max_restarts: int = 3,
        restart_period: float = 5.0,
        resume: ResumeContext | None = None,
        id_prefix: str = "",
        conflicts: str = "first_come",
        conflict_timeout: float = 10.0,
        lock_wait: float = 5.0,
        backpressure: Backpressure | None = None,
        llm_child: LLMChildFactory | None = None,
        approvals: Approvals | None = None,
    ) -> None:
        from ..services.tools import default_registry

        self.emit = emit
        self.run_id = run_id
        self.workspace = Path(workspace) if workspace is not None else None
        self.tools = tools if tools is not None else default_registry()
        self.plane = plane if plane is not None else LocalWorkPlane(emit, tools=self.tools)
        self.bus = Bus(emit, inbox_size=inbox_size, id_prefix=id_prefix)
        self.locks = LockService(emit, id_prefix=id_prefix)
        self.resume = resume
        self.approvals = approvals if approvals is not None else Approvals(emit, id_prefix=id_prefix)
        self.shell_enabled = shell_enabled
        self.protected = protected
        self.lock_wait = lock_wait
        self.timers = Timers()
        kernel = Kernel(emit, self.bus, self.locks, self.tools, self.timers, ReadyQueue(), Tasks(), {})
        self._kernel = kernel
        self._agents = kernel.agents
        self._tree = Tree(kernel, policy or Policy(), resume, root_tools, inbox_size=inbox_size, strategy=strategy,
                          max_restarts=max_restarts, restart_period=restart_period)
        self._conflicts = Conflicts(kernel, conflicts, conflict_timeout)
        services = ActionServices(self.bus, self.locks, self.tools, self.plane, self.approvals, kernel.agents, self._tree,
                                  self._conflicts, kernel.set_status, self._tool_context, resume)
        self._scheduler = Scheduler(kernel, self._tree, services, backpressure)
        self._agent_control = RuntimeAgentControl(self, llm_child)

    # ------------------------------------------------------------------ public API

    def spawn(self, spec: AgentSpec, parent_id: str | None = None, *, journal: Journal | None = None) -> str:
        """Start an agent from ``spec`` under ``parent_id`` (``None``: a root agent).

        With ``journal`` (crash resume) the agent is started again rather than anew: its
        recorded messages are put back in its inbox, the locks it held are taken back
        for it, and its step function replays the journal (see ``runtime.recovery``).

        Raises:
            PolicyError: the policy or the parent's budget refuses the child.
            ActionError: the id is taken by a live agent or the parent is unknown.
        """
        parent = None
        if parent_id is not None:
            parent = self._agents.get(parent_id)
            if parent is None:
                raise ActionError(f"no live agent {parent_id!r} to spawn under")
        return self._tree.spawn(spec, parent, journal=journal)

    def snapshots(self) -> dict[str, dict[str, Any]]:
        """Snapshots of the live agents whose state can be kept now, by agent id (see
        :mod:`agentctl.runtime.snapshots`; the checkpointer takes them with each checkpoint).
        An agent that has not taken a step since its latest snapshot is left out: that one
        still stands, so a checkpoint costs what agents did since the last."""
        taken = {}
        for agent_id, agent in self._agents.items():
            if agent.snapped_at == agent.steps:
                continue
            snapshot = take_snapshot(agent)
            if snapshot is not None:
                taken[agent_id] = snapshot
                agent.snapped_at = agent.steps
        return taken

    @property
    def policy(self) -> Policy:
        """The policy spawns are granted under now."""
        return self._tree.policy

    def protect(self, paths: Iterable[Path]) -> None:
        """Keep ``paths`` out of the file tools' reach (and read-only in containers) from the
        next tool call on: the modules a live plan edit names, before they are imported."""
        self.protected = tuple(dict.fromkeys((*self.protected, *paths)))

    def set_policy(self, policy: Policy) -> None:
        """Grant every spawn from now on under ``policy`` (a live plan edit); live agents keep their grants."""
        self._tree.policy = policy

    def set_supervision(self, agent_id: str, asked: Supervision | None) -> bool:
        """Supervise ``agent_id``'s children from now on as ``asked`` (a live plan edit of a
        task's ``supervise``), without restarting it; False if it is not live.

        Raises:
            PolicyError: the depth policy refuses it (logged as ``policy/refused``).
        """
        agent = self._agents.get(agent_id)
        if agent is None:
            return False
        self._tree.resupervise(agent, asked)
        return True

    def stop(self, agent_id: str, reason: str = "requested") -> bool:
        """Stop ``agent_id`` and its subtree, children first; its parent gets a ``stopped``
        signal. False if it is not live."""
        agent = self._agents.get(agent_id)
        if agent is None:
            return False
        self._tree.stop_tree(agent, reason, report=True)
        return True

    def send(self, sender: str, to: str, kind: str = "chat", body: Any = None, thread_id: str | None = None) -> SendResult:
        """Route a message from outside the tree (``sender`` ``"user"`` reaches any agent)."""
        return self.bus.send(sender, to, kind, body, thread_id)

    def signal(self, sender: str, to: str, kind: str, body: Any = None) -> SendResult:
        """Deliver a runtime signal (e.g. the CLI's plan wake-up): never refused for room."""
        return self.bus.signal(sender, to, kind, body)

    def spec_of(self, agent_id: str) -> AgentSpec | None:
        """The spec of live agent ``agent_id`` (``None`` if it is not live)."""
        agent = self._agents.get(agent_id)
        return agent.spec if agent is not None else None

    def parent_of(self, agent_id: str) -> str | None:
        """The parent of live agent ``agent_id`` (``None`` for a root or an agent not live)."""
        agent = self._agents.get(agent_id)
        return agent.parent.id if agent is not None and agent.parent is not None else None

    def finish_soon(self, agent_id: str, status: str, result: Any) -> None:
        """End live agent ``agent_id`` with ``status`` and ``result`` on the timer task's next
        turn (from inside one of its own tasks, e.g. a tool it called)."""
        agent = self._agents.get(agent_id)
        if agent is not None:
            self.timers.call_later(0.0, lambda: self._tree.finish(agent, status, result))

    def is_live(self, agent_id: str) -> bool:
        """Whether ``agent_id`` is running (or restarting)."""
        return agent_id in self._agents

    def live(self) -> list[str]:
        """Ids of live agents, in spawn order."""
        return list(self._agents)

    def exit_of(self, agent_id: str) -> Exit | None:
        """How ``agent_id`` last ended, if it has."""
        return self._tree.exit_of(agent_id)

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
            "budget_left": agent.remaining(clock()),
            "steps": agent.steps,
        }

    async def wait(self, agent_id: str) -> Exit:
        """Wait until ``agent_id`` ends for good (not merely for a restart)."""
        return await self._tree.wait(agent_id)

    async def wait_idle(self) -> None:
        """Wait until no agent is live."""
        await self._tree.wait_idle()

    def on_agent_end(self, fn: Callable[[str], Any]) -> None:
        """Call ``fn(agent_id)`` whenever an agent ends (before a restart too), e.g. to free
        what a tool started for it. ``fn`` must not raise; a coroutine it returns runs as a
        runtime task, except during shutdown (owners clean up at run end themselves)."""
        self._tree.on_agent_end(fn)

    def statistics(self) -> RuntimeStatistics:
        """Counters of the tree and the scheduler."""
        tree, scheduler = self._tree, self._scheduler
        return RuntimeStatistics(len(self._agents), tree.spawned, tree.ended, tree.restarts, scheduler.steps,
                                 len(self._kernel.ready), scheduler.tasks)

    # ------------------------------------------------------------------ lifetime (open_runtime)

    def _start(self, tg: anyio.abc.TaskGroup) -> None:
        self._kernel.tasks.open(tg)
        tg.start_soon(self._scheduler.run, name="agentctl:scheduler")
        tg.start_soon(self.timers.run, name="agentctl:timers")
        tg.start_soon(self.plane.serve, name="agentctl:plane")

    def _close(self) -> None:
        self._tree.shutdown()

    # ------------------------------------------------------------------ for the interpreter's handle

    def _tool_context(self, agent: Agent) -> ToolContext:
        """What a tool called by ``agent`` may know and do (never the runtime itself)."""
        return ToolContext(
            agent_id=agent.id, workspace=self.workspace or Path(os.getcwd()), run_id=self.run_id,
            locks=self.locks, lock_wait=self.lock_wait, shell_enabled=self.shell_enabled, protected=self.protected,
            agents=self._agent_control,
        )


@asynccontextmanager
async def open_runtime(emit: Emit, **options: Any) -> AsyncIterator[Runtime]:
    """Run a :class:`Runtime` for the duration of the ``async with`` block.

    On the way out, normal or not, every live agent is stopped (reason ``shutdown``,
    roots in reverse start order, children first) and every task the runtime started
    has ended before this returns. ``options`` are :class:`Runtime`'s keyword arguments.
    """
    rt = Runtime(emit, **options)
    async with anyio.create_task_group() as tg:
        rt._start(tg)
        try:
            yield rt
        finally:
            rt._close()
            tg.cancel_scope.cancel()
