"""One definition per event type: the typed values of ``events.jsonl``.

Each documented type of ``docs/events.md`` is a frozen :class:`msgspec.Struct` here, tagged
by its ``type`` field (``AgentDone`` is ``agent/done``); ``tests/test_events_contract.py``
keeps the classes and the document equal, field by field and type by type.

Writers either construct the value (``emit(AgentDone(agent_id=..., status="ok", ...))``, the
way for new events) or pass the fields as a dict (the hot paths); the log numbers, stamps
and encodes both the same way, and the contract test checks every event a run produces
against its definition. Readers (the views) turn a logged dict into its value with
:func:`decode`, which never raises: a field missing from an older log gets its zero value,
and a type this version does not know (a newer log, a plugin's own event) comes back as
:class:`UnknownEvent`. The fold and resume read dicts, which is faster on large logs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

import msgspec

from .encoding import to_jsonable

__all__ = [
    "EVENT_TYPES",
    "Event",
    "UnknownEvent",
    "decode",
    "decode_as",
    "fields_of",
    "loose",
    "misfit",
    "AgentDone",
    "AgentError",
    "AgentMessage",
    "AgentReplayed",
    "AgentRestarted",
    "AgentResumed",
    "AgentSpawned",
    "AgentStatus",
    "AgentStopped",
    "AgentSupervision",
    "ApprovalDenied",
    "ApprovalGranted",
    "ApprovalRequested",
    "BudgetCharged",
    "BusDenied",
    "ConflictOpened",
    "ConflictResolved",
    "LlmDelta",
    "LlmRequested",
    "LlmResult",
    "LockAcquired",
    "LockConflict",
    "LockReleased",
    "McpExited",
    "McpStarted",
    "PlanDiff",
    "PlanInvalid",
    "PlanLoaded",
    "PlanRefused",
    "PolicyRefused",
    "RunFinished",
    "RunResumed",
    "RunStarted",
    "ToolPrepared",
    "ToolRecovered",
    "ToolRequested",
    "ToolResult",
]


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """The fields every event has. ``seq``, ``t`` and ``run_id`` are the log's to fill in:
    leave them out when constructing an event to emit."""

    type: ClassVar[str]  # the subclass's ``type`` value (its msgspec tag), set below
    seq: int = 0
    t: int = 0
    run_id: str = ""
    agent_id: str | None = None


# The classes below follow docs/events.md section by section; see it for each field's meaning.


class RunStarted(Event, frozen=True, tag="run/started"):
    """``run/started``: the runtime came up."""

    pid: int
    version: str
    durability: str
    workspace: str | None
    plan: str | None
    control: str
    executor: str
    address: str | None = None


class RunFinished(Event, frozen=True, tag="run/finished"):
    """``run/finished``: the run ended."""

    reason: str
    status: str
    events: int


class AgentSpawned(Event, frozen=True, tag="agent/spawned"):
    """``agent/spawned``: an agent joined the tree."""

    agent_id: str  # the new agent: never null, unlike the common field
    parent_id: str | None
    depth: int
    model: str | None
    kind: str | None
    tools: list[str]
    budget: dict[str, int | float | None]
    restart: str
    approve: list[str]
    # How it supervises its children (absent from logs written before it was added).
    supervise: dict[str, str | int | float] = msgspec.field(default_factory=dict)


class AgentStatus(Event, frozen=True, tag="agent/status"):
    """``agent/status``: an agent settled into a new status."""

    status: str
    reason: str | None
    steps: int


class AgentMessage(Event, frozen=True, tag="agent/message"):
    """``agent/message``: a message routed by the bus, delivered or not."""

    msg_id: str
    from_: str = msgspec.field(name="from")
    to: str
    kind: str
    thread_id: str | None
    body: Any
    delivered: bool
    via: str | None
    signal: bool
    step: int = 0  # absent from logs written before it was added


class AgentDone(Event, frozen=True, tag="agent/done"):
    """``agent/done``: an agent finished with a result."""

    status: str
    result: Any
    reason: str | None
    steps: int
    unread: int
    unread_from: dict[str, Any]


class AgentError(Event, frozen=True, tag="agent/error"):
    """``agent/error``: a step or an action failed, or supervision gave up."""

    error: str
    error_type: str
    where: str
    unread: int
    unread_from: dict[str, Any]


class AgentStopped(Event, frozen=True, tag="agent/stopped"):
    """``agent/stopped``: an agent was stopped."""

    reason: str
    unread: int
    unread_from: dict[str, Any]


class AgentRestarted(Event, frozen=True, tag="agent/restarted"):
    """``agent/restarted``: a supervisor restarted an agent."""

    parent_id: str | None
    strategy: str
    restarts: int
    offender: str
    # What it had used, carried over (absent from logs written before they were added).
    steps: int = 0
    tool_calls: int = 0
    tokens: int = 0


class AgentSupervision(Event, frozen=True, tag="agent/supervision"):
    """``agent/supervision``: a live plan edit changed how an agent supervises its children."""

    strategy: str
    max_restarts: int
    restart_period: float


class BudgetCharged(Event, frozen=True, tag="budget/charged"):
    """``budget/charged``: an ended child's use charged to its parent's budget."""

    child_id: str
    steps: int
    tool_calls: int
    tokens: int
    step: int


class PolicyRefused(Event, frozen=True, tag="policy/refused"):
    """``policy/refused``: a spawn the policy or the budget ledger refused."""

    child_id: str
    rule: str
    error: str


class BusDenied(Event, frozen=True, tag="bus/denied"):
    """``bus/denied``: the bus refused to route a message."""

    from_: str = msgspec.field(name="from")
    to: str
    kind: str
    reason: str


class LockAcquired(Event, frozen=True, tag="lock/acquired"):
    """``lock/acquired``."""

    path: str
    mode: str
    count: int
    by: str = "step"


class LockReleased(Event, frozen=True, tag="lock/released"):
    """``lock/released``."""

    path: str
    reason: str
    by: str = "step"
    count: int = 0  # absent from logs written before it was added (which logged only frees)


class LockConflict(Event, frozen=True, tag="lock/conflict"):
    """``lock/conflict``: a lock asked for is held by another agent."""

    conflict_id: str
    path: str
    mode: str
    holder: str
    holder_path: str
    holder_mode: str


class ToolRequested(Event, frozen=True, tag="tool/requested"):
    """``tool/requested``: written ahead of a tool call."""

    call_id: str
    tool: str
    arguments: dict[str, Any]


class ToolResult(Event, frozen=True, tag="tool/result"):
    """``tool/result``."""

    call_id: str
    tool: str
    ok: bool
    error: str | None
    error_type: str | None
    result: Any
    node: str | None
    duration_ms: float


class ToolPrepared(Event, frozen=True, tag="tool/prepared"):
    """``tool/prepared``: what a tool's recover check will need, written before its effect."""

    call_id: str
    tool: str
    record: Any


