"""The action interpreter: carries out the actions a step returned.

Invoked from ``agentctl.runtime.scheduler``. Actions that never wait (send, spawn, stop,
release, an acquire that answers at once, done) run inline in the scheduler: a whole
conversation of such steps costs no event-loop turn per message. Actions that wait
(tool and LLM calls, sleeps, lock waits, parallel batches) run in the agent's own task.
Every action answers with a :class:`~agentctl.actions.Result`; failures are values, so
a step can decide what to do about them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from ..actions import (
    AcquireLock,
    Action,
    CallLLM,
    CallTool,
    Done,
    Parallel,
    ReleaseLock,
    Result,
    Send,
    Sleep,
    Spawn,
    Stop,
    result,
)
from ..errors import ActionError, AgentctlError, LockError
from ..policy import FS_TOOLS, gate_for
from ..services.llm.base import ChatRequest
from ..services.tools.fs import resolve_in_workspace
from .ledger import reserve_tokens, time_left
from .recovery import replay
from .timers import clock

if TYPE_CHECKING:
    from .action_services import ActionServices
    from .agent import Agent

ACTION_TYPES = (Send, Spawn, Stop, AcquireLock, ReleaseLock, CallTool, CallLLM, Sleep, Done, Parallel)
_FAST = frozenset((Send, Spawn, Stop, ReleaseLock, Done))


def is_fast(action: Action) -> bool:
    """Whether ``action`` completes without waiting."""
    kind = type(action)
    return kind in _FAST or (kind is AcquireLock and action.timeout <= 0)  # type: ignore[union-attr]


def check_actions(out: object) -> list[Action]:
    """The step's output as a list of actions, or ``ActionError`` naming the bad one."""
    if out is None:
        return []
    if isinstance(out, ACTION_TYPES):
        return [out]
    if not isinstance(out, (list, tuple)):
        raise ActionError(f"a step must return a list of actions, got {type(out).__name__}")
    for i, action in enumerate(out):
        if not isinstance(action, ACTION_TYPES):
            raise ActionError(f"unknown action at position {i}: {action!r}")
        if isinstance(action, Parallel):
            check_actions(list(action.actions))
    return list(out)


def run_fast(svc: ActionServices, agent: Agent, action: Action, *, replayed: bool = False) -> Result:
    """Carry out an action that never waits (``replayed``: the journal was consulted)."""
    if agent.replay is not None and not replayed:
        answer = replay(svc, agent, action)
        if isinstance(answer, Result):
            return answer
    if agent.inbox.held is not None and agent.replay is None:
        svc.tree.caught_up(agent)  # as in run_action
    run = _IMMEDIATE.get(type(action))
    if run is None:  # a subclass of an action type
        run = next((fn for kind, fn in _IMMEDIATE.items() if isinstance(action, kind)), None)
        if run is None:
            raise ActionError(f"{type(action).__name__} is not an immediate action")
    return run(svc, agent, action)


def _spawn(svc: ActionServices, agent: Agent, action: Spawn) -> Result:
    try:
        child = svc.tree.spawn(action.spec, agent)
    except AgentctlError as exc:
        return Result(action, False, str(exc), "policy_refused")
    return Result(action, True, child)


def _acquire(svc: ActionServices, agent: Agent, action: AcquireLock) -> Result:
    lock = svc.locks.try_acquire(agent.id, action.path, action.mode)
    if lock.ok:
        agent.log_outcome("lock")
    if lock.conflict is not None:
        svc.conflicts.opened(agent, lock.conflict, waiting=False, since=agent.clock_t)
    return Result(action, lock.ok, lock, None if lock.ok else "conflict")


def _release(svc: ActionServices, agent: Agent, action: ReleaseLock) -> Result:
    try:
        svc.locks.release(agent.id, action.path)
    except LockError as exc:
        return Result(action, False, str(exc), "not_held")
    agent.log_outcome("unlock")  # lock/released, even when it only counted a hold down
    return Result(action, True)


def _done(svc: ActionServices, agent: Agent, action: Done) -> Result:
    svc.tree.finish(agent, action.status, action.result)
    return Result(action, True, action.result)


def _send(svc: ActionServices, agent: Agent, action: Send) -> Result:
    to = action.to
    if to == "parent":
        if agent.parent is None:
            return Result(action, False, "a root agent has no parent", "no_parent")
        to = agent.parent.id
    sent = svc.bus.send(agent.id, to, action.kind, action.body, action.thread_id)
    agent.log_outcome("send")  # every send is logged: agent/message, or bus/denied
    if action.thread_id is not None and action.kind == "resolve":
        svc.conflicts.answered(agent.id, action.thread_id, action.body)
    ok = sent.ok
    return result(action, ok, sent, None if ok else str(sent.status))


