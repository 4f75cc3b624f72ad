"""Replaying an agent's journal after a crash: recorded outcomes instead of new effects.

Invoked from the interpreter (:mod:`agentctl.runtime.interpreter`) before it carries out
an action of an agent that is being resumed. While the agent's journal still has
outcomes of a kind, an action of that kind is answered from the journal: a recorded
tool or LLM result is handed back and the call is not made again; a recorded send is
not sent again; a recorded spawn starts the child again only if it was still live (with
its own journal). A tool call that was requested but has no result was settled before
the agents started (:mod:`agentctl.runtime.interrupted`) if its tool has a ``recover``
check: applied (its outcome is handed back), not applied (it runs again) or unknown.
A call an approval gate held is held again (or, granted before the crash, runs now); a
denied one gets its denial back.
Otherwise it runs again if its tool is idempotent (LLM calls always may) or the agent's
plan opted into that (``on_interrupted: retry``); an unknown or non-idempotent one gets
an ``interrupted`` result. A stop answers at once; a sleep is carried out on the
agent's replayed clock by the interpreter (only what is left of it waits, and one that a
message may end ends as it did the first time). The locks the agent held were given back to it before it started
(``lock/acquired`` by ``resume``), so its recorded lock actions never touch the lock
table again: an acquire or release its journal recorded (``lock/acquired`` and
``lock/released`` by ``step``) answers at once. Any other lock action runs live (an
acquire that was still waiting at the crash, and the release that follows it).

Like Temporal's workflow replay, this needs step functions to be deterministic given
their inputs; script and LLM agents are (an LLM agent's replies are in the journal).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from ..actions import AcquireLock, Action, CallLLM, CallTool, ReleaseLock, Result, Send, Spawn, Stop
from ..errors import LockError
from ..policy import Budget
from ..services.approvals import Answer
from ..services.llm.base import ChatReply, ToolCall
from ..services.locks import normalize_path

if TYPE_CHECKING:
    from .action_services import ActionServices
    from .agent import Agent

_OPS = {Send: "send", Spawn: "spawn", CallTool: "tool", CallLLM: "llm", AcquireLock: "lock", ReleaseLock: "unlock"}


def replay(svc: ActionServices, agent: Agent, action: Action) -> Result | Action | None:
    """The recorded answer to ``action``, an action to run instead, or None to run it live."""
    rep = agent.replay
    assert rep is not None
    if isinstance(action, Stop):
        agent.saw_end(action.agent_id)
        return Result(action, True)  # the subtree was stopped the first time
    op = _OPS.get(type(action))
    if op is None:
        return None
    queue = rep.queues[op]
    effect = (_take_lock(queue, action.path) if isinstance(action, (AcquireLock, ReleaseLock))
              else queue.popleft() if queue else None)
    if effect is None:
        agent.charge_due()  # it acts anew: in the run that died, its children ended before
        _live(svc, agent)
        return None
    if agent.charges is not None:
        agent.charge_due(effect=rep.index(effect))
    if rep.finished:
        agent.replay = None
    if effect.get("t") is not None:
        agent.clock_t = effect["t"] / 1000  # the next step runs when this outcome came
    if op in ("lock", "unlock"):
        agent.log_outcome(op)
        return Result(action, True)
    if op == "send":
        agent.log_outcome(op)
        return Result(action, bool(effect["ok"]), None, None if effect["ok"] else str(effect.get("error") or "inbox_full"))
    if op == "spawn":
        return _spawn(svc, agent, action, effect)  # type: ignore[arg-type]
    answer = _tool(svc, agent, action, effect) if op == "tool" else _llm(agent, action, effect)  # type: ignore[arg-type]
    if isinstance(answer, Result):
        agent.log_outcome(op)  # an action it returns instead logs (or is handed) its outcome when carried out
    else:
        _live(svc, agent)  # the call is made (or held for approval) again, now
    return answer


def _live(svc: ActionServices, agent: Agent) -> None:
    """``agent`` carries out an action live (anew, or again: its crash left it without an
    outcome): the messages held back while it replayed came while that action went on, so
    the step that reads its outcome reads them, as it would have (a member of a parallel
    batch too, while another one is still being handed its outcome)."""
    if agent.inbox.held is not None:
        svc.tree.caught_up(agent)


def _take_lock(queue: deque[dict[str, Any]], path: str) -> dict[str, Any] | None:
    """The first recorded acquire (or release) of ``path`` (those of a parallel batch may
    have been carried out in another order than they are replayed)."""
    path = _normalized(path)
    for i, effect in enumerate(queue):
        if effect["path"] == path:
            del queue[i]
            return effect
    return None


def _normalized(path: str) -> str:
    try:
        return normalize_path(path)
    except LockError:
        return ""  # never recorded: the action runs live and fails there as it did before


def _spawn(svc: ActionServices, agent: Agent, action: Spawn, effect: dict[str, Any]) -> Result:
    if not effect["ok"]:
        return Result(action, False, effect.get("error"), "policy_refused")
    journal = svc.resume.journals.get(action.spec.id) if svc.resume is not None else None
    if journal is not None:
        svc.tree.spawn(action.spec, agent, journal=journal)
        return Result(action, True, action.spec.id)
    agent.spawned_children += 1  # ended, not started again: one of its spawns all the same
    agent.ended_before(action.spec.id)  # its steps see it live until they read of its end
    if effect.get("budget") is not None:
        agent.hold_for_ended(action.spec.id, Budget.from_mapping(effect["budget"]))
    return Result(action, True, action.spec.id)


def _tool(svc: ActionServices, agent: Agent, action: CallTool, effect: dict[str, Any]) -> Result | Action:
    agent.tool_calls += 1
    denied = effect.get("denied")
    if denied is not None:
        answer = Answer(False, str(denied.get("by") or "user"), denied.get("reason"))
        return Result(action, False, answer.refusal(effect["call_id"], action.name), "denied")
    if effect["done"]:
        ok = effect["ok"]
        if effect.get("interrupted"):
            agent.interrupted_call = f"{effect['call_id']} ({action.name})"
            return Result(action, False, effect.get("error"), "interrupted")
        return Result(action, ok, effect.get("value") if ok else effect.get("error"), None if ok else "tool_error")
    verdict = effect.get("verdict")
    if effect.get("approval") is not None:
        # Held, or granted but not yet run: the approval service knows which (from the log).
        agent.tool_calls -= 1
        return CallTool(action.name, action.arguments, effect["call_id"])
    if (verdict == "rerun" or (verdict is None and action.name in svc.tools and svc.tools.get(action.name).idempotent)
            or agent.spec.on_interrupted == "retry"):  # the plan accepts that it may run twice
        agent.tool_calls -= 1
        return CallTool(action.name, action.arguments, effect["call_id"])
    why = "its effect could not be checked" if verdict == "unknown" else f"{action.name} is not idempotent"
    agent.interrupted_call = f"{effect['call_id']} ({action.name})"
    return Result(action, False, f"call {effect['call_id']} was interrupted by a crash and may or may not have run; {why}",
                  "interrupted")


def _llm(agent: Agent, action: CallLLM, effect: dict[str, Any]) -> Result | Action:
    if not effect["done"]:
        return CallLLM(action.messages, action.tools, action.model, action.options, effect["call_id"])
    agent.tokens += int(effect.get("tokens") or 0)
    if not effect["ok"]:
        return Result(action, False, effect.get("error"), "llm_error")
    reply = effect.get("value") or {}
    calls = tuple(
        ToolCall(c.get("id", ""), c.get("name", ""), c.get("arguments") or {}, c.get("error"))
        for c in reply.get("tool_calls") or ()
    )
    return Result(action, True, ChatReply(reply.get("content") or "", calls, 0, int(effect.get("tokens") or 0)))