class ToolRecovered(Event, frozen=True, tag="tool/recovered"):
    """``tool/recovered``: resume's check of a call that had no result."""

    call_id: str
    tool: str
    applied: bool | None
    result: Any
    error: str | None


class LlmRequested(Event, frozen=True, tag="llm/requested"):
    """``llm/requested``."""

    call_id: str
    provider: str
    model: str | None
    messages: int
    tools: list[str]


class LlmDelta(Event, frozen=True, tag="llm/delta"):
    """``llm/delta``: fragments of a streamed reply, coalesced (for the views only)."""

    call_id: str
    content: str
    tool_calls: str
    cut: int


class LlmResult(Event, frozen=True, tag="llm/result"):
    """``llm/result``."""

    call_id: str
    provider: str
    ok: bool
    error: str | None
    error_type: str | None
    reply: dict[str, Any] | None
    prompt_tokens: int
    completion_tokens: int
    duration_ms: float


class PlanLoaded(Event, frozen=True, tag="plan/loaded"):
    """``plan/loaded``: a plan version was applied."""

    file: str
    name: str
    version: int
    tasks: int
    copy: str | None
    changed: list[str]


class PlanDiff(Event, frozen=True, tag="plan/diff"):
    """``plan/diff``: what reconciling a plan version changed."""

    version: int
    added: list[str]
    removed: list[str]
    changed: list[str]