def _stop(svc: ActionServices, agent: Agent, action: Stop) -> Result:
    target = svc.agents.get(action.agent_id)
    node = target
    while node is not None and node is not agent:
        node = node.parent
    if target is None or node is None:
        return Result(action, False, f"{action.agent_id!r} is not a live descendant", "not_descendant")
    # Its parent hears of it unless the parent is the one who asked.
    svc.tree.stop_tree(target, "requested", report=target.parent is not agent)
    return Result(action, True, action.agent_id)


#: How each action that never waits is carried out, by type (a lookup, where a chain of
#: isinstance tests cost a few per action on the message path).
_IMMEDIATE: dict[type, Callable[[ActionServices, Agent, Any], Result]] = {
    Send: _send,
    Spawn: _spawn,
    Stop: _stop,
    AcquireLock: _acquire,
    ReleaseLock: _release,
    Done: _done,
}


async def run_action(svc: ActionServices, agent: Agent, action: Action) -> Result:
    """Carry out any action, waiting where it must."""
    if agent.replay is not None and not isinstance(action, Parallel):
        answer = replay(svc, agent, action)
        if isinstance(answer, Result):
            return answer
        action = answer or action
    if agent.inbox.held is not None and agent.replay is None:
        # Its replay is over and this action is carried out live (a sleep after its last
        # recorded outcome, say): what came while it replayed came before this action's
        # end, so the step that reads its outcome reads them, as it would have.
        svc.tree.caught_up(agent)
    if is_fast(action):
        return run_fast(svc, agent, action, replayed=True)
    if isinstance(action, Sleep):
        return await _sleep(svc, agent, action)
    if isinstance(action, (CallTool, CallLLM, AcquireLock)):
        result = await (_call_tool(svc, agent, action) if isinstance(action, CallTool) else
                        _call_llm(svc, agent, action) if isinstance(action, CallLLM) else _lock(svc, agent, action))
        agent.clock_t = None  # its outcome came now: a resumed agent's steps are live again
        return result
    if isinstance(action, Parallel):
        return await _parallel(svc, agent, action)
    raise ActionError(f"unknown action {action!r}")


async def _lock(svc: ActionServices, agent: Agent, action: AcquireLock) -> Result:
    # Durable across a resume: the wait and an arbiter's time to answer count from when
    # the step first asked (agent.clock_t), not from now.
    svc.set_status(agent, "blocked", "lock")
    since = agent.clock_t
    lock = await svc.locks.acquire(
        agent.id, action.path, action.mode, timeout=agent.left_of(action.timeout),
        on_conflict=lambda conflict: svc.conflicts.opened(agent, conflict, waiting=True, since=since),
        # A resumed agent queues where its wait first began, ahead of those that came later.
        queued_at=time.time() if since is None else since,
        # Counted as it is logged: a checkpoint between the grant and the end of the wait
        # must not see a lock/acquired that the agent's actions do not account for.
        on_granted=partial(agent.log_outcome, "lock"),
    )
    svc.set_status(agent, "running", "lock")
    return Result(action, lock.ok, lock, None if lock.ok else "conflict")


async def _sleep(svc: ActionServices, agent: Agent, action: Sleep) -> Result:
    since = agent.clock_t
    if since is not None:
        # Carried out again after a resume: it began on the agent's replayed clock (when
        # its step, or the batch it is in, first began), so it ends as it did the first
        # time; only what is left of it waits now.
        over = _over(agent, action, since)
        if over is not None:
            return over
        seconds = agent.left_of(action.seconds)
    else:
        if action.wake_on_message and len(agent.inbox):
            return Result(action, True, "message")
        seconds = action.seconds
    # A sleep that a message ends (a script's `wait` step) is waiting for that message.
    svc.set_status(agent, *(("waiting", "wait") if action.wake_on_message else ("sleeping", "sleep")))
    # Its own event: a message ends every such sleep of a batch that is waiting when it comes.
    woken = anyio.Event() if action.wake_on_message else None
    if woken is not None:
        agent.wakers = [*(agent.wakers or ()), woken]
    try:
        if woken is None:
            await anyio.sleep(seconds)
            return Result(action, True, "timeout")
        with anyio.move_on_after(seconds):
            await woken.wait()
            return Result(action, True, "message")
        return Result(action, True, "timeout")
    finally:
        agent.clock_t = None  # it ended now: the agent's steps are live again
        if woken is not None:
            agent.wakers = [w for w in agent.wakers or () if w is not woken] or None
        svc.set_status(agent, "running", "wait" if action.wake_on_message else "sleep")


def _over(agent: Agent, action: Sleep, since: float) -> Result | None:
    """How a sleep that began at ``since`` on the agent's replayed clock had ended by now:
    a message that came before its deadline ended it then; else, once the deadline is past,
    it ran out then (a message that came later waits for the next step, as it did). None:
    neither yet."""
    until = since + action.seconds
    came = agent.inbox.first_t() if action.wake_on_message else None
    if came is not None and came < until * 1000:  # logged times are whole milliseconds
        agent.clock_t = max(since, came / 1000)
        return Result(action, True, "message")
    if until > time.time():
        return None
    agent.clock_t = until
    return Result(action, True, "timeout")


