"""The one description of a plan file's fields, and the JSON Schema derived from it.

The validator (:mod:`agentctl.plan.validate`) walks plan data with the type
descriptors below to check types, required keys and unknown keys;
:func:`plan_json_schema` turns the same descriptors into a JSON Schema (draft 2020-12)
for editors (e.g. the YAML language server). Both read :data:`PLAN`, so the field
lists exist exactly once. Called by the validator, by the CLI (to print the schema) and by tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..policy import GATE_HINT, GATE_PATTERN

SCHEMA_URI = "https://json-schema.org/draft/2020-12/schema"
AGENT_KINDS: tuple[str, ...] = ("script", "python", "llm")
RESTARTS: tuple[str, ...] = ("permanent", "transient", "temporary")
STRATEGIES: tuple[str, ...] = ("one_for_one", "one_for_all", "rest_for_one")
DURABILITIES: tuple[str, ...] = ("none", "batch", "always")
LOCK_MODES: tuple[str, ...] = ("read", "write")
TASK_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
PYTHON_STEP_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$"


class Type:
    """A type descriptor: what a value must be, in words and as JSON Schema."""

    def describe(self) -> str:
        """What the type wants, for ``expected ...`` in error messages."""
        raise NotImplementedError

    def json(self) -> dict[str, Any]:
        """The type as a JSON Schema fragment."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Str(Type):
    """A string; ``pattern`` (a regex) when the form matters, ``hint`` says it in words."""

    pattern: str | None = None
    hint: str | None = None

    def describe(self) -> str:
        return self.hint or "string"

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string"}
        if self.pattern:
            out["pattern"] = self.pattern
        return out


@dataclass(frozen=True, slots=True)
class Int(Type):
    """An integer (never a boolean) at least ``minimum``."""

    minimum: int | None = None

    def describe(self) -> str:
        return "integer" if self.minimum is None else f"integer >= {self.minimum}"

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "integer"}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        return out


@dataclass(frozen=True, slots=True)
class Num(Type):
    """A number (integer or float, never a boolean) at least, or above, ``minimum``."""

    minimum: float | None = None
    exclusive: bool = False

    def describe(self) -> str:
        if self.minimum is None:
            return "number"
        return f"number {'>' if self.exclusive else '>='} {self.minimum:g}"

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "number"}
        if self.minimum is not None:
            out["exclusiveMinimum" if self.exclusive else "minimum"] = self.minimum
        return out


@dataclass(frozen=True, slots=True)
class Bool(Type):
    """``true`` or ``false``."""

    def describe(self) -> str:
        return "boolean"

    def json(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True, slots=True)
class Enum(Type):
    """One of a fixed set of strings."""

    values: tuple[str, ...]

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)

    def json(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.values)}


@dataclass(frozen=True, slots=True)
class AnyValue(Type):
    """Anything at all (e.g. a message body or a ``done`` result)."""

    def describe(self) -> str:
        return "any value"

    def json(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True, slots=True)
class AnyMap(Type):
    """A mapping with any keys and values (e.g. a tool's arguments)."""

    def describe(self) -> str:
        return "mapping"

    def json(self) -> dict[str, Any]:
        return {"type": "object"}


@dataclass(frozen=True, slots=True)
class Seq(Type):
    """A list whose items are all of type ``item``."""

    item: Type

    def describe(self) -> str:
        return f"list of {self.item.describe()}"

    def json(self) -> dict[str, Any]:
        return {"type": "array", "items": self.item.json()}


@dataclass(frozen=True, slots=True)
class Field:
    """One key of a mapping: its type, whether it must be there, and a line of help."""

    name: str
    type: Type
    required: bool = False
    doc: str = ""


#: Each ``Obj``'s fields by name, built on first use (descriptors are module constants).
_FIELDS: dict[int, tuple[Obj, dict[str, Field]]] = {}


@dataclass(frozen=True, slots=True)
class Obj(Type):
    """A mapping with known keys; any other key is an error."""

    fields: tuple[Field, ...]
    doc: str = ""

    def describe(self) -> str:
        return "mapping"

    @property
    def names(self) -> tuple[str, ...]:
        """The known keys, in table order."""
        return tuple(f.name for f in self.fields)

    def get(self, name: str) -> Field | None:
        """The field called ``name``, if known."""
        entry = _FIELDS.get(id(self))
        if entry is None:
            # The descriptor itself is held too, so that its id is not reused for another.
            entry = _FIELDS[id(self)] = (self, {f.name: f for f in self.fields})
        return entry[1].get(name)

    def json(self) -> dict[str, Any]:
        props = {}
        for f in self.fields:
            props[f.name] = {**f.type.json(), **({"description": f.doc} if f.doc else {})}
        out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
        required = [f.name for f in self.fields if f.required]
        if required:
            out["required"] = required
        if self.doc:
            out["description"] = self.doc
        return out