class PlanInvalid(Event, frozen=True, tag="plan/invalid"):
    """``plan/invalid``: a saved plan did not validate."""

    file: str
    error: dict[str, Any]


class PlanRefused(Event, frozen=True, tag="plan/refused"):
    """``plan/refused``: a valid edit that a running run cannot apply."""

    file: str
    fields: list[str]
    error: dict[str, Any]


class RunResumed(Event, frozen=True, tag="run/resumed"):
    """``run/resumed``: ``agentctl run --resume`` continued a dead run."""

    from_seq: int
    torn_line: int | None
    checkpoint: int | None
    agents: list[str]
    pid: int
    control: str
    executor: str
    address: str | None = None


class AgentResumed(Event, frozen=True, tag="agent/resumed"):
    """``agent/resumed``: a live agent of a dead run, started again."""

    parent_id: str | None
    replay: int
    messages: int
    snapshot: bool = False
    held: bool = False  # absent from logs written before live messages were held back


class AgentReplayed(Event, frozen=True, tag="agent/replayed"):
    """``agent/replayed``: a resumed agent has replayed its past; the messages that came
    meanwhile are read from its next step."""

    step: int
    messages: int


class ConflictOpened(Event, frozen=True, tag="conflict/opened"):
    """``conflict/opened``: a lock conflict opened as a thread."""

    conflict_id: str
    thread_id: str
    path: str
    holder: str
    arbiter: str | None
    policy: str


class ConflictResolved(Event, frozen=True, tag="conflict/resolved"):
    """``conflict/resolved``."""

    conflict_id: str
    thread_id: str
    granted_to: str
    outcome: str
    by: str


class McpStarted(Event, frozen=True, tag="mcp/started"):
    """``mcp/started``: an MCP server is up."""

    server: str
    tools: int
    pid: int | None
    url: str | None


class McpExited(Event, frozen=True, tag="mcp/exited"):
    """``mcp/exited``: an MCP server went away."""

    server: str
    reason: str
    restarting: bool


class ApprovalRequested(Event, frozen=True, tag="approval/requested"):
    """``approval/requested``: a tool call an approval gate holds until a person answers."""

    call_id: str
    tool: str
    arguments: dict[str, Any]
    gate: str
    timeout: float | None
    default: str


class ApprovalGranted(Event, frozen=True, tag="approval/granted"):
    """``approval/granted``: the held call may run."""

    call_id: str
    tool: str
    by: str
    note: str | None


class ApprovalDenied(Event, frozen=True, tag="approval/denied"):
    """``approval/denied``: the held call does not run; its agent is told why."""

    call_id: str
    tool: str
    by: str
    reason: str


class UnknownEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event this version has no definition for (a newer log's type, a plugin's own
    event) or whose fields do not fit it: the common fields, and the whole event as logged."""

    type: str
    seq: int = 0
    t: int = 0
    run_id: str = ""
    agent_id: str | None = None
    data: dict[str, Any]


def _subclasses(cls: type[Event]) -> list[type[Event]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


#: Every event type by its ``type`` value.
EVENT_TYPES: Mapping[str, type[Event]] = MappingProxyType(
    {cls.__struct_config__.tag: cls for cls in _subclasses(Event)}  # type: ignore[misc]
)
for _tag, _cls in EVENT_TYPES.items():
    _cls.type = _tag


def fields_of(cls: type[Event]) -> dict[str, msgspec.inspect.Type]:
    """The fields ``cls`` adds to the common ones, by their name in the log, with their types."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    common = set(Event.__struct_fields__)
    return {f.encode_name: f.type for f in info.fields if f.name not in common}


_ZEROS: dict[type, Any] = {
    msgspec.inspect.StrType: "", msgspec.inspect.IntType: 0, msgspec.inspect.FloatType: 0.0,
    msgspec.inspect.BoolType: False, msgspec.inspect.ListType: [], msgspec.inspect.DictType: {},
}
_fillers: dict[type[Event], dict[str, Any]] = {}


