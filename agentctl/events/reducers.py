"""The reducers of the fold: how each event type changes a :class:`~agentctl.events.run_state.RunState`.

:data:`REDUCERS` maps an event ``type`` to one small function that updates the state in
place; :func:`agentctl.events.fold.apply` and :func:`agentctl.events.fold.fold` dispatch
through it, and nothing else calls these
functions. They read events only, never runtime objects, so anything the views show can be
reproduced from ``events.jsonl`` alone. Types not in the table only update the common
bookkeeping (forward compatible with newer logs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from .agent_state import AgentView
from .outcomes import Failure, Finished
from .run_state import RunState

__all__ = ["REDUCERS"]

Reducer = Callable[[RunState, dict[str, Any]], None]

#: Failures (agent errors, failed calls) kept in :attr:`RunState.errors` (a pathological run
#: must not grow it forever).
MAX_ERRORS = 1000
#: The activity of an agent in a sleep that a message ends (a script's ``wait`` step).
WAITING_FOR_MESSAGE = "wait for a message"
#: ``agent/done`` statuses that mean the agent failed.
FAILED_DONE = frozenset({"failed", "error"})
#: ``agent/error`` places after which the agent is gone (not just told its action was bad).
FATAL_WHERE = frozenset({"supervision", "step", "action"})


# --- the run and its plan -----------------------------------------------------------


def _run_started(state: RunState, e: dict[str, Any]) -> None:
    state.run_id = e.get("run_id", state.run_id)
    # A resumed run writes run/started again; the run began at the first one.
    if state.started_t is None:
        state.started_t = e.get("t")
    if e.get("plan") and state.plan_file is None:
        state.plan_file = e["plan"]
    state.finished = None
    _note_process(state, e)


def _note_process(state: RunState, e: dict[str, Any]) -> None:
    """The pid, control socket and executor of the process that started or resumed the run."""
    pid = e.get("pid")
    state.pid = pid if isinstance(pid, int) else None
    state.control = e.get("control")
    executor = str(e.get("executor") or "")
    if executor not in state.executors:
        state.executors.append(executor)
    state.address = str(e.get("address") or "") if executor == "ray" else None
    if state.address is not None:
        state.clusters[state.address] = False


def _run_finished(state: RunState, e: dict[str, Any]) -> None:
    state.finished = Finished(e.get("reason"), e.get("status"))
    if state.address is not None:
        # A process that lost its cluster could not remove anything there.
        state.clusters[state.address] = e.get("reason") != "cluster_lost"


def _run_resumed(state: RunState, e: dict[str, Any]) -> None:
    state.resumes += 1
    state.finished = None
    _note_process(state, e)
    # The dead process held no locks and runs no calls any more; resumed agents take
    # their locks back with lock/acquired events of their own.
    state.pending_calls.clear()
    state.locks.clear()
    for agent in state.agents.values():
        agent.locks.clear()


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


# --- agents -------------------------------------------------------------------------


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
    agent.approve = tuple(e.get("approve") or ())
    agent.budget = e.get("budget") or {}
    agent.restart = e.get("restart")
    agent.supervise = e.get("supervise") or {}
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
        reason = e.get("reason")
        agent.activity = WAITING_FOR_MESSAGE if reason == "wait" else _held_activity(state, agent.id) if reason == "approval" else None
    elif status == "running" and agent.activity in ("sleep", WAITING_FOR_MESSAGE):
        agent.activity = None


def _agent_done(state: RunState, e: dict[str, Any]) -> None:
    agent = state.agents.get(e.get("agent_id"))  # type: ignore[arg-type]
    if agent is None:
        return
    done_status = e.get("status")
    agent.done_status = done_status
    agent.result = e.get("result")
    agent.steps = e.get("steps", agent.steps)
    _end(state, agent, "failed" if done_status in FAILED_DONE else "done", e.get("t"))
    _drop_held(state, agent.id)


def _note_failure(state: RunState, e: dict[str, Any], where: str | None) -> None:
    """Keep what failed, where and why, for the summary's failures table."""
    if len(state.errors) >= MAX_ERRORS:
        del state.errors[0]
    state.errors.append(Failure(e.get("seq"), e.get("agent_id"), e.get("error"), e.get("error_type"), where,
                                e.get("call_id")))


def _agent_error(state: RunState, e: dict[str, Any]) -> None:
    state.counts["failures"] += 1
    where = e.get("where")
    _note_failure(state, e, where)
    agent = state.agents.get(e.get("agent_id"))  # type: ignore[arg-type]
    if agent is None:
        return
    agent.error = e.get("error")
    # Every agent/error ends the agent; a restart event brings it back.
    if where in FATAL_WHERE:
        _end(state, agent, "failed", e.get("t"))
        _drop_held(state, agent.id)


