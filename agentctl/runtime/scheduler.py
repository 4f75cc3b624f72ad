"""The scheduler: the ready queue, agents' turns, and carrying out what a step returned.

A part of :class:`agentctl.runtime.runtime.Runtime`; ``open_runtime`` starts
:meth:`Scheduler.run` as a task, the tree (:mod:`agentctl.runtime.tree`), inboxes and timers
wake agents through the kernel's ready queue (:class:`~agentctl.runtime.kernel.ReadyQueue`),
and agents' statuses are recorded through the kernel (:meth:`~agentctl.runtime.kernel.Kernel.set_status`).

How an agent runs: a woken agent goes on the ready queue; the scheduler drains the
queue, calls each agent's step with its new messages and the results of its previous
actions, and carries out the actions. If they all complete at once the agent is simply
queued again with their results; if one must wait, the agent gets a task of its own
until it has its results. An agent with nothing to do has no task at all.

Backpressure: when the event log's writer falls behind (:class:`Backpressure`), the
scheduler stops its batch of turns and waits for the writer, and an agent whose step
returned more actions than the log can take at once carries the rest out in its own
task, waiting for the writer between them. An agent flooding the log is slowed to the
writer's pace, and memory stays bounded.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.lowlevel

from ..errors import ActionError
from ..policy import Budget
from .agent import Agent
from .interpreter import check_actions, is_fast, run_action, run_fast
from .kernel import Kernel
from .spec import StepContext
from .timers import clock
from .tree import Tree

if TYPE_CHECKING:
    from .action_services import ActionServices

#: Agent turns the scheduler runs before it yields to the event loop.
THROUGHPUT = 512


class Backpressure(Protocol):
    """The event log's side of backpressure (:class:`agentctl.events.log.EventLog` is one)."""

    def behind(self) -> bool:
        """Whether producers should wait for the writer now."""
        ...

    async def caught_up(self) -> None:
        """Wait until the writer has taken the backlog."""
        ...