@dataclass(frozen=True, slots=True)
class IntKeyed(Type):
    """A mapping from integers >= 0 (written as numbers or digit strings) to ``value``."""

    value: Type

    def describe(self) -> str:
        return "mapping of depth (integer >= 0) to rule"

    def json(self) -> dict[str, Any]:
        return {"type": "object", "patternProperties": {"^[0-9]+$": self.value.json()}, "additionalProperties": False}


@dataclass(frozen=True, slots=True)
class Named(Type):
    """A mapping from names (strings matching ``pattern``) to ``value``, e.g. the ``mcp`` servers."""

    value: Type
    pattern: str
    hint: str = "name"

    def describe(self) -> str:
        return f"mapping of {self.hint} to {self.value.describe()}"

    def json(self) -> dict[str, Any]:
        return {"type": "object", "patternProperties": {self.pattern: self.value.json()}, "additionalProperties": False}


@dataclass(frozen=True, slots=True)
class Either(Type):
    """A short form (a scalar) or a long form (a mapping), chosen by the value's shape."""

    short: Type
    long: Obj

    def describe(self) -> str:
        return f"{self.short.describe()} or mapping with keys {', '.join(self.long.names)}"

    def json(self) -> dict[str, Any]:
        return {"oneOf": [self.short.json(), self.long.json()]}


@dataclass(frozen=True, slots=True)
class Steps(Type):
    """A script: a list of one-key mappings ``{op: argument}`` (ops in :data:`STEP_OPS`)."""

    def describe(self) -> str:
        return "list of steps (one-key mappings such as {write: {path, content}})"

    def json(self) -> dict[str, Any]:
        return {"$ref": "#/$defs/steps"}


BUDGET = Obj(
    (
        Field("max_steps", Int(1), doc="steps the agent may take"),
        Field("max_children", Int(0), doc="direct children it may spawn"),
        Field("max_seconds", Num(0, exclusive=True), doc="wall-clock deadline in seconds"),
        Field("max_tool_calls", Int(0), doc="tool calls it may make"),
        Field("max_tokens", Int(1), doc="LLM tokens it may use"),
        Field("tick_ms", Int(1), doc="wake-up period in milliseconds"),
    ),
    doc="Limits; a missing limit is unlimited.",
)
SUPERVISE = Obj(
    (
        Field("strategy", Enum(STRATEGIES), doc="which children a failed child takes with it when restarted"),
        Field("max_restarts", Int(0), doc="restarts within restart_period before the agent gives up and fails"),
        Field("restart_period", Num(0, exclusive=True), doc="the sliding window of max_restarts, in seconds"),
    ),
    doc="How the agent supervises the children it spawns; they inherit it, and may tighten it, never loosen it.",
)
TOOLS = Seq(Str())
GATES = Seq(Str(GATE_PATTERN, GATE_HINT))
APPROVE_DEFAULTS: tuple[str, ...] = ("deny", "approve")
TOPOLOGY = Obj(
    (
        Field("allow_peer", Bool(), doc="may message any agent"),
        Field("peer_via_parent", Bool(), doc="messages to other peers are relayed through the parent"),
        Field("intercept_relays", Bool(), doc="relays through this agent land in its inbox, not the addressee's"),
    )
)

SPAWN = Obj(
    (
        Field("id", Str(TASK_ID_PATTERN, "agent id (letters, digits, '_', '.', '-')"), required=True),
        Field("agent", Enum(("script",)), doc="children spawned by scripts are scripts"),
        Field("steps", Steps(), required=True),
        Field("tools", TOOLS),
        Field("budget", BUDGET),
        Field("model", Str()),
        Field("supervise", SUPERVISE),
    ),
    doc="A child agent running its own script.",
)

PROVIDERS = ("ollama", "openai", "scripted")
#: Tools that run commands are off unless the plan turns them on: tool name prefix -> setting.
OPT_IN: Mapping[str, str] = {"shell/": "shell", "docker/": "docker"}
CONFLICT_POLICIES = ("first_come", "priority", "arbiter")
CONFLICT_OUTCOMES = ("wait", "retry", "give_up")
#: What crash resume does with a call whose outcome it cannot know (docs/durability.md).
ON_INTERRUPTED = ("fail", "retry")

