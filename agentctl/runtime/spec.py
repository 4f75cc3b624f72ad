"""What an agent is made from (:class:`AgentSpec`) and what its step sees (:class:`StepContext`).

Invoked from the reconciler and from step functions (through ``actions.spawn``); read by
the runtime. A spec is a frozen value: restarting an agent means building a fresh agent
from the same spec.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Union

import msgspec

from ..actions import Action, Result
from ..policy import Budget, Supervision
from ..services.bus import Message, Topology

Restart = Literal["permanent", "transient", "temporary"]
Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
RESTARTS: tuple[str, ...] = ("permanent", "transient", "temporary")
STRATEGIES: tuple[str, ...] = ("one_for_one", "one_for_all", "rest_for_one")

StepOutput = Union[Sequence[Action], None]
StepFn = Callable[["StepContext"], Union[StepOutput, Awaitable[StepOutput]]]


@dataclass(frozen=True, slots=True)
class StateCodec:
    """How an agent's ``ctx.state`` is kept in a checkpoint, so that a resume restores it
    instead of replaying every step since the agent started (:mod:`agentctl.runtime.snapshots`).

    Attributes:
        tag: names the step function and its version; a snapshot with another tag is not
            restored (the agent replays its whole journal instead).
        encode: the state as JSON-able data (it must not share mutable parts with the state).
        decode: the inverse; may raise on data it does not recognise.
    """

    tag: str
    encode: Callable[[dict[str, Any]], Any]
    decode: Callable[[Any], dict[str, Any]]
    #: How the agent's live children are kept in its snapshot (``None``: an agent with a
    #: live child is not snapshotted; a resume replays its steps, spawns included).
    children: ChildCodec | None = None


@dataclass(frozen=True, slots=True)
class ChildCodec:
    """How a step function's spawns are kept in its agent's snapshot, so that a resume
    starts the live children again without replaying the steps that spawned them
    (:mod:`agentctl.runtime.lineage`).

    Attributes:
        encode: a child's spec as JSON-able data (the spawn as the step made it: a script's
            step number, an LLM's ``agent/spawn`` arguments), or ``None`` when this step
            function did not make it.
        decode: the inverse, the very spec the step made; may raise on data it does not recognise.
    """

    encode: Callable[[AgentSpec], Any]
    decode: Callable[[Any], AgentSpec]


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """How to start an agent, and how it supervises its own children.

    Attributes:
        id: unique agent id in the run.
        step: the step function, sync or async: ``step(ctx) -> list[Action]``.
        kind: a label for views (``script``, ``python``, ``llm``).
        model, tools, budget: what the agent asks for; ``None`` inherits (see
            ``agentctl.policy.grant_child``). ``tools`` may name toolsets (``work``)
            and globs (``fs/*``), resolved against the runtime's tool registry.
        topology: who the agent may message besides its parent and children.
        restart: ``permanent`` (always restarted), ``transient`` (restarted only after a
            failure) or ``temporary`` (never restarted).
        strategy, max_restarts, restart_period: how this agent supervises its children:
            past ``max_restarts`` restarts within ``restart_period`` seconds it gives up,
            fails, and its own parent decides. ``None`` inherits its parent's (see
            ``agentctl.policy.grant_supervision``: a child may tighten them, never loosen).
        instructions: free text for LLM agents.
        provider: the LLM provider name for ``call_llm`` (``None``: the run's default).
        priority: who wins a lock conflict under the ``priority`` policy (higher wins).
        tool_timeout: seconds each of its tool calls may run (``None``: the tool's or
            the plan's timeout for it, else the work plane's default).
        approve: approval gates it adds to those it inherits (``agentctl.policy.gate_for``).
        on_interrupted: what crash resume does with a call of this agent whose outcome it
            cannot know: ``fail`` (the agent gets an ``interrupted`` result) or ``retry``
            (the call runs again, so it may take effect twice).
        meta: anything else the step function needs (e.g. a script's steps).
        state_codec: how its state is snapshotted at checkpoints (``None``: never; a
            resume replays its steps from its start).
    """

    id: str
    step: StepFn
    kind: str | None = None
    model: str | None = None
    tools: frozenset[str] | None = None
    budget: Budget | None = None
    topology: Topology = Topology()
    restart: Restart = "transient"
    strategy: Strategy | None = None
    max_restarts: int | None = None
    restart_period: float | None = None
    instructions: str | None = None
    provider: str | None = None
    priority: int = 0
    tool_timeout: float | None = None
    on_interrupted: str = "fail"
    approve: frozenset[str] = frozenset()
    meta: Mapping[str, Any] = field(default_factory=dict)
    state_codec: StateCodec | None = None

    @property
    def supervise(self) -> Supervision | None:
        """The supervision it asks for (unset fields: inherited; ``None``: nothing set)."""
        if self.strategy is None and self.max_restarts is None and self.restart_period is None:
            return None
        return Supervision(self.strategy, self.max_restarts, self.restart_period)


class StepContext(msgspec.Struct, frozen=True):
    """Everything a step function gets.

    Attributes:
        agent_id, parent_id, depth: the agent's place in the tree.
        spec: the agent's spec.
        reason: why the agent woke: ``start``, ``message``, ``results`` or ``tick``.
        messages: messages that arrived since the last step, oldest first.
        results: the results of the previous step's actions, in order.
        state: the agent's own scratch dict; it survives between steps (not restarts).
        model, tools, budget: what the agent was granted.
        children: ids of the agent's live children, in start order.
        step_no: 1 for the first step.
        budget_left: what remains of each limit (``None``: unlimited), computed when read.
        now: wall-clock seconds (``time.time()``) as this step sees them. A step replayed
            after a crash sees the time it first ran at (the logged time of the outcome it
            follows), so a deadline a step keeps in ``state`` holds across a resume; the
            runtime counts sleeps, lock waits and arbiter answers the same way.
    """

    agent_id: str
    parent_id: str | None
    depth: int
    spec: AgentSpec
    reason: str
    messages: tuple[Message, ...]
    results: tuple[Result, ...]
    state: dict[str, Any]
    model: str | None
    tools: frozenset[str]
    budget: Budget
    children: tuple[str, ...]
    step_no: int
    left: Callable[[], Budget] = Budget
    #: The replayed time of this step (None: live); read it through :attr:`now`.
    at: float | None = None

    @property
    def now(self) -> float:
        """Wall-clock seconds for this step: the recorded time of a replayed one, else now."""
        return time.time() if self.at is None else self.at

    @property
    def budget_left(self) -> Budget:
        """What remains of each limit now (``None``: unlimited)."""
        return self.left()

