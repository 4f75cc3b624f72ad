"""LLM agents: a step function that lets a model drive an agent through tool calls.

Invoked from ``agentctl.agents.factory`` (``agent: llm`` tasks, via :func:`llm_step`) and
from the ``agent/spawn`` bridge (:func:`llm_child_spec`). One round of the loop:

1. the step asks the model (``call_llm``) with a system prompt describing the agent's
   place in the tree, the task, and the conversation so far;
2. the reply's tool calls become actions: ``agent/spawn|send|done`` become the runtime's
   own ``spawn``/``send``/``done`` actions, other tools ``call_tool``; several calls run as
   one ``parallel`` batch. Undecodable or unknown calls are answered with an error at once;
3. the next step feeds the results back as ``tool`` messages and asks the model again.

A reply without tool calls is the final answer: the agent ends with ``done("ok", text)``
(unless messages arrived meanwhile, which the model is shown first, or it still has live
children, whose reports it then waits for). The conversation
lives in ``ctx.state``; the runtime's budgets (``max_steps`` ...) bound the loop.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import msgspec

from .. import actions as act
from ..actions import Action, Result
from ..plan.model import Task
from ..policy import Budget
from ..runtime.snapshots import SnapshotError
from ..runtime.spec import AgentSpec, ChildCodec, StateCodec, StepContext, StepFn
from ..services.bus import Message
from ..services.llm.base import ChatReply, ToolCall
from ..services.tools.bridge import SCHEMAS as BRIDGE_SCHEMAS
from ..services.tools.schema import SchemaError, validate

__all__ = ["LLMAgentConfig", "llm_child_spec", "llm_codec", "llm_step", "trim_context"]


@dataclass(frozen=True, slots=True)
class LLMAgentConfig:
    """How an LLM agent talks to its model.

    Attributes:
        context_chars: the conversation (system prompt included) is kept under this many
            characters, oldest turns dropped first; the system prompt and the task stay.
        context_tokens: the same limit in approximate tokens (4 characters each); wins
            over ``context_chars`` when set.
        llm_retries: failed LLM calls retried (one per step) before the agent gives up.
        tool_result_chars: a tool result longer than this is cut before the model sees it.
        options: provider options sent with every call (e.g. ``{"temperature": 0}``).
    """

    context_chars: int = 24_000
    context_tokens: int | None = None
    llm_retries: int = 2
    tool_result_chars: int = 4_000
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def limit(self) -> int:
        """The context limit in characters."""
        return self.context_tokens * 4 if self.context_tokens is not None else self.context_chars


def llm_step(task: Task, config: LLMAgentConfig = LLMAgentConfig()) -> StepFn:
    """The step function of an ``llm`` agent doing ``task``."""
    instructions = (task.instructions or "").strip() or "(no instructions given)"

    def step(ctx: StepContext) -> list[Action]:
        return _step(ctx, instructions, config)

    step.__qualname__ = f"llm_step[{task.id}]"
    return step


def llm_codec(task: Task, config: LLMAgentConfig = LLMAgentConfig()) -> StateCodec:
    """How an ``llm`` agent's state (its conversation, what it awaits, the calls it made)
    is kept in a snapshot; the tag names its instructions and config."""
    digest = hashlib.sha256(repr((task.instructions, config)).encode()).hexdigest()[:16]
    return StateCodec(f"llm/1:{digest}", lambda state: json.loads(json.dumps(state)), _decode_state,
                      ChildCodec(_spawn_args, partial(_spawned_by, config)))


class _SpawnArgs(msgspec.Struct, forbid_unknown_fields=True):
    """An ``agent/spawn`` call as its child's spec was built from it (see :func:`llm_child_spec`)."""

    id: str
    instructions: str
    model: str | None
    tools: list[str] | None
    budget: dict[str, Any] | None
    provider: str | None


def _spawn_args(child: AgentSpec) -> dict[str, Any] | None:
    """The ``agent/spawn`` arguments ``child`` was built from (None: not an LLM agent's spawn)."""
    if child.kind != "llm" or child.instructions is None:
        return None
    return {"id": child.id, "instructions": child.instructions, "model": child.model,
            "tools": None if child.tools is None else sorted(child.tools),
            "budget": None if child.budget is None else child.budget.to_dict(), "provider": child.provider}


def _spawned_by(config: LLMAgentConfig, data: Any) -> AgentSpec:
    try:
        args = msgspec.convert(data, _SpawnArgs)
    except msgspec.ValidationError as exc:
        raise SnapshotError(f"its child entry does not decode ({exc})") from None
    return llm_child_spec(args.id, args.instructions, model=args.model, tools=args.tools, budget=args.budget,
                          provider=args.provider, config=config)


