"""Lock conflicts as conversations: a thread between requester, holder and an arbiter.

Invoked from the interpreter (:mod:`agentctl.runtime.interpreter`) when a lock action
meets a conflict, and when an agent sends a ``resolve`` message on a conflict thread.
A conflict opens a thread (``conflict/opened``) whose members may message each other
whatever the topology says; each of them gets a ``conflict`` message on it. The policy
decides the outcome (``conflict/resolved``, and a ``resolved`` message to the members):

``first_come``  the holder keeps the lock; the requester waits (if its acquire waits)
                or retries later.
``priority``    the agent with the higher ``priority`` gets it; a holder that loses is
                sent a ``yield`` message asking it to release (the requester waits).
``arbiter``     the arbiter, by default the lowest common ancestor of the two, answers
                with a ``resolve`` message on the thread: ``{"grant": "requester" |
                "holder" | id, "outcome": "wait" | "retry" | "give_up"}``. If no answer
                comes within the timeout, ``first_come`` decides.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..events.types import ConflictOpened, ConflictResolved
from ..services.locks import Conflict

if TYPE_CHECKING:
    from .agent import Agent
    from .kernel import Kernel

POLICIES = ("first_come", "priority", "arbiter")


@dataclass(frozen=True, slots=True)
class OpenConflict:
    """A conflict waiting for its outcome."""

    id: str
    thread_id: str
    path: str
    requester: str
    holder: str
    arbiter: str | None
    waiting: bool

    def members(self) -> list[str]:
        """Everyone on the thread."""
        return [m for m in (self.requester, self.holder, self.arbiter) if m is not None]

    def body(self) -> dict[str, Any]:
        """What the members are told."""
        return {"conflict_id": self.id, "path": self.path, "requester": self.requester,
                "holder": self.holder, "arbiter": self.arbiter}


def common_ancestor(a: Agent | None, b: Agent | None) -> Agent | None:
    """The lowest agent that is ``a`` or above it and ``b`` or above it."""
    seen = set()
    node = a
    while node is not None:
        seen.add(node.id)
        node = node.parent
    node = b
    while node is not None and node.id not in seen:
        node = node.parent
    return node


class Conflicts:
    """The open conflict threads of a runtime and their policy."""

    def __init__(self, kernel: Kernel, policy: str = "first_come", timeout: float = 10.0) -> None:
        if policy not in POLICIES:
            raise UsageError(f"conflict policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        self._kernel = kernel
        self.policy = policy
        self.timeout = timeout
        self.open: dict[str, OpenConflict] = {}

    def opened(self, requester: Agent, conflict: Conflict, *, waiting: bool, since: float | None = None) -> None:
        """A lock action of ``requester`` met ``conflict``: open its thread and apply the policy.

        ``since``: the wall-clock time the lock action was first asked for, if earlier than
        now (a resumed agent's replayed step): the arbiter's time to answer counts from it.
        """
        k = self._kernel
        holder = k.agents.get(conflict.holder)
        arbiter = common_ancestor(requester, holder)
        c = OpenConflict(conflict.id, f"conflict/{conflict.id}", conflict.path, requester.id, conflict.holder,
                         arbiter.id if arbiter is not None else None, waiting)
        self.open[c.thread_id] = c
        k.bus.open_thread(c.thread_id, c.members())
        k.emit(ConflictOpened(agent_id=c.requester, conflict_id=c.id, thread_id=c.thread_id, path=c.path,
                              holder=c.holder, arbiter=c.arbiter, policy=self.policy))
        for member in dict.fromkeys(c.members()):
            if member != c.requester:
                k.bus.signal(c.requester, member, "conflict", c.body(), c.thread_id)
        if self.policy == "arbiter" and c.arbiter is not None:
            left = self.timeout if since is None else max(0.0, since + self.timeout - time.time())
            k.timers.call_later(left, lambda: self._timed_out(c.thread_id))
        elif self.policy == "priority":
            self._by_priority(c, by="policy")
        else:
            self._first_come(c, by="policy")

    def answered(self, sender: str, thread_id: str | None, body: Any) -> None:
        """A ``resolve`` message was sent on a thread; if it settles an open conflict, apply it."""
        c = self.open.get(thread_id or "")
        if c is None or sender not in c.members() or not isinstance(body, dict):
            return
        grant = {"requester": c.requester, "holder": c.holder}.get(str(body.get("grant")), body.get("grant"))
        outcome = body.get("outcome") or "wait"
        if grant not in (c.requester, c.holder) or outcome not in ("wait", "retry", "give_up"):
            return
        self._resolve(c, str(grant), str(outcome), by=sender)

    def _timed_out(self, thread_id: str) -> None:
        c = self.open.get(thread_id)
        if c is not None:
            self._first_come(c, by="timeout")

    def _first_come(self, c: OpenConflict, *, by: str) -> None:
        self._resolve(c, c.holder, "wait" if c.waiting else "retry", by=by)

    def _by_priority(self, c: OpenConflict, *, by: str) -> None:
        agents = self._kernel.agents
        requester, holder = agents.get(c.requester), agents.get(c.holder)
        mine = requester.spec.priority if requester is not None else 0
        theirs = holder.spec.priority if holder is not None else 0
        if mine > theirs:
            self._resolve(c, c.requester, "wait", by=by)
        else:
            self._resolve(c, c.holder, "wait" if c.waiting else "retry", by=by)

    def _resolve(self, c: OpenConflict, granted_to: str, outcome: str, *, by: str) -> None:
        k = self._kernel
        del self.open[c.thread_id]
        k.emit(ConflictResolved(agent_id=c.requester, conflict_id=c.id, thread_id=c.thread_id, granted_to=granted_to,
                                outcome=outcome, by=by))
        body = {**c.body(), "granted_to": granted_to, "outcome": outcome, "by": by}
        k.bus.signal(c.holder, c.requester, "resolved", body, c.thread_id)
        for member in dict.fromkeys(m for m in c.members() if m != c.requester):
            k.bus.signal(c.requester, member, "resolved", body, c.thread_id)
        if granted_to == c.requester:
            k.bus.signal(c.requester, c.holder, "yield", {"path": c.path, "conflict_id": c.id}, c.thread_id)
        k.bus.close_thread(c.thread_id)