def _agent_stopped(state: RunState, e: dict[str, Any]) -> None:
    agent = state.agents.get(e.get("agent_id"))  # type: ignore[arg-type]
    if agent is not None:
        _end(state, agent, "stopped", e.get("t"))
    # Stopped by a shutdown (Ctrl-C), it is continued on resume, still waiting.
    if e.get("reason") != "shutdown":
        _drop_held(state, e.get("agent_id"))


def _agent_restarted(state: RunState, e: dict[str, Any]) -> None:
    agent = state.agents.get(e.get("agent_id"))  # type: ignore[arg-type]
    if agent is None:
        return
    agent.status = "running"
    agent.activity = None
    agent.restarts += 1
    agent.done_status = agent.error = agent.ended_t = None
    agent.result = None
    _drop_held(state, agent.id)


def _agent_supervision(state: RunState, e: dict[str, Any]) -> None:
    agent = state.agents.get(e.get("agent_id"))  # type: ignore[arg-type]
    if agent is not None:
        agent.supervise = {k: e.get(k) for k in ("strategy", "max_restarts", "restart_period")}


def _agent_resumed(state: RunState, e: dict[str, Any]) -> None:
    agent = state.agents.get(e.get("agent_id"))  # type: ignore[arg-type]
    if agent is None:
        return
    agent.status = "running"
    agent.activity = None
    agent.ended_t = None


def _end(state: RunState, agent: AgentView, status: str, t: int | None) -> None:
    agent.status = status
    agent.activity = None
    agent.ended_t = t
    _close_conflicts_of(state, agent.id, None)


# --- messages and refusals ----------------------------------------------------------


def _agent_message(state: RunState, e: dict[str, Any]) -> None:
    counts = state.counts
    counts["messages"] += 1
    if e.get("delivered", True):
        counts["delivered"] += 1
    else:
        counts["undelivered"] += 1


def _policy_refused(state: RunState, e: dict[str, Any]) -> None:
    state.counts["refused"] += 1


def _bus_denied(state: RunState, e: dict[str, Any]) -> None:
    state.counts["denied"] += 1


# --- locks and their conflicts ------------------------------------------------------


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
    if e.get("count"):
        return  # one hold of a reentrant lock given back: the agent still holds it
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


def _conflict_opened(state: RunState, e: dict[str, Any]) -> None:
    found = state.open_conflicts.get(e.get("conflict_id"))  # type: ignore[arg-type]
    if found is not None:
        found.update(thread_id=e.get("thread_id"), arbiter=e.get("arbiter"), policy=e.get("policy"))


def _conflict_resolved(state: RunState, e: dict[str, Any]) -> None:
    found = state.open_conflicts.get(e.get("conflict_id"))  # type: ignore[arg-type]
    if found is not None:
        found.update(granted_to=e.get("granted_to"), outcome=e.get("outcome"), by=e.get("by"))


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


# --- tool and LLM calls -------------------------------------------------------------
# One closure per kind and edge, with its counter keys made once: these run for half the
# events of a busy log.


def _call_requested(kind: str, *name_keys: str) -> Reducer:
    """A tool or LLM call is pending, and is what its agent is doing."""
    prefix = kind + " "

    def reducer(state: RunState, e: dict[str, Any]) -> None:
        get = e.get
        name = None
        for key in name_keys:
            name = get(key)
            if name:
                break
        agent_id = get("agent_id")
        state.pending_calls[e["call_id"]] = {"agent_id": agent_id, "kind": kind, "name": name, "t": get("t")}
        agent = state.agents.get(agent_id)  # type: ignore[arg-type]
        if agent is not None:
            agent.activity = prefix + str(name)

    return reducer


def _call_ended(kind: str) -> Reducer:
    """A tool or LLM call has its result: count it; the agent (if known) is no longer in it."""
    prefix, calls, failures = kind + " ", kind + "_calls", kind + "_failures"
    tokens = kind == "llm"

    def reducer(state: RunState, e: dict[str, Any]) -> None:
        get = e.get
        state.pending_calls.pop(e["call_id"], None)
        counts = state.counts
        counts[calls] += 1
        if not get("ok", False):
            counts[failures] += 1
            _note_failure(state, e, f"tool {get('tool')}" if kind == "tool" else "llm")
        agent = state.agents.get(get("agent_id"))  # type: ignore[arg-type]
        used = 0
        if tokens:
            prompt, completion = get("prompt_tokens") or 0, get("completion_tokens") or 0
            counts["prompt_tokens"] += prompt
            counts["completion_tokens"] += completion
            used = prompt + completion
        if agent is None:
            return
        if agent.activity is not None and agent.activity.startswith(prefix):
            agent.activity = None
        if tokens:
            agent.llm_calls += 1
            agent.tokens += used
        else:
            agent.tool_calls += 1

    return reducer


