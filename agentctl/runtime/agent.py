"""The runtime's record of one live agent, and its share of the budget ledger.

Invoked from the runtime (``agentctl.runtime.scheduler`` and ``.tree``) only: step
functions never see this object, they get a :class:`~agentctl.runtime.spec.StepContext`.
An idle agent is just this record and its inbox, with no task: a task exists only while
the agent awaits something (an async step, a tool or LLM call, a sleep, a lock wait),
which is what keeps 100,000 idle agents cheap.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import anyio

from ..actions import Result
from ..policy import CONSUMABLE, UNLIMITED, Budget, Grant
from ..services.bus import Inbox, Message
from .resume_state import Replay
from .spec import AgentSpec

#: The kinds of an end report, the signal a parent gets when its child ends.
ENDS = frozenset(("done", "failed", "stopped"))

_USED = {"max_steps": "steps", "max_tool_calls": "tool_calls", "max_tokens": "tokens"}


class Agent:
    """A live agent: its place in the tree, inbox, scheduling flags and ledger."""

    __slots__ = (
        "spec", "id", "parent", "depth", "grant", "inbox", "children", "state", "results",
        "status", "steps", "tool_calls", "tokens", "reserved", "scope", "scheduled",
        "started", "ended", "restart_times", "deadline", "tick_due", "spawned_children", "wakers", "replay",
        "interrupted_call", "clock_t", "acting", "acting_since", "logged", "resume_actions", "snapped_at",
        "charges", "reserved_tokens", "heard_t", "lineup",
        "__weakref__",
    )

    def __init__(self, spec: AgentSpec, parent: Agent | None, grant: Grant, inbox: Inbox) -> None:
        self.spec = spec
        self.id = spec.id
        self.parent = parent
        self.depth: int = 0 if parent is None else parent.depth + 1
        self.grant = grant
        self.inbox = inbox
        self.children: dict[str, Agent] = {}
        self.state: dict[str, Any] = {}
        self.results: tuple[Result, ...] = ()
        self.status = "spawned"
        self.steps = 0
        self.tool_calls = 0
        self.tokens = 0
        # Outstanding reservations of live children, per consumable budget.
        self.reserved: dict[str, int] = {}
        self.scope: anyio.CancelScope | None = None
        self.scheduled = False
        self.started = False
        self.ended = False
        self.restart_times: deque[float] | None = None
        self.deadline: float | None = None
        self.tick_due = False
        self.spawned_children = 0
        # One event per wake_on_message sleep waiting now (a parallel batch may hold
        # several), so that a delivery ends every one of them.
        self.wakers: list[anyio.Event] | None = None
        # The journal being replayed while the agent is resumed after a crash.
        self.replay: Replay | None = None
        # A call whose outcome a crash made unknown, handed to the agent as ``interrupted``:
        # if the step that receives it fails, the agent fails for good (no restart reruns
        # its earlier steps; see docs/durability.md). Cleared once a step gets past it.
        self.interrupted_call: str | None = None
        # While a resumed agent replays its past: the recorded wall-clock time (seconds) its
        # steps are at, so that waits its steps start count from when they first began
        # (the time the run was down included). None once the agent is live again.
        self.clock_t: float | None = None
        # The actions its task carries out now, the time its step asked for them (on the
        # step's clock) and the kinds of outcome they have had logged so far, in log order
        # (a checkpoint's snapshot records them: see runtime.snapshots).
        self.acting: tuple[Any, ...] | None = None
        self.acting_since = 0.0
        self.logged: list[str] | None = None
        # Restored from a snapshot: the calls it awaited, carried out again before its next step.
        self.resume_actions: list[Any] | None = None
        # Its steps when its latest snapshot was taken: one that has not stepped since still stands.
        self.snapped_at = -1
        # Resumed: what its children that ended before the crash used, not yet charged again
        # (``budget/charged`` records, in log order; see :meth:`charge_due`).
        self.charges: deque[dict[str, Any]] | None = None
        # Tokens its LLM calls in flight have set aside (in ``tokens`` until each is settled).
        self.reserved_tokens = 0
        # While it replays its past: when the last recorded message its next step reads came
        # (the logged ``t``, ms): that step ran no earlier (see ``clock_t``).
        self.heard_t: int | None = None
        # While it replays its past and a child of its ended before the crash (not started
        # again): every child its steps see, in start order, True for those that ended
        # until a replayed step reads of their end, as the first time (see child_ids).
        self.lineup: dict[str, bool] | None = None

    def child_ids(self) -> tuple[str, ...]:
        """Its live children's ids, in start order, as its step sees them: while it replays
        its past, those that ended before the crash are among them until it reads of their end."""
        lineup = self.lineup
        if lineup is None:
            return tuple(self.children) if self.children else ()
        return tuple(c for c, ended in lineup.items() if ended or c in self.children)

    def ended_before(self, child_id: str) -> None:
        """Its replay spawned again (or its snapshot named) a child that ended before the crash."""
        if self.lineup is None:
            self.lineup = dict.fromkeys(self.children, False)
        self.lineup.pop(child_id, None)
        self.lineup[child_id] = True

    def spawned_child(self, child_id: str) -> None:
        """A child of its started anew (not a restart): it comes last in its line-up, if it keeps one."""
        if self.lineup is not None:
            self.lineup.pop(child_id, None)
            self.lineup[child_id] = False

    def read_ends(self, messages: tuple[Message, ...], *, live: bool) -> None:
        """Its step reads ``messages``: a child that ended before the crash leaves its line-up
        once it reads of its end; all of them once its steps are ``live`` (the replay is over)."""
        if live:
            self.lineup = None
            return
        for m in messages:
            if m.signal and m.kind in ENDS:
                self.saw_end(m.sender)

    def saw_end(self, child_id: str) -> None:
        """Its replayed step read of the end of ``child_id``, or stopped it: a child that ended
        before the crash leaves its line-up."""
        lineup = self.lineup
        if lineup is not None and lineup.get(child_id):
            del lineup[child_id]
            if not any(lineup.values()):
                self.lineup = None

    def left_of(self, seconds: float) -> float:
        """What is left of a wait of ``seconds`` that its latest step started: all of it for
        a live agent; for one replaying its past, counted from the time that step first ran."""
        at = self.clock_t
        return seconds if at is None else max(0.0, at + seconds - time.time())

    def act(self, actions: tuple[Any, ...]) -> None:
        """Its task starts carrying out ``actions``, which its latest step returned."""
        self.acting = actions
        self.acting_since = time.time() if self.clock_t is None else self.clock_t
        self.logged = []

    def log_outcome(self, op: str) -> None:
        """One of the actions it carries out had its outcome (``op``: a journal effect's
        kind) logged, or handed back from the log."""
        if self.logged is not None:
            self.logged.append(op)

    @property
    def budget(self) -> Budget:
        """The limits this agent was granted."""
        return self.grant.budget

    def used(self, name: str) -> int:
        """What this agent (and its ended descendants) consumed of budget ``name``."""
        return int(getattr(self, _USED[name]))

    def remaining(self, now: float | None = None) -> Budget:
        """What is left of every limit; consumables net of children's reservations."""
        b = self.grant.budget
        if b == UNLIMITED:
            return b  # nothing to subtract from (the common case: plans set no budgets)
        values: dict[str, Any] = {}
        for name in CONSUMABLE:
            values[name] = self.left(name)
        values["max_children"] = None if b.max_children is None else b.max_children - self.spawned_children
        values["max_seconds"] = None if self.deadline is None or now is None else max(0.0, self.deadline - now)
        values["tick_ms"] = b.tick_ms
        return Budget(**values)

    def reserve_for(self, child: Budget) -> None:
        """Set aside a child's consumable budget out of this agent's remainder."""
        for name in CONSUMABLE:
            if getattr(self.grant.budget, name) is not None and getattr(child, name) is not None:
                self.reserved[name] = self.reserved.get(name, 0) + int(getattr(child, name))

    def settle_child(self, child: Agent) -> None:
        """A child ended: drop its reservation and charge what it really used."""
        if self.grant.budget == UNLIMITED:
            # Nothing to settle: an unlimited parent's ancestors are unlimited too (a
            # limited parent never grants an unlimited child).
            return
        self._release(child.grant.budget)
        for name in CONSUMABLE:
            setattr(self, _USED[name], self.used(name) + child.used(name))

    def _release(self, child: Budget) -> None:
        for name in CONSUMABLE:
            if getattr(self.grant.budget, name) is not None and getattr(child, name) is not None:
                self.reserved[name] = self.reserved.get(name, 0) - int(getattr(child, name))

    def hold_for_ended(self, child_id: str, budget: Budget) -> None:
        """A resumed agent spawns again (replays its spawn, or restores its snapshot naming)
        a child that ended before the crash: the child is not started, but its ``budget`` is
        set aside until the charge of its end gives it back, as the first time."""
        for record in self.charges or ():
            if record["child_id"] == child_id and "held" not in record:
                record["held"] = budget
                self.reserve_for(budget)
                return

    def charge_due(self, *, effect: int | None = None, step: int | None = None) -> None:
        """Charge again what its ended children used, as the run that died did: each record
        that was logged before its journal's ``effect``-th outcome (a resumed agent handing
        that one back), or by the time it had taken ``step`` steps (before its next step);
        with neither, all of them (it acts anew, or ends)."""
        charges = self.charges
        if charges is None:
            return
        every = effect is None and step is None
        while charges and (every or (effect is not None and charges[0]["after"] <= effect)
                           or (step is not None and charges[0]["step"] <= step)):
            spent = charges.popleft()
            if "held" in spent:
                self._release(spent["held"])
            for name in CONSUMABLE:
                setattr(self, _USED[name], self.used(name) + int(spent[_USED[name]]))
        if not charges:
            self.charges = None

    def left(self, name: str) -> int | None:
        """What remains of consumable budget ``name`` (``None``: unlimited)."""
        limit = getattr(self.grant.budget, name)
        if limit is None:
            return None
        return int(limit) - self.used(name) - self.reserved.get(name, 0)

    def exceeded(self) -> str | None:
        """The first budget that leaves no room for another step, if any."""
        for name in ("max_steps", "max_tokens"):
            left = self.left(name)
            if left is not None and left <= 0:
                return name
        return None

    def __repr__(self) -> str:
        return f"<Agent {self.id} depth={self.depth} status={self.status}>"
