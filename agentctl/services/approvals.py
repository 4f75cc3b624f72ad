"""Approval gates at run time: tool calls held for a person's yes, and the answers given.

Invoked from the action interpreter (:mod:`agentctl.runtime.interpreter`) for a call that
one of its agent's gates holds (:func:`agentctl.policy.gate_for`), and answered from the
CLI session (:mod:`agentctl.cli.session`: the control channel's ``approve`` and ``deny``
ops, the live view's keys). A held call logs ``approval/requested`` and waits, alone: the
rest of the tree goes on. ``approval/granted`` or ``approval/denied`` end the wait; only a
granted call goes on to the work plane (and its ``tool/requested``).

Durable through crash resume: the service is built from what the log says
(:class:`~agentctl.events.run_state.RunState`'s ``approvals``): a call requested but not
answered is held again without a second request, its ``approve_timeout`` counted from the
logged ``t``; a call already answered gets that answer back and is never asked again.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from ..errors import AgentctlError
from ..events.emit import Emit
from ..events.types import ApprovalDenied, ApprovalGranted, ApprovalRequested

__all__ = ["Answer", "ApprovalError", "ApprovalStatistics", "Approvals", "Held"]


#: How many held calls' ids a refusal names, at most.
_LISTED = 8


class ApprovalError(AgentctlError):
    """An answer that cannot be given: no such held call, or it was answered already."""


@dataclass(frozen=True, slots=True)
class Answer:
    """How a held call was answered.

    Attributes:
        granted: yes or no.
        by: ``user`` (the CLI or the live view) or ``timeout`` (the plan's ``approve_default``).
        text: the note of a grant, the reason of a denial.
    """

    granted: bool
    by: str
    text: str | None = None

    def describe(self) -> str:
        """``approved by user (note: ...)`` / ``denied by timeout: ...``."""
        if self.granted:
            return f"approved by {self.by}" + (f" (note: {self.text})" if self.text else "")
        return f"denied by {self.by}" + (f": {self.text}" if self.text else "")

    def refusal(self, call_id: str, tool: str) -> str:
        """What the agent of a denied call is told (its tool error)."""
        return f"call {call_id} ({tool}) was {self.describe()}"

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Answer:
        """The answer an ``approval/granted`` or ``approval/denied`` event records."""
        granted = event.get("type") == "approval/granted"
        return cls(granted, str(event.get("by") or "user"), event.get("note") if granted else event.get("reason"))


@dataclass(slots=True)
class Held:
    """One call waiting for an answer.

    Attributes:
        call_id, agent_id, tool: the call.
        t: when it was requested (the logged ``t``, ms since the epoch).
        timeout: seconds it waits before ``default`` decides (``None``: forever).
        default: ``deny`` or ``approve``.
    """

    call_id: str
    agent_id: str
    tool: str
    t: int
    timeout: float | None
    default: str
    answered: anyio.Event = field(default_factory=anyio.Event)


@dataclass(frozen=True, slots=True)
class ApprovalStatistics:
    """Calls held now, and answers given by people and by timeouts since this process started."""

    pending: int
    granted: int
    denied: int
    timed_out: int


class Approvals:
    """The held calls of a run and their answers.

    Args:
        emit: the event sink.
        id_prefix: put before generated call ids (a resumed run uses its own).
        pending: from the log, calls requested but not answered (``call_id -> the fields of
            their approval/requested``, with ``t``).
        answered: from the log, the answers given so far by call id.
        clock: wall-clock seconds (the logged ``t`` is wall-clock too).
    """

    def __init__(
        self,
        emit: Emit,
        *,
        id_prefix: str = "",
        pending: Mapping[str, Mapping[str, Any]] | None = None,
        answered: Mapping[str, Answer] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._emit = emit
        self._ids = itertools.count(1)
        self._id_prefix = id_prefix
        self._clock = clock
        self._logged = dict(pending or {})
        self._held: dict[str, Held] = {}
        #: Calls whose agent ended while they were held (no answer logged), by call id: their agent.
        self._withdrawn: dict[str, str] = {}
        self._answers: dict[str, Answer] = dict(answered or {})
        self._granted = self._denied = self._timed_out = 0

    @classmethod
    def from_log(cls, emit: Emit, records: Mapping[str, Mapping[str, Any]], *, id_prefix: str = "") -> Approvals:
        """The service of a resumed run, from the approvals its log records
        (:attr:`RunState.approvals <agentctl.events.run_state.RunState.approvals>`)."""
        pending = {cid: r for cid, r in records.items() if r.get("answer") is None}
        answered = {cid: Answer(r["answer"] == "granted", str(r.get("by") or "user"), r.get("text"))
                    for cid, r in records.items() if r.get("answer") is not None}
        return cls(emit, id_prefix=id_prefix, pending=pending, answered=answered)

    def recorded(self, call_id: str) -> str | None:
        """The gate that held ``call_id`` if the log recorded it as held or answered, else None."""
        if call_id in self._answers:
            return "answered"
        logged = self._logged.get(call_id)
        return None if logged is None else str(logged.get("gate") or "logged")

    def new_call_id(self) -> str:
        """An id for a call about to be held (it stays the call's id when it runs)."""
        return f"{self._id_prefix}a{next(self._ids)}"

    async def hold(
        self, agent_id: str, call_id: str, tool: str, arguments: Mapping[str, Any], gate: str, *,
        timeout: float | None, default: str,
    ) -> Answer:
        """Log the request (unless the log has it already) and wait for the answer.

        A call answered before (the log says so) gets that answer at once. Cancelled (its
        agent ended), the call is no longer held; nothing is logged for it.
        """
        known = self._answers.get(call_id)
        if known is not None:
            return known
        logged = self._logged.pop(call_id, None)
        if logged is not None:
            held = Held(call_id, agent_id, tool, int(logged.get("t") or self._clock() * 1000),
                        logged.get("timeout"), str(logged.get("default") or "deny"))
        else:
            event = self._emit(ApprovalRequested(agent_id=agent_id, call_id=call_id, tool=tool, arguments=dict(arguments),
                                                 gate=gate, timeout=timeout, default=default))
            held = Held(call_id, agent_id, tool, int(event.get("t") or self._clock() * 1000), timeout, default)
        self._held[call_id] = held
        self._withdrawn.pop(call_id, None)
        try:
            if held.timeout is None:
                await held.answered.wait()
            else:
                with anyio.move_on_after(max(0.0, held.t / 1000 + held.timeout - self._clock())):
                    await held.answered.wait()
                if call_id not in self._answers:
                    self._timed_out += 1
                    self._give(held, Answer(held.default == "approve", "timeout",
                                            f"no answer within {held.timeout:g} s; the plan's default is {held.default}"))
            return self._answers[call_id]
        finally:
            self._held.pop(call_id, None)
            if call_id not in self._answers:
                self._withdrawn[call_id] = agent_id

    def answer(self, call_id: str, granted: bool, text: str | None = None, *, by: str = "user") -> dict[str, Any]:
        """Answer held call ``call_id``; returns the answer's event.

        Raises:
            ApprovalError: no call ``call_id`` is held, or it was answered already (the
                message says how).
        """
        known = self._answers.get(call_id)
        if known is not None:
            raise ApprovalError(f"call {call_id} was already answered: {known.describe()}")
        held = self._held.get(call_id)
        if held is None:
            gone = self._withdrawn.get(call_id)
            if gone is not None:
                raise ApprovalError(f"call {call_id} is no longer waiting: its agent {gone} ended (stopped or failed) "
                                    "before it was answered")
            raise ApprovalError(f"no call {call_id!r} is waiting for approval (waiting: {self._waiting()})")
        return self._give(held, Answer(granted, by, text))

    def _waiting(self) -> str:
        """The held calls' ids, oldest first, the first :data:`_LISTED` of them: a refusal stays one short line."""
        held = [h.call_id for h in self.pending()]
        if not held:
            return "none"
        more = f" and {len(held) - _LISTED} more" if len(held) > _LISTED else ""
        return ", ".join(held[:_LISTED]) + more

    def _give(self, held: Held, answer: Answer) -> dict[str, Any]:
        self._answers[held.call_id] = answer
        if answer.granted:
            self._granted += 1
            event = self._emit(ApprovalGranted(agent_id=held.agent_id, call_id=held.call_id, tool=held.tool,
                                               by=answer.by, note=answer.text))
        else:
            self._denied += 1
            event = self._emit(ApprovalDenied(agent_id=held.agent_id, call_id=held.call_id, tool=held.tool,
                                              by=answer.by, reason=answer.text or ""))
        held.answered.set()
        return event

    def pending(self) -> list[Held]:
        """The calls held now, oldest first."""
        return sorted(self._held.values(), key=lambda h: h.t)

    def statistics(self) -> ApprovalStatistics:
        """How many calls are held, and how they were answered."""
        return ApprovalStatistics(len(self._held), self._granted, self._denied, self._timed_out)
