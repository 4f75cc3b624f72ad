"""The interpreter's handle: :class:`ActionServices`, what carrying out actions acts through.

Built by :class:`~agentctl.runtime.runtime.Runtime` and given to the scheduler, which hands
it to the action interpreter (:mod:`agentctl.runtime.interpreter`) and through it to crash
recovery (:mod:`agentctl.runtime.recovery`). A module of its own so that both of those
name the handle without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..services.approvals import Approvals
    from ..services.bus import Bus
    from ..services.locks import LockService
    from ..services.tools.registry import ToolContext, ToolRegistry
    from ..services.workers import WorkPlane
    from .agent import Agent
    from .conflicts import Conflicts
    from .resume_state import ResumeContext
    from .tree import Tree


@dataclass(frozen=True, slots=True)
class ActionServices:
    """What carrying out actions acts through: the interpreter's handle, built by the runtime.

    Attributes:
        bus, locks, tools, plane: the services a send, a lock, a tool or LLM call goes to.
        approvals: holds the tool calls an agent's approval gates catch.
        agents: the live agents by id (the kernel's table; read only here).
        tree: the supervision tree, for ``spawn``, ``done`` and ``stop``.
        conflicts: the open lock conflicts, told of a conflict or a ``resolve`` message.
        set_status: records an agent's status change (``Kernel.set_status``).
        tool_context: what a tool called by an agent may know and do.
        resume: the dead run's journals and locks, when the run was resumed.
    """

    bus: Bus
    locks: LockService
    tools: ToolRegistry
    plane: WorkPlane
    approvals: Approvals
    agents: dict[str, Agent]
    tree: Tree
    conflicts: Conflicts
    set_status: Callable[[Agent, str, str | None], None]
    tool_context: Callable[[Agent], ToolContext]
    resume: ResumeContext | None
