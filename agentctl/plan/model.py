"""A validated plan as frozen values: :class:`Plan`, :class:`Task`, :class:`Step` and friends.

Built only by :func:`agentctl.plan.validate.validate_plan` (through ``load_plan``); read
by the reconciler, which diffs two plans task by task with :meth:`Task.spec_key`, and
by the runtime, which turns tasks into agent specs. Everything is immutable and
hashable: lists are tuples and mappings are :class:`FrozenDict`. Line numbers and the
source file are kept for messages but excluded from equality, so the YAML and the EDN
spelling of one plan compare equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from operator import attrgetter
from typing import Any

from ..executor import Executor, ToolResources
from ..frozen import FrozenDict, freeze, thaw
from ..policy import Budget, Policy, PolicyRule, Supervision

__all__ = [
    "Defaults", "Executor", "FrozenDict", "McpServer", "Plan", "PlanPolicy", "ProviderConfig", "Settings", "Step", "Task",
    "ToolResources", "freeze", "thaw",
]


@dataclass(frozen=True, slots=True)
class Step:
    """One script step, normalised so the runtime sees one shape per op.

    ``arg`` by op: ``write``/``append``: ``{path, content}``; ``sleep``: seconds (float);
    ``send``: ``{to, kind, body}`` (kind defaults to ``"chat"``); ``spawn``: a
    :class:`Task` (agent ``script``); ``lock``: ``{path, mode, timeout}`` (defaults
    ``"write"``, ``0.0``); ``unlock``: the path; ``wait``: ``{kind, timeout}`` (timeout
    ``None``: forever); ``call``: ``{tool, args}``; ``fail``: the message; ``done``:
    the result. Mappings are :class:`FrozenDict`.
    """

    op: str
    arg: Any
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Task:
    """One agent of the plan (a top-level task, or a child a script spawns).

    Attributes:
        id: the agent id.
        agent: ``script``, ``python`` or ``llm``.
        instructions: what an ``llm`` agent is asked to do.
        model, tools, budget: what it asks for (``None``: inherit / plan defaults).
        depends_on: tasks that must finish before it starts.
        steps: a ``script`` agent's steps.
        step: a ``python`` agent's step function, ``"module:function"``.
        restart: ``permanent``, ``transient`` or ``temporary`` (``None``: plan default).
        supervise: how its agent supervises the children it spawns (``None``: plan default,
            else inherited); a live edit of it applies to the running agent without a restart.
        topology: ``{allow_peer, peer_via_parent, intercept_relays}`` when the plan sets it.
        tool_timeout: seconds each of its tool calls may run (``None``: per tool).
        approve: approval gates of its own, besides the plan's ``policy.approve``.
        on_interrupted: ``fail`` or ``retry``, what resume does with a call a crash left
            unknown (``None``: plan default).
        line: the 1-based line the task starts on (YAML only); not part of equality.
    """

    id: str
    agent: str
    instructions: str | None = None
    model: str | None = None
    tools: tuple[str, ...] | None = None
    budget: Budget | None = None
    depends_on: tuple[str, ...] = ()
    steps: tuple[Step, ...] = ()
    step: str | None = None
    restart: str | None = None
    supervise: Supervision | None = None
    topology: Mapping[str, Any] | None = None
    priority: int = 0
    tool_timeout: float | None = None
    approve: tuple[str, ...] = ()
    on_interrupted: str | None = None
    line: int | None = field(default=None, compare=False)

    def spec_key(self) -> object:
        """A hashable value equal for two tasks iff their specs are equal (``line`` ignored)."""
        return _spec_key(self)


# The compared fields in one C call: every reconcile keys each of the plan's tasks. A task's
# own ``supervise`` is left out: an edit of it is applied to the running agent, not by a restart.
_spec_key = attrgetter(*(f.name for f in fields(Task) if f.compare and f.name != "supervise"))


@dataclass(frozen=True, slots=True)
class Defaults:
    """What every task gets unless it says otherwise."""

    provider: str | None = None
    model: str | None = None
    base_url: str | None = None
    budget: Budget = Budget()
    tools: tuple[str, ...] | None = None
    restart: str = "transient"
    supervise: Supervision | None = None
    on_interrupted: str = "fail"
    context_chars: int | None = None
    llm_options: Mapping[str, Any] | None = None
    stream: bool = True


@dataclass(frozen=True, slots=True)
class Settings:
    """How the run is set up (worker pools, log durability, root supervision, plugins).

    ``plugins`` are Python modules, each with a ``register(registry)`` function that
    adds tools to the run's tool registry. ``tool_timeouts`` are seconds by tool name;
    ``lock_wait`` is how long a file tool waits for a path another agent has locked.
    ``secrets`` names environment variables whose values are hidden in every event and
    printed line (see :mod:`agentctl.redact`).
    """

    shell: bool = False
    docker: bool = False
    llm_workers: int = 4
    tool_workers: int = 8
    durability: str = "batch"
    inbox_size: int = 256
    strategy: str = "one_for_one"
    max_restarts: int = 3
    restart_period: float = 5.0
    plugins: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    checkpoint_events: int = 10_000
    checkpoint_seconds: float = 30.0
    tool_timeouts: Mapping[str, float] = field(default_factory=FrozenDict)
    lock_wait: float = 5.0
    executor: Executor = Executor()


@dataclass(frozen=True, slots=True)
class PlanPolicy:
    """The plan's depth policy, kept hashable; :meth:`to_policy` gives the runtime's value.

    Attributes:
        model_rank: models, largest first.
        depth: ``(depth, rule)`` pairs, sorted by depth.
        conflicts: how lock conflicts are resolved: ``first_come``, ``priority`` or
            ``arbiter`` (see ``agentctl.runtime.conflicts``).
        conflict_timeout: seconds an arbiter has to answer before ``first_come`` decides.
        approve: approval gates of every agent (see ``agentctl.policy.gate_for``).
        approve_timeout: seconds a held call waits (``None``: until answered).
        approve_default: ``deny`` or ``approve``, the answer at ``approve_timeout``.
    """

    model_rank: tuple[str, ...] = ()
    depth: tuple[tuple[int, PolicyRule], ...] = ()
    conflicts: str = "first_come"
    conflict_timeout: float = 10.0
    approve: tuple[str, ...] = ()
    approve_timeout: float | None = None
    approve_default: str = "deny"

    def to_policy(self) -> Policy:
        """The :class:`agentctl.policy.Policy` this describes."""
        return Policy(rules=dict(self.depth), model_rank=self.model_rank, approve=frozenset(self.approve),
                      approve_timeout=self.approve_timeout, approve_default=self.approve_default)


@dataclass(frozen=True, slots=True)
class McpServer:
    """An MCP server whose tools the run offers as ``mcp:<name>/<tool>``.

    Attributes:
        name: the server's name in the plan.
        command: a stdio server: the program and its arguments (started by the run).
        url: a streamable HTTP server's endpoint (``command`` is then empty).
        env: extra environment variables for a stdio server.
    """

    name: str
    command: tuple[str, ...] = ()
    url: str | None = None
    env: Mapping[str, str] = FrozenDict()


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """An LLM provider the plan names under ``providers:``; a model ``<name>/<model>`` uses it.

    Attributes:
        name: its name in the plan (``local``, ``cloud``).
        kind: ``ollama``, ``openai`` or ``scripted``.
        base_url: where it listens (``None``: the kind's environment variable, else its default).
        api_key_env: the environment variable holding its API key.
        stream: whether replies are streamed.
        http2: whether it speaks HTTP/2 where a TLS server offers it (through httpx; else
            HTTP/1.1 through aiohttp, which costs about half the CPU per call).
    """

    name: str
    kind: str
    base_url: str | None = None
    api_key_env: str | None = None
    stream: bool = True
    http2: bool = False


@dataclass(frozen=True, slots=True)
class Plan:
    """A whole validated plan.

    Attributes:
        name: the plan's name.
        tasks: the top-level tasks, in file order.
        defaults, policy, settings: see the classes.
        mcp: the MCP servers, in file order.
        providers: the named LLM providers, in file order (empty: ``defaults.provider``
            serves every model).
        source: the file it came from; not part of equality.
    """

    name: str
    tasks: tuple[Task, ...]
    defaults: Defaults = Defaults()
    policy: PlanPolicy | None = None
    settings: Settings = Settings()
    mcp: tuple[McpServer, ...] = ()
    providers: tuple[ProviderConfig, ...] = ()
    source: str | None = field(default=None, compare=False)

    def runtime_policy(self) -> Policy:
        """The depth policy the runtime enforces: the plan's, knowing the named providers."""
        base = self.policy.to_policy() if self.policy else Policy()
        return replace(base, providers=frozenset(p.name for p in self.providers))

    def task(self, task_id: str) -> Task | None:
        """The top-level task with this id, if any."""
        return next((t for t in self.tasks if t.id == task_id), None)
