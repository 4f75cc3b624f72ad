"""What the runtime's parts share: :class:`Kernel`, one frozen handle on the services.

:class:`~agentctl.runtime.runtime.Runtime` builds one kernel and gives it to its parts, the
supervision tree (:mod:`agentctl.runtime.tree`), the scheduler
(:mod:`agentctl.runtime.scheduler`) and lock conflicts (:mod:`agentctl.runtime.conflicts`);
each reads only what it uses (the interpreter gets its own handle,
:class:`~agentctl.runtime.action_services.ActionServices`). Two of the services are
small enough to live here: the ready queue, which the tree and inboxes fill and the scheduler
drains, and the runtime's task group, which ``open_runtime`` opens after the parts are built.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc

from ..events.emit import Emit
from ..services.bus import Bus
from ..services.locks import LockService
from ..services.tools.registry import ToolRegistry
from .agent import Agent
from .timers import Timers

__all__ = ["Kernel", "ReadyQueue", "Tasks"]


class ReadyQueue:
    """Agents woken with something to do, in wake order; the scheduler takes turns from it."""

    def __init__(self) -> None:
        self.agents: deque[Agent] = deque()
        #: Set (and dropped) by :meth:`wake` when the scheduler sleeps on an empty queue.
        self.event: anyio.Event | None = None

    def wake(self, agent: Agent) -> None:
        """Queue ``agent`` for a turn, or interrupt its wait if it is busy in a task of its own."""
        if agent.scope is not None:
            for waker in agent.wakers or ():
                waker.set()
            return
        if agent.scheduled or agent.ended:
            return
        agent.scheduled = True
        self.agents.append(agent)
        if self.event is not None:
            self.event.set()
            self.event = None

    def __len__(self) -> int:
        return len(self.agents)


class Tasks:
    """The runtime's task group, once ``open_runtime`` has opened it; it owns every task the parts start."""

    def __init__(self) -> None:
        self._tg: anyio.abc.TaskGroup | None = None

    def open(self, tg: anyio.abc.TaskGroup) -> None:
        """Start tasks in ``tg`` from now on."""
        self._tg = tg

    @property
    def is_open(self) -> bool:
        """Whether a task group takes tasks (not before ``open_runtime`` started the runtime)."""
        return self._tg is not None

    def start_soon(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any, name: str | None = None) -> None:
        """Start ``fn(*args)`` as a task of the runtime's task group."""
        assert self._tg is not None, "the runtime is not started (use open_runtime)"
        self._tg.start_soon(fn, *args, name=name)


@dataclass(frozen=True, slots=True)
class Kernel:
    """The services the runtime's parts act through, and the table of live agents."""

    emit: Emit
    bus: Bus
    locks: LockService
    tools: ToolRegistry
    timers: Timers
    ready: ReadyQueue
    tasks: Tasks
    #: Live agents by id, in spawn order: the tree adds and removes them, everyone reads.
    agents: dict[str, Agent]

    def set_status(self, agent: Agent, status: str, reason: str | None) -> None:
        """Record that ``agent`` is now ``running``, ``blocked``, ``sleeping`` or ``waiting``."""
        if agent.status != status and not agent.ended:
            agent.status = status
            self.emit("agent/status", agent.id, status=status, reason=reason, steps=agent.steps)