STEP_OPS: Mapping[str, Type] = {
    "write": Obj((Field("path", Str(), required=True), Field("content", Str(), required=True))),
    "append": Obj((Field("path", Str(), required=True), Field("content", Str(), required=True))),
    "sleep": Num(0),
    "send": Obj((Field("to", Str(), required=True), Field("kind", Str()), Field("body", AnyValue()))),
    "spawn": SPAWN,
    "lock": Either(
        Str(),
        Obj((Field("path", Str(), required=True), Field("mode", Enum(LOCK_MODES)), Field("timeout", Num(0)))),
    ),
    "unlock": Str(),
    "wait": Either(Str(), Obj((Field("kind", Str(), required=True), Field("timeout", Num(0))))),
    "call": Obj((Field("tool", Str(), required=True), Field("args", AnyMap()))),
    "fail": Str(),
    "done": AnyValue(),
    "resolve": Obj((Field("grant", Str(), required=True, doc="requester, holder or an agent id"),
                    Field("outcome", Enum(CONFLICT_OUTCOMES)))),
}

TASK = Obj(
    (
        Field("id", Str(TASK_ID_PATTERN, "task id (letters, digits, '_', '.', '-')"), required=True),
        Field("agent", Enum(AGENT_KINDS), required=True, doc="script, python or llm"),
        Field("instructions", Str(), doc="what an llm agent is asked to do"),
        Field("model", Str()),
        Field("tools", TOOLS),
        Field("budget", BUDGET),
        Field("depends_on", Seq(Str()), doc="tasks that must finish first"),
        Field("steps", Steps(), doc="the script of a script agent"),
        Field("step", Str(PYTHON_STEP_PATTERN, "'module:function'"), doc="a python agent's step function"),
        Field("restart", Enum(RESTARTS)),
        Field("supervise", SUPERVISE, doc="how its agent supervises the children it spawns (default: 3 restarts in 5 s, one_for_one)"),
        Field("topology", TOPOLOGY),
        Field("priority", Int(), doc="who wins a lock conflict under the priority policy (higher wins)"),
        Field("tool_timeout", Num(0, exclusive=True), doc="seconds each of its tool calls may run"),
        Field("approve", GATES, doc="tool calls that wait for a person's approval, besides policy.approve"),
        Field("on_interrupted", Enum(ON_INTERRUPTED),
              doc="a call a crash left unknown: fail the task (default) or retry the call (it may run twice)"),
    ),
    doc="One top-level agent.",
)

DEFAULTS = Obj(
    (
        Field("provider", Enum(PROVIDERS), doc="the LLM provider: ollama, openai (any OpenAI-compatible server) or scripted"),
        Field("model", Str()),
        Field("base_url", Str()),
        Field("budget", BUDGET),
        Field("tools", TOOLS),
        Field("restart", Enum(RESTARTS)),
        Field("supervise", SUPERVISE, doc="each task's supervise unless it says otherwise"),
        Field("on_interrupted", Enum(ON_INTERRUPTED), doc="each task's on_interrupted unless it says otherwise"),
        Field("context_chars", Int(1000), doc="an llm agent's conversation is kept under this many characters"),
        Field("llm_options", AnyMap(), doc="provider options sent with every LLM call (temperature, seed, ...)"),
        Field("stream", Bool(), doc="stream replies, so views show them as they arrive (default true)"),
    ),
    doc="What every task gets unless it says otherwise.",
)

EXECUTOR_KINDS: tuple[str, ...] = ("local", "ray")
EXECUTOR_ADDRESS = r"^(auto|local|ray://\S+|[^\s:/]+:[0-9]+)$"
TOOL_RESOURCES = Obj(
    (
        Field("num_cpus", Num(0), doc="CPUs one call holds on its node (default 1)"),
        Field("resources", Named(Num(0), r"^[A-Za-z0-9_.:-]+$", "resource name"),
              doc="custom resources a node must have, e.g. {docker: 1}"),
        Field("max_retries", Int(0), doc="reruns when its worker is lost (idempotent tools only; default 3, else 0)"),
    ),
    doc="What one call of a tool asks of the cluster.",
)
EXECUTOR = Obj(
    (
        Field("kind", Enum(EXECUTOR_KINDS), required=True, doc="local (this process) or ray"),
        Field("address", Str(EXECUTOR_ADDRESS, "auto, local, HOST:PORT or ray://HOST:PORT"),
              doc="the Ray cluster (default auto)"),
        Field("shared_workspace", Bool(), doc="the workspace is at the same path on every node"),
        Field("tools", Named(TOOL_RESOURCES, r"^[A-Za-z0-9_\-/:*?]+$", "tool name or glob"),
              doc="resource requests by tool (shell/run, plugin tools declared remote)"),
    ),
    doc="Where tools that can run anywhere run.",
)