def _zero(t: msgspec.inspect.Type) -> Any:
    if isinstance(t, msgspec.inspect.UnionType):
        return None if t.includes_none else _zero(t.types[0])
    return _ZEROS.get(type(t))


def _filler(cls: type[Event]) -> dict[str, Any]:
    """Zero values for every field of ``cls``: what an older log's event lacks is filled from these."""
    filler = _fillers.get(cls)
    if filler is None:
        filler = _fillers[cls] = {name: _zero(t) for name, t in fields_of(cls).items()}
    return filler


def loose(event: Event) -> tuple[str, str | None, dict[str, Any]]:
    """A typed event as ``emit``'s loose form: its type, its agent and its own fields, as
    JSON's types (what the log writes: sets as lists, paths as strings)."""
    fields = msgspec.to_builtins(event, enc_hook=to_jsonable)
    for name in ("seq", "t", "run_id"):  # the log's to fill in
        del fields[name]
    return fields.pop("type"), fields.pop("agent_id"), fields


E = TypeVar("E", bound=Event)


def decode(event: Mapping[str, Any]) -> Event | UnknownEvent:
    """The typed value of one logged event (a dict as the reader or a subscriber gets it).

    Never raises: a field missing from an older log gets its zero value (``""``, ``0``,
    ``[]``, ``None`` where null is allowed); an unknown type, or fields of the wrong type (a
    hostile or damaged log), give an :class:`UnknownEvent` holding the event as it is.
    """
    kind = event.get("type")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    return _unknown(event) if cls is None else decode_as(event, cls)


def decode_as(event: Mapping[str, Any], cls: type[E]) -> E | UnknownEvent:
    """:func:`decode` for a caller that has looked the class up already (a view's table of
    the types it shows); an event of another type gives an :class:`UnknownEvent`."""
    try:
        return msgspec.convert(event, cls)
    except msgspec.ValidationError:
        try:
            return msgspec.convert({**_filler(cls), **event}, cls)
        except msgspec.ValidationError:
            return _unknown(event)


def _unknown(event: Mapping[str, Any]) -> UnknownEvent:
    seq, t, run_id, agent_id = (event.get(k) for k in ("seq", "t", "run_id", "agent_id"))
    return UnknownEvent(
        type=str(event.get("type")), seq=seq if type(seq) is int else 0, t=t if type(t) is int else 0,
        run_id=run_id if isinstance(run_id, str) else "", agent_id=agent_id if isinstance(agent_id, str) else None,
        data=dict(event),
    )


_COMMON: dict[str, tuple[type, ...]] = {"seq": (int,), "t": (int,), "run_id": (str,), "type": (str,),
                                        "agent_id": (str, type(None))}
_MISFIT = re.compile(r"Expected `(?P<expected>.+?)`, got `(?P<got>.+?)`(?: - at `\$(?P<at>.*)`)?$")


def misfit(event: Mapping[str, Any], *, missing: bool = False) -> str | None:
    """Why a logged event does not fit its definition (``key path: expected X, got Y``), or None.

    Checks the common fields of every event and every field of a type this version defines.
    A field an older log lacks counts as its zero value (as :func:`decode` reads it) unless
    ``missing`` asks for it to be named too: views that index the field need it.
    """
    for name, types in _COMMON.items():
        if name not in event:
            return f"{name}: missing" if missing or name != "agent_id" else None
        value = event[name]
        if type(value) not in types:
            return f"{name}: expected {' or '.join(t.__name__ for t in types)}, got {type(value).__name__} {value!r:.40}"
    cls = EVENT_TYPES.get(event["type"])
    if cls is None:
        return None
    if missing:
        absent = [name for name in fields_of(cls) if name not in event]
        if absent:
            return f"{absent[0]}: missing"
    try:
        msgspec.convert({**_filler(cls), **event}, cls)
    except msgspec.ValidationError as exc:
        found = _MISFIT.match(str(exc))
        if found is None:
            return str(exc)
        at = (found["at"] or "").lstrip(".")
        return f"{at or 'event'}: expected {found['expected']}, got {found['got']}"
    return None
