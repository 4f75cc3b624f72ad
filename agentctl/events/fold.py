"""The state fold: turns a stream of events into the state of a run.

One reducer, :meth:`RunState.apply`, used by everything that needs to know "what is the
run doing" (its :class:`~agentctl.events.journal.Journals` part keeps what live agents did,
calls and their outcomes included, for crash resume): the live view and ``agentctl watch`` (fed event by event), ``agentctl replay
--at`` (:func:`state_at`) and crash resume (which starts from a :meth:`RunState.to_dict`
snapshot and keeps folding). It reads events only, never runtime objects, so anything
it shows can be reproduced from ``events.jsonl`` alone.

The fold is on the hot path of replaying large logs: :meth:`RunState.apply` is a dict
dispatch on ``type`` to one small function per type; unknown types only update the
common bookkeeping (forward compatible with newer logs).
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from os import PathLike
from typing import Any

from .journal import Journals

__all__ = ["AgentView", "RunState", "fold", "state_at", "RECENT_EVENTS", "STATUSES"]

#: How many of the latest events a :class:`RunState` keeps for the views.
RECENT_EVENTS = 200
#: Agent errors kept in :attr:`RunState.errors` (a pathological run must not grow it forever).
MAX_ERRORS = 1000
#: Every status an :class:`AgentView` can be in, in display order.
STATUSES = ("spawned", "running", "waiting", "sleeping", "blocked", "done", "failed", "stopped")
#: ``agent/done`` statuses that mean the agent failed.
FAILED_DONE = frozenset({"failed", "error"})
#: ``agent/error`` places after which the agent is gone (not just told its action was bad).
FATAL_WHERE = frozenset({"supervision", "step", "action"})

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


@dataclass(slots=True)
class AgentView:
    """What the events say about one agent. Mutable: the fold updates it in place."""

    id: str
    parent_id: str | None = None
    depth: int = 0
    model: str | None = None
    kind: str | None = None
    tools: tuple[str, ...] = ()
    budget: dict[str, Any] = field(default_factory=dict)
    restart: str | None = None
    status: str = "spawned"
    activity: str | None = None
    steps: int = 0
    tool_calls: int = 0
    llm_calls: int = 0
    tokens: int = 0
    restarts: int = 0
    done_status: str | None = None
    result: Any = None
    error: str | None = None
    locks: dict[str, str] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)
    spawned_t: int | None = None
    ended_t: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy (containers copied, so later folding does not change it)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["tools"] = list(self.tools)
        d["budget"] = dict(self.budget)
        d["locks"] = dict(self.locks)
        d["children"] = list(self.children)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AgentView:
        """The inverse of :meth:`to_dict`."""
        d = dict(d)
        d["tools"] = tuple(d.get("tools") or ())
        return cls(**d)


@dataclass(slots=True, eq=True)
class RunState:
    """The state of a run as of its last folded event (see :meth:`apply`)."""

    run_id: str | None = None
    plan_name: str | None = None
    plan_file: str | None = None
    plan_version: int | None = None
    started_t: int | None = None
    finished: dict[str, Any] | None = None
    last_seq: int = 0
    last_t: int | None = None
    agents: dict[str, AgentView] = field(default_factory=dict)
    locks: dict[str, dict[str, str]] = field(default_factory=dict)
    open_conflicts: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending_calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    journals: Journals = field(default_factory=Journals)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTS, 0))
    plan_invalid: dict[str, Any] | None = None
    last_diff: dict[str, Any] | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_EVENTS))
    resumes: int = 0

    def apply(self, event: dict[str, Any]) -> None:
        """Fold one event into the state; unknown types only advance ``last_seq``/``recent``.

        Args:
            event: one event dict as written to ``events.jsonl``.
        """
        self.last_seq = event.get("seq", self.last_seq)
        self.last_t = event.get("t", self.last_t)
        self.recent.append(event)
        handler = _HANDLERS.get(event.get("type"))
        if handler is not None:
            handler(self, event)
        self.journals.apply(event)

    def status_counts(self) -> dict[str, int]:
        """How many agents are in each status (every status present, zeros included)."""
        counts = dict.fromkeys(STATUSES, 0)
        for agent in self.agents.values():
            counts[agent.status] = counts.get(agent.status, 0) + 1
        return counts

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
            "finished": None if self.finished is None else dict(self.finished),
            "last_seq": self.last_seq,
            "last_t": self.last_t,
            "agents": [a.to_dict() for a in self.agents.values()],
            "locks": {p: dict(h) for p, h in self.locks.items()},
            "open_conflicts": {k: dict(v) for k, v in self.open_conflicts.items()},
            "pending_calls": {k: dict(v) for k, v in self.pending_calls.items()},
            "journals": self.journals.to_dict(),
            "counts": dict(self.counts),
            "plan_invalid": self.plan_invalid,
            "last_diff": self.last_diff,
            "errors": [dict(e) for e in self.errors],
            "recent": list(self.recent),
            "resumes": self.resumes,
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
            finished=d.get("finished"),
            last_seq=d.get("last_seq", 0),
            last_t=d.get("last_t"),
            agents={a["id"]: AgentView.from_dict(a) for a in d.get("agents", ())},
            locks={p: dict(h) for p, h in d.get("locks", {}).items()},
            open_conflicts=dict(d.get("open_conflicts", {})),
            pending_calls=dict(d.get("pending_calls", {})),
            journals=Journals.from_dict(d.get("journals", {})),
            plan_invalid=d.get("plan_invalid"),
            last_diff=d.get("last_diff"),
            errors=list(d.get("errors", ())),
            resumes=d.get("resumes", 0),
        )
        state.counts.update(d.get("counts", {}))
        state.recent.extend(d.get("recent", ()))
        return state


# --- the reducer, one small function per event type -------------------------------------


def _run_started(state: RunState, e: dict[str, Any]) -> None:
    state.run_id = e.get("run_id", state.run_id)
    # A resumed run writes run/started again; the run began at the first one.
    if state.started_t is None:
        state.started_t = e.get("t")
    if e.get("plan") and state.plan_file is None:
        state.plan_file = e["plan"]
    state.finished = None


def _run_finished(state: RunState, e: dict[str, Any]) -> None:
    state.finished = {"reason": e.get("reason"), "status": e.get("status")}


def _agent_spawned(state: RunState, e: dict[str, Any]) -> None:
    agent_id = e["agent_id"]
    parent_id = e.get("parent_id")
    agent = state.agents.get(agent_id)
    if agent is None:
        agent = state.agents[agent_id] = AgentView(id=agent_id)
        parent = state.agents.get(parent_id)  # type: ignore[arg-type]
        if parent is not None:
            parent.children.append(agent_id)
    # A re-spawn under the same id (plan change, restart) resets the life, keeps the counters.
    agent.parent_id = parent_id
    agent.depth = e.get("depth", 0)
    agent.model = e.get("model")
    agent.kind = e.get("kind")
    agent.tools = tuple(e.get("tools") or ())
    agent.budget = e.get("budget") or {}
    agent.restart = e.get("restart")
    agent.status = "spawned"
    agent.activity = None
    agent.done_status = agent.error = agent.ended_t = None
    agent.spawned_t = e.get("t")


def _agent_status(state: RunState, e: dict[str, Any]) -> None:
    agent = state.agents.get(e.get("agent_id"))  # type: ignore[arg-type]
    if agent is None:
        return
    status = agent.status = e.get("status", agent.status)
    agent.steps = e.get("steps", agent.steps)
    if status == "sleeping":
        agent.activity = "sleep"
    elif status == "waiting":
        agent.activity = None
    elif status == "running" and agent.activity == "sleep":
        agent.activity = None


def _agent_message(state: RunState, e: dict[str, Any]) -> None:
    counts = state.counts
    counts["messages"] += 1
    if e.get("delivered", True):
        counts["delivered"] += 1
    else:
        counts["undelivered"] += 1


def _end(state: RunState, agent: AgentView, status: str, t: int | None) -> None:
    agent.status = status
    agent.activity = None
    agent.ended_t = t
    _close_conflicts_of(state, agent.id, None)


def _agent_done(state: RunState, e: dict[str, Any]) -> None:
    agent = state.agents.get(e.get("agent_id"))  # type: ignore[arg-type]
    if agent is None:
        return
    done_status = e.get("status")
    agent.done_status = done_status
    agent.result = e.get("result")
    agent.steps = e.get("steps", agent.steps)
    _end(state, agent, "failed" if done_status in FAILED_DONE else "done", e.get("t"))


def _agent_error(state: RunState, e: dict[str, Any]) -> None:
    state.counts["failures"] += 1
    where = e.get("where")
    if len(state.errors) >= MAX_ERRORS:
        del state.errors[0]
    state.errors.append(
        {
            "seq": e.get("seq"),
            "agent_id": e.get("agent_id"),
            "error": e.get("error"),
            "error_type": e.get("error_type"),
            "where": where,
        }
    )
    agent = state.agents.get(e.get("agent_id"))  # type: ignore[arg-type]
    if agent is None:
        return
    agent.error = e.get("error")
    # Every agent/error ends the agent; a restart event brings it back.
    if where in FATAL_WHERE:
        _end(state, agent, "failed", e.get("t"))


def _agent_stopped(state: RunState, e: dict[str, Any]) -> None:
    agent = state.agents.get(e.get("agent_id"))  # type: ignore[arg-type]
    if agent is not None:
        _end(state, agent, "stopped", e.get("t"))


def _agent_restarted(state: RunState, e: dict[str, Any]) -> None:
    agent = state.agents.get(e.get("agent_id"))  # type: ignore[arg-type]
    if agent is None:
        return
    agent.status = "running"
    agent.activity = None
    agent.restarts += 1
    agent.done_status = agent.error = agent.ended_t = None
    agent.result = None


def _conflict_opened(state: RunState, e: dict[str, Any]) -> None:
    found = state.open_conflicts.get(e.get("conflict_id"))  # type: ignore[arg-type]
    if found is not None:
        found.update(thread_id=e.get("thread_id"), arbiter=e.get("arbiter"), policy=e.get("policy"))


def _conflict_resolved(state: RunState, e: dict[str, Any]) -> None:
    found = state.open_conflicts.get(e.get("conflict_id"))  # type: ignore[arg-type]
    if found is not None:
        found.update(granted_to=e.get("granted_to"), outcome=e.get("outcome"), by=e.get("by"))


def _agent_resumed(state: RunState, e: dict[str, Any]) -> None:
    agent = state.agents.get(e.get("agent_id"))  # type: ignore[arg-type]
    if agent is None:
        return
    agent.status = "running"
    agent.activity = None
    agent.ended_t = None


def _run_resumed(state: RunState, e: dict[str, Any]) -> None:
    state.resumes += 1
    state.finished = None
    # The dead process held no locks and runs no calls any more; resumed agents take
    # their locks back with lock/acquired events of their own.
    state.pending_calls.clear()
    state.locks.clear()
    for agent in state.agents.values():
        agent.locks.clear()


def _policy_refused(state: RunState, e: dict[str, Any]) -> None:
    state.counts["refused"] += 1


def _bus_denied(state: RunState, e: dict[str, Any]) -> None:
    state.counts["denied"] += 1


def _lock_acquired(state: RunState, e: dict[str, Any]) -> None:
    agent_id = e.get("agent_id")
    path = e["path"]
    mode = e.get("mode", "write")
    state.locks.setdefault(path, {})[agent_id] = mode  # type: ignore[index]
    agent = state.agents.get(e.get("agent_id"))  # type: ignore[arg-type]
    if agent is not None:
        agent.locks[path] = mode
        if agent.activity is not None and agent.activity.startswith("lock "):
            agent.activity = None
    _close_conflicts_of(state, agent_id, path)


def _lock_released(state: RunState, e: dict[str, Any]) -> None:
    agent_id = e.get("agent_id")
    path = e["path"]
    holders = state.locks.get(path)
    if holders is not None:
        holders.pop(agent_id, None)  # type: ignore[arg-type]
        if not holders:
            del state.locks[path]
    agent = state.agents.get(e.get("agent_id"))  # type: ignore[arg-type]
    if agent is not None:
        agent.locks.pop(path, None)


def _lock_conflict(state: RunState, e: dict[str, Any]) -> None:
    path = e.get("path")
    state.open_conflicts[e["conflict_id"]] = {
        "agent_id": e.get("agent_id"),
        "path": path,
        "mode": e.get("mode"),
        "holder": e.get("holder"),
        "holder_path": e.get("holder_path"),
        "holder_mode": e.get("holder_mode"),
        "t": e.get("t"),
    }
    agent = state.agents.get(e.get("agent_id"))  # type: ignore[arg-type]
    if agent is not None:
        agent.activity = f"lock {path} (blocked)"


def _close_conflicts_of(state: RunState, agent_id: str | None, path: str | None) -> None:
    """Close the conflicts ``agent_id`` asked for (on ``path`` only, when given)."""
    conflicts = state.open_conflicts
    if not conflicts:
        return
    done = [
        cid
        for cid, c in conflicts.items()
        if c["agent_id"] == agent_id and (path is None or c["path"] == path)
    ]
    for cid in done:
        del conflicts[cid]


def _call_requested(state: RunState, e: dict[str, Any], kind: str, name: Any) -> None:
    """A tool or LLM call is pending, and is what its agent is doing."""
    state.pending_calls[e["call_id"]] = {"agent_id": e.get("agent_id"), "kind": kind, "name": name, "t": e.get("t")}
    agent = state.agents.get(e.get("agent_id"))  # type: ignore[arg-type]
    if agent is not None:
        agent.activity = f"{kind} {name}"


def _call_ended(state: RunState, e: dict[str, Any], kind: str) -> AgentView | None:
    """A tool or LLM call has its result: count it; the agent (if known) is no longer in it."""
    state.pending_calls.pop(e["call_id"], None)
    counts = state.counts
    counts[f"{kind}_calls"] += 1
    if not e.get("ok", False):
        counts[f"{kind}_failures"] += 1
    agent = state.agents.get(e.get("agent_id"))  # type: ignore[arg-type]
    if agent is not None and agent.activity is not None and agent.activity.startswith(kind + " "):
        agent.activity = None
    return agent


def _tool_requested(state: RunState, e: dict[str, Any]) -> None:
    _call_requested(state, e, "tool", e.get("tool"))


def _tool_result(state: RunState, e: dict[str, Any]) -> None:
    agent = _call_ended(state, e, "tool")
    if agent is not None:
        agent.tool_calls += 1


def _llm_requested(state: RunState, e: dict[str, Any]) -> None:
    _call_requested(state, e, "llm", e.get("model") or e.get("provider"))


def _llm_result(state: RunState, e: dict[str, Any]) -> None:
    prompt = e.get("prompt_tokens") or 0
    completion = e.get("completion_tokens") or 0
    state.counts["prompt_tokens"] += prompt
    state.counts["completion_tokens"] += completion
    agent = _call_ended(state, e, "llm")
    if agent is not None:
        agent.llm_calls += 1
        agent.tokens += prompt + completion


def _plan_loaded(state: RunState, e: dict[str, Any]) -> None:
    state.plan_name = e.get("name")
    state.plan_file = e.get("file")
    state.plan_version = e.get("version")
    state.plan_invalid = None


def _plan_diff(state: RunState, e: dict[str, Any]) -> None:
    state.last_diff = {k: e.get(k) for k in ("version", "added", "removed", "changed")}


def _plan_invalid(state: RunState, e: dict[str, Any]) -> None:
    error = e.get("error")
    state.plan_invalid = dict(error) if isinstance(error, dict) else {"message": str(error)}
    state.plan_invalid.setdefault("file", e.get("file"))


_HANDLERS: dict[str | None, Callable[[RunState, dict[str, Any]], None]] = {
    "run/started": _run_started,
    "run/finished": _run_finished,
    "agent/spawned": _agent_spawned,
    "agent/status": _agent_status,
    "agent/message": _agent_message,
    "agent/done": _agent_done,
    "agent/error": _agent_error,
    "agent/stopped": _agent_stopped,
    "agent/restarted": _agent_restarted,
    "agent/resumed": _agent_resumed,
    "conflict/opened": _conflict_opened,
    "conflict/resolved": _conflict_resolved,
    "run/resumed": _run_resumed,
    "policy/refused": _policy_refused,
    "bus/denied": _bus_denied,
    "lock/acquired": _lock_acquired,
    "lock/released": _lock_released,
    "lock/conflict": _lock_conflict,
    "tool/requested": _tool_requested,
    "tool/result": _tool_result,
    "llm/requested": _llm_requested,
    "llm/result": _llm_result,
    "plan/loaded": _plan_loaded,
    "plan/diff": _plan_diff,
    "plan/invalid": _plan_invalid,
}


def fold(
    events: Iterable[dict[str, Any]],
    *,
    until_seq: int | None = None,
    state: RunState | None = None,
) -> RunState:
    """Fold events into a state.

    Args:
        events: events in log order.
        until_seq: stop after the event with this ``seq`` (events after it are not read).
        state: a state to continue from (e.g. a checkpoint); a new one when None.

    Returns:
        The state (``state`` itself when given).
    """
    if state is None:
        state = RunState()
    # The loop inlines RunState.apply: on a million-event replay the method call and
    # per-event attribute stores are a measurable share of the time.
    handlers = _HANDLERS.get
    remember = state.recent.append
    last: dict[str, Any] | None = None
    # The fold allocates long-lived containers (calls, agents) and no cycles; the cyclic
    # collector would repeatedly rescan them, which costs as much as the fold itself.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        if until_seq is not None:
            events = _until(events, until_seq)
        journal = state.journals.apply
        for last in events:
            remember(last)
            handler = handlers(last.get("type"))
            if handler is not None:
                handler(state, last)
            journal(last)
    finally:
        if gc_was_enabled:
            gc.enable()
        if last is not None:
            state.last_seq = last.get("seq", state.last_seq)
            state.last_t = last.get("t", state.last_t)
    return state


def _until(events: Iterable[dict[str, Any]], until_seq: int) -> Iterator[dict[str, Any]]:
    for event in events:
        if event.get("seq", 0) > until_seq:
            return
        yield event


def state_at(events_or_path: Iterable[dict[str, Any]] | str | PathLike[str], seq: int | None = None) -> RunState:
    """The state of a run as of event ``seq`` (the end when None).

    Args:
        events_or_path: events, or a run directory / ``events.jsonl`` path to read.
        seq: the last event to fold.
    """
    if isinstance(events_or_path, (str, PathLike)):
        from agentctl.events.reader import read_events, read_run_events

        return fold(read_events(read_run_events(events_or_path)), until_seq=seq)
    return fold(events_or_path, until_seq=seq)