SETTINGS = Obj(
    (
        Field("shell", Bool(), doc="enable the shell tool"),
        Field("docker", Bool(), doc="enable the container tools (docker/*)"),
        Field("llm_workers", Int(1)),
        Field("tool_workers", Int(1)),
        Field("durability", Enum(DURABILITIES)),
        Field("inbox_size", Int(1)),
        Field("strategy", Enum(STRATEGIES), doc="how the plan's root supervises the tasks"),
        Field("max_restarts", Int(0), doc="task restarts within restart_period before the run gives up"),
        Field("restart_period", Num(0, exclusive=True)),
        Field("plugins", Seq(Str()), doc="Python modules whose register(registry) adds tools"),
        Field("secrets", Seq(Str()), doc="Environment variables whose values are hidden in every event and line"),
        Field("checkpoint_events", Int(1), doc="write a checkpoint every this many events"),
        Field("checkpoint_seconds", Num(0, exclusive=True), doc="... or this many seconds"),
        Field("tool_timeouts", Named(Num(0, exclusive=True), r"^[A-Za-z0-9_\-/:]+$", "tool name"),
              doc="seconds a call of each named tool may run (a task's tool_timeout wins)"),
        Field("lock_wait", Num(0), doc="seconds a file tool waits for a path another agent has locked (default 5)"),
        Field("executor", EXECUTOR, doc="run shell/run, docker/* and remote plugin tools on a Ray cluster"),
    ),
    doc="How the run is set up.",
)

POLICY_RULE = Obj((Field("models", Seq(Str())), Field("tools", TOOLS), Field("budget", BUDGET),
                   Field("supervise", SUPERVISE, doc="at most max_restarts, at least restart_period, and the "
                                                     "strategy of agents at this depth unless their spawn names one")))
POLICY = Obj(
    (
        Field("model_rank", Seq(Str()), doc="models, largest first"),
        Field("depth", IntKeyed(POLICY_RULE), doc="rules by depth; a rule covers deeper levels too"),
        Field("conflicts", Enum(CONFLICT_POLICIES), doc="how lock conflicts are resolved"),
        Field("conflict_timeout", Num(0, exclusive=True), doc="seconds an arbiter has to answer"),
        Field("approve", GATES, doc="tool calls of every agent that wait for a person's approval"),
        Field("approve_timeout", Num(0, exclusive=True),
              doc="seconds a held call waits for an answer before approve_default decides"),
        Field("approve_default", Enum(APPROVE_DEFAULTS), doc="the answer at approve_timeout (default deny)"),
    ),
    doc="What deeper agents may have.",
)

PROVIDER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
PROVIDER = Obj(
    (
        Field("kind", Enum(PROVIDERS), required=True, doc="ollama, openai (any OpenAI-compatible server) or scripted"),
        Field("base_url", Str(), doc="one URL or a comma-separated list (default: the kind's environment, then localhost)"),
        Field("api_key_env", Str(ENV_NAME_PATTERN, "environment variable name"),
              doc="the environment variable holding its API key (openai); the key never reaches a log"),
        Field("stream", Bool(), doc="stream replies, so views show them as they arrive (default true)"),
        Field("http2", Bool(), doc="speak HTTP/2 where a TLS server offers it (default false: HTTP/1.1, "
                                   "which costs about half the CPU per call)"),
    ),
    doc="One LLM provider; a model names it: model: <provider>/<model>.",
)

MCP_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
MCP_SERVER = Obj(
    (
        Field("command", Seq(Str()), doc="a stdio server: the program and its arguments ('python' = agentctl's own)"),
        Field("url", Str(r"^https?://.+", "http:// or https:// URL"), doc="a streamable HTTP server's endpoint"),
        Field("env", Named(Str(), r"^[A-Za-z_][A-Za-z0-9_]*$", "environment variable"),
              doc="extra environment for a stdio server"),
    ),
    doc="One MCP server: give either command or url.",
)

PLAN = Obj(
    (
        Field("name", Str(), required=True),
        Field("tasks", Seq(TASK), required=True),
        Field("defaults", DEFAULTS),
        Field("policy", POLICY),
        Field("settings", SETTINGS),
        Field("providers", Named(PROVIDER, PROVIDER_NAME_PATTERN, "provider name"),
              doc="LLM providers by name; every model then names one: local/qwen3:8b"),
        Field("mcp", Named(MCP_SERVER, MCP_NAME_PATTERN, "server name"),
              doc="MCP servers whose tools tasks may use as mcp:<server>/<tool>"),
    ),
    doc="An agentctl plan.",
)


def _step_schema() -> dict[str, Any]:
    variants = [
        {"type": "object", "properties": {op: t.json()}, "required": [op], "additionalProperties": False}
        for op, t in STEP_OPS.items()
    ]
    return {"type": "array", "items": {"oneOf": variants}}


def plan_json_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of a plan file, for editors.

    Returns:
        A plain, JSON-serialisable dict.
    """
    schema = PLAN.json()
    schema["$schema"] = SCHEMA_URI
    schema["$id"] = "https://agentctl.dev/schemas/plan.json"
    schema["title"] = "agentctl plan"
    schema["$defs"] = {"steps": _step_schema()}
    return schema