def _decode_state(data: Any) -> dict[str, Any]:
    state = dict(data)
    for key in ("messages", "queued", "pending"):
        if not isinstance(state.get(key), list):
            raise SnapshotError(f"its {key} is not a list")
    return state


def llm_child_spec(
    id: str,
    instructions: str,
    *,
    model: str | None = None,
    tools: Sequence[str] | None = None,
    budget: Mapping[str, Any] | Budget | None = None,
    provider: str | None = None,
    config: LLMAgentConfig = LLMAgentConfig(),
) -> AgentSpec:
    """The spec of an ``llm`` child spawned through ``agent/spawn``.

    What is left out (``None``) is decided by the depth policy when the child is granted.
    Such children are ``temporary``: a failure is reported to the parent, not retried.
    """
    task = Task(id=str(id), agent="llm", instructions=instructions, model=model, tools=None if tools is None else tuple(tools))
    if budget is not None and not isinstance(budget, Budget):
        budget = Budget.from_mapping(budget)
    return AgentSpec(
        id=str(id), step=llm_step(task, config), kind="llm", model=model, state_codec=llm_codec(task, config),
        tools=None if tools is None else frozenset(tools), budget=budget, restart="temporary",
        instructions=instructions, provider=provider, meta={"task": task},
    )


# ---------------------------------------------------------------------- the loop


def _step(ctx: StepContext, instructions: str, config: LLMAgentConfig) -> list[Action]:
    st = ctx.state
    if "messages" not in st:
        # The task is the first user turn; trimming never drops it.
        st.update(messages=[{"role": "user", "content": instructions}], queued=[], awaiting=None, pending=[], failures=0)
    st["queued"].extend(_user_turn(m) for m in ctx.messages)
    awaiting, st["awaiting"] = st["awaiting"], None
    if awaiting == "llm" and ctx.results:
        return _on_reply(ctx, ctx.results[0], config)
    if awaiting == "tools" and ctx.results:
        _feed_results(st, ctx.results, config)
        return _ask(ctx, config)
    if ctx.reason == "start" or st["queued"]:
        return _ask(ctx, config)
    return []


def _ask(ctx: StepContext, config: LLMAgentConfig) -> list[Action]:
    st = ctx.state
    st["messages"].extend(st["queued"])
    st["queued"] = []
    system = {"role": "system", "content": _system_prompt(ctx)}
    st["messages"] = trim_context(st["messages"], config.limit - len(system["content"]))
    st["awaiting"] = "llm"
    return [act.call_llm([system, *st["messages"]], tools=sorted(ctx.tools), options=config.options)]


def _on_reply(ctx: StepContext, res: Result, config: LLMAgentConfig) -> list[Action]:
    st = ctx.state
    if not res.ok or not isinstance(res.value, ChatReply):
        st["failures"] += 1
        if st["failures"] > config.llm_retries:
            return [act.done("failed", f"LLM call failed {st['failures']} times; last error: {res.value}")]
        return _ask(ctx, config)
    st["failures"] = 0
    reply: ChatReply = res.value
    st["messages"].append(reply.to_message())
    if not reply.tool_calls:
        if st["queued"]:
            return _ask(ctx, config)  # messages arrived while it was thinking: let it read them first
        if ctx.children:
            return []  # live children: their reports will wake this agent
        return [act.done("ok", reply.content)]
    pending: list[dict[str, Any]] = []
    runnable: list[Action] = []
    finish: Action | None = None
    for call in reply.tool_calls:
        action, error = _to_action(ctx, call, config)
        if isinstance(action, act.Done):
            finish = finish or action
            continue
        pending.append({"id": call.id, "name": call.name, "error": error, "action": action is not None})
        if action is not None:
            runnable.append(action)
    if finish is not None:
        # Done ends the agent: whatever else the model asked for runs first.
        return [*([act.parallel(runnable)] if len(runnable) > 1 else runnable), finish]
    st["pending"] = pending
    if not runnable:
        _feed_results(st, (), config)
        return _ask(ctx, config)
    st["awaiting"] = "tools"
    return [runnable[0]] if len(runnable) == 1 else [act.parallel(runnable)]


