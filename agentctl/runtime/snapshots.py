"""Agent-state snapshots: a live agent's state at a checkpoint, so that resuming it costs
what it did since, not its whole history.

Taken by the runtime (:meth:`agentctl.runtime.runtime.Runtime.snapshots`) when the
checkpointer writes a checkpoint (:class:`agentctl.events.checkpoint.Checkpointer`), which
lets each stand for the agent's journal so far (:meth:`agentctl.events.journal.Journal.rebase`);
restored by the tree (:mod:`agentctl.runtime.tree`) when a resume starts the agent again:
its state, counters and the call it was waiting for come back, and only the outcomes and
messages logged after the snapshot are replayed.

An agent is snapshotted only when its spec says how to keep its state
(:class:`~agentctl.runtime.spec.StateCodec`: script and LLM agents, plugin steps that
declare it) and it is between steps: idle, or carrying out actions whose outcomes the log or
the clock can answer (:data:`KEPT`: tool and LLM calls, held for approval or not, sleeps,
lock acquires, sends, unlocks, a ``done`` yet to run, parallel batches of those). The snapshot records those actions, when its
step asked for them (``since``) and the kinds of outcome they have had logged (``logged``);
a resume carries them out again from ``since``: logged outcomes are handed back from the
journal, a sleep or a lock wait waits only what is left, a call with no outcome follows the
interrupted-call rules. Its live children are kept by id, spec and grant (when its step
function can keep their specs: script and LLM agents), and a resume starts each again from
its own journal (:mod:`agentctl.runtime.lineage`). Any other agent keeps its whole journal
and is replayed from its start, as before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import msgspec

from ..actions import AcquireLock, Action, CallLLM, CallTool, Done, Parallel, ReleaseLock, Send, Sleep
from ..errors import LogError
from .agent import Agent
from .spec import AgentSpec

#: The snapshot format; another version is not restored.
VERSION = 2

#: The actions a snapshot may record an agent carrying out, by the name it records: those
#: whose outcome the log (or the clock) answers when they are carried out again, and
#: ``done``, which has none until it ends the agent.
KEPT: dict[str, type] = {"llm": CallLLM, "tool": CallTool, "sleep": Sleep, "lock": AcquireLock, "parallel": Parallel,
                         "send": Send, "unlock": ReleaseLock, "done": Done}
_OP_OF: dict[type, str] = {kind: op for op, kind in KEPT.items()}


class SnapshotError(LogError):
    """A snapshot that cannot be restored (damaged, or taken of another step function)."""


@dataclass(frozen=True, slots=True)
class Restored:
    """A snapshot, decoded and checked against the agent's spec: what :func:`apply` sets."""

    state: dict[str, Any]
    actions: tuple[Action, ...]
    since: int
    turns: int
    steps: int
    tool_calls: int
    tokens: int
    spawned_children: int
    t: int


def take(agent: Agent) -> dict[str, Any] | None:
    """The agent's snapshot now, or None when it cannot be taken (see the module doc)."""
    codec = agent.spec.state_codec
    if (codec is None or agent.ended or not agent.started or agent.results or agent.tick_due
            or agent.replay is not None or agent.resume_actions is not None or agent.interrupted_call is not None
            or agent.charges is not None or agent.inbox.held is not None):
        return None
    children = _children(agent)
    if children is None:
        return None
    logged: list[str] = []
    acting: tuple[Any, ...] = ()
    if agent.scope is None:
        if agent.scheduled:
            return None  # it has something to do: a step is due
    else:
        if agent.acting is None or agent.logged is None or not all(map(_kept, agent.acting)):
            return None  # an async step under way, or an action the log cannot answer
        acting, logged = agent.acting, list(agent.logged)
    try:
        actions = [_encoded(a) for a in acting]
        state = codec.encode(agent.state)
    except Exception:  # a state (or a message body) it cannot keep: the agent is simply replayed in full
        return None
    return {"version": VERSION, "tag": codec.tag, "state": state, "actions": actions, "logged": logged,
            "since": int(agent.acting_since * 1000) if actions else 0, "turns": agent.inbox.steps,
            # The calls carried out again are counted again.
            "steps": agent.steps, "tool_calls": agent.tool_calls - logged.count("tool"),
            # Its LLM calls in flight are made again: what they set aside is set aside again.
            "tokens": agent.tokens - agent.reserved_tokens,
            "spawned_children": agent.spawned_children, "children": children, "t": int(time.time() * 1000)}