async def _parallel(svc: ActionServices, agent: Agent, action: Parallel) -> Result:
    results: list[Result | None] = [None] * len(action.actions)
    # Every member begins when the batch does: on a replayed clock, each one's own outcome
    # moves the clock on for it alone (a sleep counts from the batch's start, not from a
    # sibling's logged outcome), and the batch ends with the last of them.
    began = agent.clock_t
    ended: list[float | None] = [began] * len(action.actions)

    async def one(i: int, member: Action) -> None:
        agent.clock_t = began
        results[i] = await run_action(svc, agent, member)
        ended[i] = agent.clock_t

    async with anyio.create_task_group() as tg:
        for i, member in enumerate(action.actions):
            tg.start_soon(one, i, member)
    times = [t for t in ended if t is not None]
    agent.clock_t = max(times) if began is not None and len(times) == len(ended) else None
    done = tuple(r for r in results if r is not None)
    return Result(action, all(r.ok for r in done), done, None if all(r.ok for r in done) else "partial_failure")


async def _call_tool(svc: ActionServices, agent: Agent, action: CallTool) -> Result:
    if action.name not in agent.grant.tools:
        return Result(action, False, f"tool {action.name!r} is not granted to {agent.id}", "tool_not_allowed")
    left = agent.left("max_tool_calls")
    if left is not None and left <= 0:
        return Result(action, False, "max_tool_calls used up", "budget_exceeded")
    agent.tool_calls += 1
    agent.log_outcome("tool")  # its request (or the gate's hold) is logged before this task yields
    call_id = action.call_id
    if agent.grant.approve or call_id is not None:
        gate = gate_for(agent.grant.approve, action.name, lambda: _gated_path(svc, agent, action))
        # A call the log says was held stays held, even if a plan edit dropped its gate meanwhile.
        gate = gate or (svc.approvals.recorded(call_id) if call_id is not None else None)
        if gate is not None:
            call_id = call_id or svc.approvals.new_call_id()
            denied = await _held(svc, agent, action, call_id, gate)
            if denied is not None:
                return denied
    out = await svc.plane.call_tool(agent.id, action.name, action.arguments, call_id=call_id, ctx=svc.tool_context(agent),
                                   timeout=agent.spec.tool_timeout, within=time_left(agent, clock()))
    if out.error_type == "interrupted":
        # Its worker was lost mid-call: the agent is told as a resumed one would be, and
        # fails for good if its step fails over it (see runtime.recovery).
        agent.interrupted_call = f"{out.call_id} ({action.name})"
    return Result(action, out.ok, out.value if out.ok else out.error, None if out.ok else (out.error_type or "tool_error"))


async def _held(svc: ActionServices, agent: Agent, action: CallTool, call_id: str, gate: str) -> Result | None:
    """Wait for a person's answer to a call ``gate`` holds: None when granted, else the denial."""
    policy = svc.tree.policy
    svc.set_status(agent, "waiting", "approval")
    try:
        answer = await svc.approvals.hold(agent.id, call_id, action.name, svc.tools.redact(action.name, action.arguments),
                                          gate, timeout=policy.approve_timeout, default=policy.approve_default)
    finally:
        svc.set_status(agent, "running", "approval")
    if answer.granted:
        return None
    return Result(action, False, answer.refusal(call_id, action.name), "denied")


def _gated_path(svc: ActionServices, agent: Agent, action: CallTool) -> str | None:
    """The workspace path a file tool's call names, as the tool will resolve it; None if it cannot."""
    path = action.arguments.get("path", "." if action.name == f"{FS_TOOLS}list" else None)
    if not action.name.startswith(FS_TOOLS) or not isinstance(path, str):
        return None
    try:
        return resolve_in_workspace(svc.tool_context(agent), path)[1]
    except AgentctlError:
        return None


async def _call_llm(svc: ActionServices, agent: Agent, action: CallLLM) -> Result:
    specs = tuple(svc.tools.get(name).spec() for name in action.tools if name in agent.grant.tools and name in svc.tools)
    request = ChatRequest(
        model=action.model or agent.grant.model or "",
        messages=tuple(action.messages),
        tools=specs,
        options=dict(action.options),
    )
    # Reserved before the call, so that parallel calls cannot together overspend.
    reserved = reserve_tokens(agent, request)
    if isinstance(reserved, str):
        return Result(action, False, reserved, "budget_exceeded")
    request, reservation = reserved
    agent.log_outcome("llm")
    out = await svc.plane.call_llm(agent.id, request, call_id=action.call_id, provider=agent.spec.provider,
                                  within=time_left(agent, clock()))
    if reservation is not None:
        reservation.settle(out.tokens)
    else:
        agent.tokens += out.tokens
    return Result(action, out.ok, out.value if out.ok else out.error, None if out.ok else (out.error_type or "llm_error"))