#: Characters of a streamed reply an agent's view keeps (its tail).
SAYING_TAIL = 240

_llm_pending = _call_requested("llm", "model", "provider")


def _llm_requested(state: RunState, e: dict[str, Any]) -> None:
    """An LLM call is pending: the agent is asking ``provider/model``, and has said nothing yet."""
    _llm_pending(state, e)
    agent = state.agents.get(e.get("agent_id"))  # type: ignore[arg-type]
    if agent is not None:
        provider, model = e.get("provider"), e.get("model")
        agent.activity = f"llm {provider}/{model}" if provider and model else f"llm {provider or model}"
        agent.saying = None


def _llm_delta(state: RunState, e: dict[str, Any]) -> None:
    """More of a streamed reply: only its tail is kept, for the views (resume never reads it)."""
    agent = state.agents.get(e.get("agent_id"))  # type: ignore[arg-type]
    if agent is not None:
        agent.saying = ((agent.saying or "") + (e.get("content") or "") + (e.get("tool_calls") or ""))[-SAYING_TAIL:]


# --- approval gates ------------------------------------------------------------------


def _approval_requested(state: RunState, e: dict[str, Any]) -> None:
    get = e.get
    state.approvals[e["call_id"]] = {
        "agent_id": get("agent_id"), "tool": get("tool"), "arguments": get("arguments"), "gate": get("gate"),
        "t": get("t"), "seq": get("seq"), "timeout": get("timeout"), "default": get("default"),
        "answer": None, "by": None, "text": None,
    }
    agent = state.agents.get(get("agent_id"))  # type: ignore[arg-type]
    if agent is not None:
        agent.activity = f"approval {get('tool')} ({e['call_id']})"


def _approval_answered(state: RunState, e: dict[str, Any]) -> None:
    found = state.approvals.get(e["call_id"])
    if found is None:
        return
    granted = e["type"] == "approval/granted"
    found.update(answer="granted" if granted else "denied", by=e.get("by"),
                 text=e.get("note") if granted else e.get("reason"))
    found.pop("arguments", None)  # kept while it waits, for the person deciding
    agent = state.agents.get(e.get("agent_id"))  # type: ignore[arg-type]
    if agent is not None and agent.activity is not None and agent.activity.startswith("approval "):
        agent.activity = None


def _held_activity(state: RunState, agent_id: str) -> str | None:
    """What an agent waiting for approval is doing, if the log has its request (a resume's)."""
    for cid, r in state.approvals.items():
        if r["agent_id"] == agent_id and r["answer"] is None:
            return f"approval {r['tool']} ({cid})"
    return None


def _drop_held(state: RunState, agent_id: str | None) -> None:
    """An agent that ended is no longer waiting for anyone's answer."""
    approvals = state.approvals
    if approvals:
        for cid in [c for c, r in approvals.items() if r["agent_id"] == agent_id and r["answer"] is None]:
            del approvals[cid]


#: The reducer of each event type.
REDUCERS: Mapping[str | None, Reducer] = MappingProxyType({
    "run/started": _run_started,
    "run/finished": _run_finished,
    "run/resumed": _run_resumed,
    "plan/loaded": _plan_loaded,
    "plan/diff": _plan_diff,
    "plan/invalid": _plan_invalid,
    "agent/spawned": _agent_spawned,
    "agent/status": _agent_status,
    "agent/done": _agent_done,
    "agent/error": _agent_error,
    "agent/stopped": _agent_stopped,
    "agent/restarted": _agent_restarted,
    "agent/resumed": _agent_resumed,
    "agent/supervision": _agent_supervision,
    "agent/message": _agent_message,
    "policy/refused": _policy_refused,
    "bus/denied": _bus_denied,
    "lock/acquired": _lock_acquired,
    "lock/released": _lock_released,
    "lock/conflict": _lock_conflict,
    "conflict/opened": _conflict_opened,
    "conflict/resolved": _conflict_resolved,
    "tool/requested": _call_requested("tool", "tool"),
    "tool/result": _call_ended("tool"),
    "llm/requested": _llm_requested,
    "llm/delta": _llm_delta,
    "llm/result": _call_ended("llm"),
    "approval/requested": _approval_requested,
    "approval/granted": _approval_answered,
    "approval/denied": _approval_answered,
})