def _to_action(ctx: StepContext, call: ToolCall, config: LLMAgentConfig) -> tuple[Action | None, str | None]:
    """The action for one tool call, or ``(None, error text)`` to feed back instead."""
    if call.error:
        return None, f"error: could not decode the arguments of {call.name}: {call.error}. Send valid JSON."
    if call.name not in ctx.tools:
        granted = ", ".join(sorted(ctx.tools)) or "none"
        return None, f"error: unknown or not granted tool {call.name!r}; your tools: {granted}"
    schema = BRIDGE_SCHEMAS.get(call.name)
    if schema is None:
        return act.call_tool(call.name, call.arguments), None
    try:
        args = validate(schema, dict(call.arguments))
    except SchemaError as exc:
        return None, f"error: {call.name}: {exc}"
    if call.name == "agent/spawn":
        spec = llm_child_spec(
            args["id"], args["instructions"], model=args.get("model"), tools=args.get("tools"),
            budget=args.get("budget"), provider=ctx.spec.provider, config=config,
        )
        return act.spawn(spec), None
    if call.name == "agent/send":
        return act.send(args["to"], args.get("kind", "chat"), args["body"]), None
    return act.done(args.get("status", "ok"), args["result"]), None


def _feed_results(st: dict[str, Any], results: Sequence[Result], config: LLMAgentConfig) -> None:
    """Answer every pending tool call, in the order the model made them."""
    flat = list(results)
    if len(flat) == 1 and isinstance(flat[0].action, act.Parallel):
        flat = list(flat[0].value or ())
    answers = iter(flat)
    for call in st["pending"]:
        if call["action"]:
            res = next(answers, None)
            text = _render(res) if res is not None else "error: no result"
        else:
            text = call["error"]
        if len(text) > config.tool_result_chars:
            text = text[: config.tool_result_chars] + f"... [cut: {len(text)} characters in all]"
        st["messages"].append({"role": "tool", "tool_call_id": call["id"], "name": call["name"], "content": text})
    st["pending"] = []


def _render(res: Result) -> str:
    action = res.action
    if isinstance(action, act.Spawn):
        if res.ok:
            return f"spawned child agent {res.value!r}; its report will arrive as a message when it finishes"
        return f"error ({res.error}): {res.value}"
    if isinstance(action, act.Send):
        return f"message delivered to {action.to}" if res.ok else f"error ({res.error}): message to {action.to} not delivered"
    if not res.ok:
        return f"error ({res.error}): {res.value}"
    return _text(res.value)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def _user_turn(m: Message) -> dict[str, Any]:
    body = m.body if isinstance(m.body, Mapping) else {}
    if m.kind == "done":
        text = f"Child agent {m.sender} finished (status {body.get('status')}). Its report:\n{_text(body.get('result'))}"
    elif m.kind == "failed":
        text = f"Child agent {m.sender} failed: {_text(body.get('result'))}"
    elif m.kind == "stopped" and m.signal:
        text = f"Child agent {m.sender} was stopped ({body.get('status')})."
    elif m.kind == "restarted" and m.signal:
        text = f"Child agent {m.sender} was restarted (after {body.get('offender')} failed)."
    else:
        text = f"Message from {m.sender} (kind {m.kind}):\n{_text(m.body)}"
    return {"role": "user", "content": text}


def _system_prompt(ctx: StepContext) -> str:
    left = ctx.budget_left
    limits = ", ".join(
        f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"
        for name in ("max_steps", "max_tool_calls", "max_tokens", "max_seconds", "max_children")
        if (value := getattr(left, name)) is not None
    )
    lines = [
        f"You are agent {ctx.agent_id!r} (depth {ctx.depth}) in a tree of cooperating agents.",
        f"Your parent: {ctx.parent_id}." if ctx.parent_id else "You are a top-level agent; your final answer goes to the user.",
        f"Your live children: {', '.join(ctx.children)}." if ctx.children else "You have no live children.",
        f"Budget left: {limits}." if limits else "Your budget is unlimited.",
        f"Your tools: {', '.join(sorted(ctx.tools))}." if ctx.tools else "You have no tools.",
        "Act by calling tools. When the task is complete, reply with your final answer and no tool call.",
    ]
    if "agent/spawn" in ctx.tools:
        lines.append("To delegate, call agent/spawn; each child's report arrives later as a message.")
    return "\n".join(lines)


def _size(message: Mapping[str, Any]) -> int:
    n = len(_text(message.get("content") or ""))
    for call in message.get("tool_calls") or ():
        n += len(_text(call))
    return n


def trim_context(messages: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """``messages`` (task first) within ``limit`` characters, oldest turns dropped first.

    The first message (the task) is always kept, and so is the newest turn. A turn is a
    user message, or an assistant message with the tool answers that follow it, so no
    tool answer outlives the call it answers.
    """
    if not messages:
        return messages
    head, rest = messages[0], messages[1:]
    turns: list[list[dict[str, Any]]] = []
    for m in rest:
        if m.get("role") == "tool" and turns:
            turns[-1].append(m)
        else:
            turns.append([m])
    total = sum(map(_size, messages))
    while len(turns) > 1 and total > limit:
        total -= sum(map(_size, turns.pop(0)))
    return [head, *(m for turn in turns for m in turn)]