def _kept(action: Action) -> bool:
    kind = type(action)
    return kind in _OP_OF and (kind is not Parallel or all(map(_kept, action.actions)))  # type: ignore[union-attr]


def _encoded(action: Action) -> dict[str, Any]:
    if isinstance(action, Parallel):
        return {"op": "parallel", "actions": [_encoded(a) for a in action.actions]}
    return {"op": _OP_OF[type(action)], **msgspec.to_builtins(action)}


def _decoded(data: dict[str, Any]) -> Action:
    kind = KEPT[data["op"]]
    if kind is Parallel:
        return Parallel(tuple(_decoded(a) for a in data["actions"]))
    action: Action = msgspec.convert({k: v for k, v in data.items() if k != "op"}, kind)
    return action


def restored(spec: AgentSpec, snapshot: Any) -> Restored:
    """``snapshot`` decoded for an agent of ``spec``; :class:`SnapshotError` says why it cannot be used."""
    codec = spec.state_codec
    if not isinstance(snapshot, dict):
        raise SnapshotError(f"it is a {type(snapshot).__name__}, not an object")
    if codec is None:
        raise SnapshotError(f"agent {spec.id!r} ({spec.kind}) keeps no snapshots")
    if snapshot.get("version") != VERSION:
        raise SnapshotError(f"its version is {snapshot.get('version')!r}, not {VERSION}")
    if snapshot.get("tag") != codec.tag:
        raise SnapshotError(f"it was taken of another step function ({snapshot.get('tag')!r}, not {codec.tag!r})")
    try:
        counts = {k: _count(snapshot, k)
                  for k in ("since", "turns", "steps", "tool_calls", "tokens", "spawned_children", "t")}
        actions = tuple(_decoded(a) for a in snapshot["actions"])
        state = codec.decode(snapshot["state"])
    except SnapshotError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, msgspec.ValidationError) as exc:
        raise SnapshotError(f"it does not decode ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict):
        raise SnapshotError("its state does not decode to an object")
    return Restored(state, actions, **counts)


def _count(snapshot: dict[str, Any], key: str) -> int:
    value = snapshot[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise SnapshotError(f"its {key} is {value!r}, not a count")
    return value


def apply(agent: Agent, snap: Restored) -> None:
    """Put the agent where the snapshot was taken: state, counters, and the calls it awaited
    (carried out again, answered from the journal when their outcome is in it)."""
    agent.state = snap.state
    agent.steps, agent.tool_calls, agent.tokens = snap.steps, snap.tool_calls, snap.tokens
    agent.spawned_children = snap.spawned_children
    agent.inbox.steps = snap.turns
    agent.started = True  # its next step is not a start
    agent.resume_actions = list(snap.actions) or None


def _children(agent: Agent) -> list[dict[str, Any]] | None:
    """The agent's live children as its snapshot keeps them, in start order: each one's id,
    its spec as the agent's step function made it, and what it was granted (restored by
    :mod:`agentctl.runtime.lineage`); None when its step function cannot keep one of them."""
    codec = agent.spec.state_codec
    kept = codec.children if codec is not None else None
    children = []
    for child_id, child in agent.children.items():
        spec = kept.encode(child.spec) if kept is not None else None
        if spec is None:
            return None
        children.append({"id": child_id, "spec": spec, "grant": child.grant.to_dict()})
    return children