class Scheduler:
    """Runs agents' turns, all in one task; an agent that must wait gets a task of its own meanwhile.

    Takes turns from the ``kernel``'s ready queue, ends agents through the ``tree`` when a
    step fails or a budget runs out, and carries actions out through ``services`` (the
    interpreter's handle, :mod:`agentctl.runtime.interpreter`).
    """

    def __init__(self, kernel: Kernel, tree: Tree, services: ActionServices, backpressure: Backpressure | None) -> None:
        self._set_status = kernel.set_status
        self._queue = kernel.ready
        self._ready = kernel.ready.agents
        self._wake = kernel.ready.wake
        self._task_group = kernel.tasks
        self._finish = tree.finish
        self._crash = tree.crash
        self._caught_up = tree.caught_up
        self._services = services
        #: Turns taken and agents' own tasks running now.
        self.steps = self.tasks = 0
        self._backpressure = backpressure
        self._behind: Callable[[], bool] = backpressure.behind if backpressure is not None else _never_behind

    async def run(self) -> None:
        """Take turns for as long as the runtime runs (its task, started by ``open_runtime``)."""
        ready = self._ready
        queue = self._queue
        while True:
            if not ready:
                event = queue.event = anyio.Event()
                await event.wait()
            # Like an actor dispatcher's throughput setting: run up to THROUGHPUT turns
            # (agents woken meanwhile included) before letting I/O and tasks run.
            behind = self._behind
            for _ in range(THROUGHPUT):
                if not ready or behind():
                    break
                agent = ready.popleft()
                agent.scheduled = False
                self._turn(agent)
            if self._backpressure is not None and behind():
                await self._backpressure.caught_up()
            else:
                await anyio.lowlevel.checkpoint()

    def _turn(self, agent: Agent) -> None:
        if agent.ended or agent.scope is not None:
            return
        if agent.resume_actions is not None:
            # Restored from a snapshot: the calls it was waiting for come first.
            awaited, agent.resume_actions = agent.resume_actions, None
            self._carry_out(agent, awaited)
            return
        if not agent.started:
            reason = "start"
            agent.started = True
        elif agent.results:
            reason = "results"
        elif len(agent.inbox):
            reason = "message"
            if agent.replay is None and agent.heard_t is None:
                agent.clock_t = None  # woken by a message that came now
        elif agent.tick_due:
            reason = "tick"
        else:
            return
        if agent.charges is not None:
            # Resumed: its children that ended by its step so far are charged before its next.
            agent.charge_due(step=agent.inbox.steps)
        over = agent.exceeded()
        if over is not None:
            self._finish(agent, "budget_exceeded", None, reason=over)
            return
        inbox = agent.inbox
        inbox.steps += 1
        messages = tuple(inbox.drain()) if len(inbox) else ()
        heard = agent.heard_t
        if agent.lineup is not None:
            agent.read_ends(messages, live=agent.replay is None and heard is None)
        if heard is not None and messages:
            # A replayed step ran once the recorded messages it reads had come.
            agent.heard_t = None
            if agent.clock_t is not None:
                agent.clock_t = max(agent.clock_t, heard / 1000)
        rep = agent.replay
        if rep is not None and rep.mail:
            # A resumed agent: what came during this step the first time, the next step reads.
            agent.heard_t = rep.deliver(inbox)
            if rep.finished:
                agent.replay = None
        if inbox.held is not None and agent.replay is None:
            # Its replay is over: what came live meanwhile is read after what it replayed, with
            # the last recorded messages, or in the step after this one (which reads the last
            # recorded outcome), unless an action carried out live first lets it in.
            self._caught_up(agent)
        results, agent.results, agent.tick_due = agent.results, (), False
        agent.steps += 1
        self.steps += 1
        ctx = StepContext(
            agent.id, agent.parent.id if agent.parent else None, agent.depth, agent.spec, reason,
            messages, results, agent.state, agent.grant.model, agent.grant.tools, agent.grant.budget,
            agent.child_ids(), agent.steps, partial(self._left, agent), agent.clock_t,
        )
        try:
            out = agent.spec.step(ctx)
        except Exception as exc:  # a step function's bug is the agent's failure, not the runtime's
            self._crash(agent, exc, "step")
            return
        if inspect.isawaitable(out):
            self._start_task(agent, partial(self._async_step, agent, out))
        else:
            actions = self._checked(agent, out)
            if actions is not None:
                self._carry_out(agent, actions)

    def _checked(self, agent: Agent, out: object) -> list[Any] | None:
        """The actions a step returned, or None once a bad one has crashed the agent."""
        try:
            actions = check_actions(out)
        except ActionError as exc:
            self._crash(agent, exc, "action")
            return None
        agent.interrupted_call = None  # the step that was told took it in its stride
        return actions

    def _carry_out(self, agent: Agent, actions: list[Any]) -> None:
        if not actions:
            self._set_status(agent, "waiting", "idle")
            if len(agent.inbox):
                self._wake(agent)
            return
        if all(map(is_fast, actions)):
            results: list[Any] = []
            add = results.append
            behind, services = self._behind, self._services
            for i, action in enumerate(actions):
                add(run_fast(services, agent, action))
                if agent.ended:
                    return
                if behind() and i + 1 < len(actions):
                    # The log cannot take more now: the rest waits for the writer, in the agent's task.
                    self._start_task(agent, partial(self._run_actions, agent, actions[i + 1 :], results))
                    return
            agent.results = tuple(results)
            self._wake(agent)
        else:
            agent.act(tuple(actions))
            self._start_task(agent, partial(self._run_actions, agent, actions))

    async def _async_step(self, agent: Agent, pending: Awaitable[object]) -> None:
        try:
            out = await pending
        except Exception as exc:
            self._crash(agent, exc, "step")
            return
        actions = self._checked(agent, out)
        if actions is None:
            return
        if not actions or all(is_fast(a) for a in actions):
            agent.scope = None
            self._carry_out(agent, actions)
        else:
            agent.act(tuple(actions))
            await self._run_actions(agent, actions)

    async def _run_actions(self, agent: Agent, actions: Sequence[Any], done: Sequence[Any] = ()) -> None:
        results = list(done)
        for action in actions:
            if self._backpressure is not None and self._behind():
                await self._backpressure.caught_up()
            results.append(await run_action(self._services, agent, action))
            if agent.ended:
                return
        agent.results = tuple(results)

    def _start_task(self, agent: Agent, work: Callable[[], Awaitable[None]]) -> None:
        self._set_status(agent, "running", "act")
        scope = anyio.CancelScope()
        agent.scope = scope
        self.tasks += 1
        self._task_group.start_soon(self._agent_task, agent, scope, work, name=f"agent:{agent.id}")

    async def _agent_task(self, agent: Agent, scope: anyio.CancelScope, work: Callable[[], Awaitable[None]]) -> None:
        try:
            with scope:
                await work()
        except Exception as exc:
            self._crash(agent, exc, "action")
        finally:
            self.tasks -= 1
            agent.acting = agent.logged = None
            if agent.scope is scope:
                agent.scope = None
                if not agent.ended:
                    if agent.results or len(agent.inbox):
                        self._wake(agent)
                    else:
                        self._set_status(agent, "waiting", "idle")

    @staticmethod
    def _left(agent: Agent) -> Budget:
        return agent.remaining(clock())


def _never_behind() -> bool:
    return False
