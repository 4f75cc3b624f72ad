"""Script agents: deterministic steps declared in the plan, the offline default.

Invoked from :mod:`agentctl.agents.factory`, which also hands in how a ``spawn`` step's
task becomes a child's spec (the factory builds script agents, so it cannot be imported here). Each plan step becomes one runtime step
that returns one action; the next step first checks that action's result, so a failed
write or a lock that could not be had fails the agent (and supervision decides) instead
of being skipped. Messages that arrive while the script is busy are kept for ``wait``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import msgspec

from .. import actions as act
from ..errors import AgentctlError
from ..frozen import thaw
from ..plan.model import Step, Task
from ..runtime.snapshots import SnapshotError
from ..runtime.spec import AgentSpec, ChildCodec, StateCodec, StepContext
from ..services.bus import Message

#: Builds the spec of a child a ``spawn`` step starts from its task.
ChildSpec = Callable[[Task], AgentSpec]


class ScriptFailed(AgentctlError):
    """A script's ``fail`` step, or a step whose action did not succeed."""


def script_step(steps: Sequence[Step], child_spec: ChildSpec):
    """The step function that runs ``steps`` in order (``child_spec`` builds what ``spawn`` starts)."""

    def step(ctx: StepContext) -> list[act.Action]:
        state = ctx.state
        pc: int = state.setdefault("pc", 0)
        mailbox: list = state.setdefault("mailbox", [])
        mailbox.extend(ctx.messages)
        if ctx.results and "pending" in state:
            _check(steps[state.pop("pending")], ctx.results[0])
        while pc < len(steps):
            current = steps[pc]
            if current.op == "wait":
                if _take(mailbox, current.arg["kind"]):
                    state.pop("wait_until", None)
                    state["pc"] = pc = pc + 1
                    continue
                return _wait_more(current, state, ctx.now)
            if current.op == "resolve":
                conflict = _pop(mailbox, "conflict")
                if conflict is None:
                    return []
                state["pc"] = pc + 1
                state["pending"] = pc
                return [_resolve(ctx.agent_id, current, conflict)]
            action = _action(current, child_spec)
            state["pc"] = pc + 1
            state["pending"] = pc
            return [action]
        return [act.done("ok", None)]

    return step


def script_codec(steps: Sequence[Step], child_spec: ChildSpec | None = None) -> StateCodec:
    """How a script agent's state (its position, the messages it keeps for ``wait``, a
    wait's deadline) is kept in a snapshot; the tag names the script, so a snapshot of
    another script is not restored. With ``child_spec`` (what its ``spawn`` steps build
    with) its live children are kept too, each as the number of the step that spawned it."""
    digest = hashlib.sha256(repr(tuple(steps)).encode()).hexdigest()[:16]
    children = None if child_spec is None else ChildCodec(partial(_spawn_step, steps), partial(_spawned_by, steps, child_spec))
    return StateCodec(f"script/1:{digest}", msgspec.to_builtins, _decode_state, children)


def _spawn_step(steps: Sequence[Step], child: AgentSpec) -> int | None:
    """The number of the ``spawn`` step whose task ``child`` was built from."""
    task = child.meta.get("task")
    return next((i for i, s in enumerate(steps) if s.op == "spawn" and s.arg is task), None)


def _spawned_by(steps: Sequence[Step], child_spec: ChildSpec, index: Any) -> AgentSpec:
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(steps) or steps[index].op != "spawn":
        raise SnapshotError(f"its child entry {index!r} is not one of the script's spawn steps")
    return child_spec(steps[index].arg)


def _decode_state(data: Any) -> dict[str, Any]:
    state = dict(data)
    if not isinstance(state.get("pc"), int):
        raise SnapshotError(f"its pc is {state.get('pc')!r}, not a step number")
    state["mailbox"] = [msgspec.convert(m, Message) for m in state.get("mailbox") or ()]
    return state


def _take(mailbox: list, kind: str) -> bool:
    return _pop(mailbox, kind) is not None


def _pop(mailbox: list, kind: str) -> Any:
    for i, msg in enumerate(mailbox):
        if msg.kind == kind:
            return mailbox.pop(i)
    return None


def _resolve(me: str, step: Step, conflict: Any) -> act.Action:
    """Answer a ``conflict`` message: grant the lock to the requester, the holder or an id."""
    body = conflict.body or {}
    grant = {"requester": body.get("requester"), "holder": body.get("holder")}.get(step.arg["grant"], step.arg["grant"])
    to = body.get("holder") if me == body.get("requester") else body.get("requester")
    answer = {"conflict_id": body.get("conflict_id"), "grant": grant, "outcome": step.arg.get("outcome") or "wait"}
    return act.send(str(to), "resolve", answer, conflict.thread_id)


def _wait_more(step: Step, state: dict[str, Any], now: float) -> list[act.Action]:
    # On the step's clock (ctx.now): a replayed step computes the deadline it first did.
    timeout = step.arg.get("timeout")
    if timeout is None:
        return []
    until = state.setdefault("wait_until", now + float(timeout))
    left = until - now
    if left <= 0:
        raise ScriptFailed(f"wait for {step.arg['kind']!r} timed out after {timeout}s")
    return [act.sleep(left, wake_on_message=True)]


def _check(step: Step, result: act.Result) -> None:
    if result.ok:
        return
    raise ScriptFailed(f"step {step.op} failed: {result.error}: {result.value}")


def _action(step: Step, child_spec: ChildSpec) -> act.Action:
    op, arg = step.op, step.arg
    if op in ("write", "append"):
        return act.call_tool(f"fs/{op}", {"path": arg["path"], "content": arg["content"]})
    if op == "sleep":
        return act.sleep(float(arg))
    if op == "send":
        return act.send(arg["to"], arg.get("kind") or "chat", thaw(arg.get("body")))
    if op == "spawn":
        return act.spawn(child_spec(arg))
    if op == "lock":
        return act.acquire_lock(arg["path"], arg.get("mode") or "write", float(arg.get("timeout") or 0))
    if op == "unlock":
        return act.release_lock(arg)
    if op == "call":
        return act.call_tool(arg["tool"], thaw(arg.get("args") or {}))
    if op == "fail":
        raise ScriptFailed(str(arg))
    if op == "done":
        return act.done("ok", thaw(arg))
    raise ScriptFailed(f"unknown script step {op!r}")
