"""The state of a run as its events describe it: the :class:`RunState` record.

Built by the fold (:func:`agentctl.events.fold.fold`, for ``agentctl replay --at`` and crash
resume) or event by event through :func:`agentctl.events.fold.apply` (the checkpointer in
:mod:`agentctl.events.checkpoint`, the live view); snapshotted with :meth:`RunState.to_dict`
into checkpoints. How each event type changes it is in :mod:`agentctl.events.reducers`; this
record knows none of them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .agent_state import STATUSES, AgentView
from .journal import Journals
from .outcomes import Failure, Finished

__all__ = ["RECENT_EVENTS", "Failure", "Finished", "RunState"]

#: How many of the latest events a :class:`RunState` keeps for the views.
RECENT_EVENTS = 200

_COUNTS = (
    "messages",
    "delivered",
    "undelivered",
    "denied",
    "refused",
    "tool_calls",
    "tool_failures",
    "llm_calls",
    "llm_failures",
    "failures",
    "prompt_tokens",
    "completion_tokens",
)


@dataclass(slots=True, eq=True)
class RunState:
    """The state of a run as of its last folded event (see :func:`agentctl.events.fold.apply`)."""

    run_id: str | None = None
    plan_name: str | None = None
    plan_file: str | None = None
    plan_version: int | None = None
    started_t: int | None = None
    finished: Finished | None = None
    last_seq: int = 0
    last_t: int | None = None
    agents: dict[str, AgentView] = field(default_factory=dict)
    locks: dict[str, dict[str, str]] = field(default_factory=dict)
    open_conflicts: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending_calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Calls approval gates held, by call id: ``agent_id``, ``tool``, ``arguments``, ``gate``,
    #: ``t``, ``seq``, ``timeout``, ``default``, then ``answer`` (null while held, ``granted``
    #: or ``denied``), ``by`` and ``text`` (the note or reason). A held call whose agent ended
    #: is dropped; answered ones are kept (an answer is never asked again).
    approvals: dict[str, dict[str, Any]] = field(default_factory=dict)
    journals: Journals = field(default_factory=Journals)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTS, 0))
    plan_invalid: dict[str, Any] | None = None
    last_diff: dict[str, Any] | None = None
    errors: list[Failure] = field(default_factory=list)
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_EVENTS))
    resumes: int = 0
    #: The process of the latest start or resume, and the control socket it serves.
    pid: int | None = None
    control: str | None = None
    #: The executors its processes ran their tools on (``local``, ``ray``), each once, in the
    #: order they came; ``""`` for a process whose event does not say (an older log).
    executors: list[str] = field(default_factory=list)
    #: The Ray cluster the latest start or resume ran its tools on, by the address it
    #: recorded (``""``: its event names none, an older log); ``None``: it ran them locally.
    address: str | None = None
    #: Every Ray cluster its processes ran their tools on (keyed as :attr:`address`), first
    #: used first: whether the latest process on each logged ``run/finished`` with the cluster
    #: still there (its end removed the run's containers there); ``False``: it died, or lost
    #: the cluster, and may have left some.
    clusters: dict[str, bool] = field(default_factory=dict)

    def status_counts(self) -> dict[str, int]:
        """How many agents are in each status (every status present, zeros included)."""
        counts = dict.fromkeys(STATUSES, 0)
        for agent in self.agents.values():
            counts[agent.status] = counts.get(agent.status, 0) + 1
        return counts

    def held(self) -> list[dict[str, Any]]:
        """The calls waiting for approval now, oldest first, each with its ``call_id``."""
        return [{"call_id": cid, **r} for cid, r in self.approvals.items() if r.get("answer") is None]

    def parents(self) -> dict[str, str | None]:
        """Every agent's parent (None: a root), by agent id."""
        return {a.id: a.parent_id for a in self.agents.values()}

    def roots(self) -> list[str]:
        """Agents without a (known) parent, in spawn order."""
        agents = self.agents
        return [a.id for a in agents.values() if a.parent_id is None or a.parent_id not in agents]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able snapshot, e.g. for a checkpoint; :meth:`from_dict` restores it."""
        return {
            "run_id": self.run_id,
            "plan_name": self.plan_name,
            "plan_file": self.plan_file,
            "plan_version": self.plan_version,
            "started_t": self.started_t,
            "finished": None if self.finished is None else self.finished.to_dict(),
            "last_seq": self.last_seq,
            "last_t": self.last_t,
            "agents": [a.to_dict() for a in self.agents.values()],
            "locks": {p: dict(h) for p, h in self.locks.items()},
            "open_conflicts": {k: dict(v) for k, v in self.open_conflicts.items()},
            "pending_calls": {k: dict(v) for k, v in self.pending_calls.items()},
            "approvals": {k: dict(v) for k, v in self.approvals.items()},
            "journals": self.journals.to_dict(),
            "counts": dict(self.counts),
            "plan_invalid": self.plan_invalid,
            "last_diff": self.last_diff,
            "errors": [e.to_dict() for e in self.errors],
            "recent": list(self.recent),
            "resumes": self.resumes,
            "pid": self.pid,
            "control": self.control,
            "executors": list(self.executors),
            "address": self.address,
            "clusters": dict(self.clusters),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunState:
        """Restore a state from :meth:`to_dict` output (also after a JSON round trip)."""
        state = cls(
            run_id=d.get("run_id"),
            plan_name=d.get("plan_name"),
            plan_file=d.get("plan_file"),
            plan_version=d.get("plan_version"),
            started_t=d.get("started_t"),
            finished=None if d.get("finished") is None else Finished(d["finished"].get("reason"), d["finished"].get("status")),
            last_seq=d.get("last_seq", 0),
            last_t=d.get("last_t"),
            agents={a["id"]: AgentView.from_dict(a) for a in d.get("agents", ())},
            locks={p: dict(h) for p, h in d.get("locks", {}).items()},
            open_conflicts=dict(d.get("open_conflicts", {})),
            pending_calls=dict(d.get("pending_calls", {})),
            approvals=dict(d.get("approvals", {})),
            journals=Journals.from_dict(d.get("journals", {})),
            plan_invalid=d.get("plan_invalid"),
            last_diff=d.get("last_diff"),
            errors=[Failure(e.get("seq"), e.get("agent_id"), e.get("error"), e.get("error_type"), e.get("where"),
                            e.get("call_id")) for e in d.get("errors", ())],
            resumes=d.get("resumes", 0),
            pid=d.get("pid"),
            control=d.get("control"),
            # A checkpoint written before executors were kept cannot say where tools ran.
            executors=list(d.get("executors", ("",))),
            address=d.get("address"),
            # Nor one written before clusters were: a process on Ray is then on one it cannot name.
            clusters=dict(d.get("clusters", {"": False} if "ray" in d.get("executors", ()) else {})),
        )
        state.counts.update(d.get("counts", {}))
        state.recent.extend(d.get("recent", ()))
        return state

