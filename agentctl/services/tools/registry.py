"""The tool registry: named tools with JSON Schemas, validation, invocation and toolsets.

Called by the work plane (``agentctl.services.workers``) to validate and run tool calls,
by the runtime to turn an agent's toolset into ``ToolSpec``s for its model, and by plans
and the policy to expand toolset names (``"work"``, ``"fs/*"``) into tool names.
Built-in tools are added by :func:`default_registry`.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import re
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

import anyio

from ...errors import ToolError, UsageError
from ...redact import KEYS_ONLY, REDACTED, is_secret_key
from ..llm.base import ToolSpec
from .schema import SchemaError, derive_schema, json_type_name, validate

__all__ = [
    "NAMED_TOOLSETS", "AgentControl", "Recover", "Recovered", "Tool", "ToolContext", "ToolRegistry", "in_thread",
    "is_secret_key",
]

F = TypeVar("F", bound=Callable[..., Any])

_NAME_RE = re.compile(r"^[A-Za-z0-9_\-/:]+$")

#: Named toolsets; the patterns are matched against registered names.
NAMED_TOOLSETS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "all": ("*",),
        "work": ("fs/*", "shell/run", "agent/*"),
        "tiny": ("fs/read", "fs/list", "agent/send", "agent/done"),
        "none": (),
    }
)


class AgentControl(Protocol):
    """What a tool may ask of the runtime about agents, by agent id: the runtime hands each
    tool call one (:class:`agentctl.runtime.agent_control.RuntimeAgentControl`), never itself.

    Every method raises :class:`~agentctl.errors.ToolError` when it cannot do what it is
    asked (an agent that is not live, a refused spawn, an undelivered message).
    """

    def spawn_llm_child(self, parent_id: str, child_id: str, instructions: str, *, model: str | None,
                        tools: Sequence[str] | None, budget: Mapping[str, Any] | None) -> str:
        """Start an ``llm`` child of ``parent_id`` on ``instructions``, subject to policy; its id."""
        ...

    def parent_of(self, agent_id: str) -> str | None:
        """The parent of live agent ``agent_id`` (``None`` for a root)."""
        ...

    def send(self, sender: str, to: str, kind: str, body: Any) -> str:
        """Deliver a message from ``sender``; the message id."""
        ...

    def finish_soon(self, agent_id: str, status: str, result: Any) -> None:
        """End ``agent_id`` with ``status`` and ``result`` once the current tool call has returned."""
        ...

    def on_agent_end(self, fn: Callable[[str], Any]) -> None:
        """Call ``fn(agent_id)`` whenever an agent of this run ends (to free what a tool started for it)."""
        ...


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a tool may know about its caller.

    Attributes:
        agent_id: the calling agent.
        workspace: the directory file tools are confined to.
        run_id: the run.
        locks: the ``LockService`` (``None``: no locking).
        lock_wait: seconds a file tool waits for a contended lock before it fails.
        shell_enabled: whether ``shell/run`` may run commands.
        protected: paths that steer the run (the plan file, the run directory, the plan's code): out of the
            file tools' reach and read-only in containers (see ``tools.protect``).
        agents: what the tool may ask of the runtime about agents (the ``agent/*`` tools,
            clean-up when an agent ends); ``None`` outside a runtime.
        cancel: set when the call timed out: a sync tool running in a worker thread can
            check it (``ctx.cancel.wait(seconds)`` instead of ``time.sleep``) and return early.
        prepared: set by the work plane for a tool with a ``recover`` check: logs the
            call's recovery record and waits until it is on disk (see :meth:`write_ahead`).
        call_id: the call's id, where a cluster runs it (``None`` in this process): the
            container tools label what they start with it, so that what a cancelled call
            started can be found and removed.
    """

    agent_id: str
    workspace: Path
    run_id: str
    locks: Any | None = None
    lock_wait: float = 5.0
    shell_enabled: bool = False
    protected: tuple[Path, ...] = ()
    agents: AgentControl | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    prepared: Callable[[Any], Awaitable[None]] | None = None
    call_id: str | None = None

    async def write_ahead(self, record: Any) -> None:
        """Put ``record`` (JSON-able) on disk as the call's ``tool/prepared`` event; return once it is.

        A tool with a ``recover`` check calls this right before its effect, with what the
        check will need after a crash to tell whether the effect happened (a file's size
        before an append, say). Outside a run (no work plane) it does nothing.
        """
        if self.prepared is not None:
            await self.prepared(record)


@dataclass(frozen=True, slots=True)
class Recovered:
    """What a tool's ``recover`` check found out about a call a crash interrupted.

    Attributes:
        applied: ``True``: the call took effect and ``value`` is its result (it is not run
            again); ``False``: it did not, running it again is safe; ``None``: the check
            cannot tell (the agent is told the call was ``interrupted``).
        value: the call's result, when applied.
    """

    applied: bool | None
    value: Any = None


#: A tool's recovery check: ``recover(ctx, arguments, record) -> Recovered``, called by
#: crash resume, before any agent runs again, for a call that has no result. ``record`` is
#: what the call passed to :meth:`ToolContext.write_ahead` (``None`` if it never got that
#: far); ``arguments`` are as logged in ``tool/requested`` (secrets redacted).
Recover = Callable[[ToolContext, Mapping[str, Any], Any], Recovered]


@dataclass(frozen=True, slots=True)
class Tool:
    """A registered tool.

    Attributes:
        name: e.g. ``fs/write``.
        description: shown to the model.
        parameters: JSON Schema (an object schema) of the arguments.
        fn: the implementation; called with keyword arguments (and ``ctx`` first if wanted).
        is_async: ``fn`` is a coroutine function.
        idempotent: calling twice with the same arguments is harmless (safe to retry on resume).
        secret_args: argument names redacted in events.
        inline: a sync ``fn`` that is safe to run on the event loop (quick, never blocks,
            or touches the runtime, as the ``agent/*`` tools do); other sync tools run in a
            worker thread, so that a slow one cannot freeze every agent.
        timeout: seconds a call may run (``None``: the work plane's default).
        takes_ctx: ``fn``'s first parameter is ``ctx``; ``None`` = detect on register.
        recover: how crash resume tells whether an interrupted call took effect (see
            :data:`Recover`); a tool with one is written ahead by its own
            :meth:`ToolContext.write_ahead` rather than by ``tool/requested``.
        remote: the tool can run anywhere (it needs no object of this process, only its
            arguments and the context's plain fields): with a cluster executor
            (``settings.executor``) its calls run there.
    """

    name: str
    description: str
    parameters: Mapping[str, Any]
    fn: Callable[..., Any]
    is_async: bool
    idempotent: bool = False
    secret_args: frozenset[str] = frozenset()
    inline: bool = False
    timeout: float | None = None
    takes_ctx: bool | None = None
    recover: Recover | None = None
    remote: bool = False

    def spec(self) -> ToolSpec:
        """The tool as offered to a model."""
        return ToolSpec(self.name, self.description, self.parameters)


def _wants_ctx(fn: Callable[..., Any]) -> bool:
    params = list(inspect.signature(fn).parameters)
    return bool(params) and params[0] == "ctx"


def _first_paragraph(doc: str | None) -> str:
    text = inspect.cleandoc(doc or "")
    return text.split("\n\n", 1)[0].replace("\n", " ").strip()


class ToolRegistry:
    """Tools by name. Not thread-safe: register at startup, from the event loop."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    # -- registration

    def tool(
        self,
        name: str,
        *,
        description: str | None = None,
        schema: Mapping[str, Any] | None = None,
        idempotent: bool = False,
        inline: bool = False,
        timeout: float | None = None,
        secret_args: Iterable[str] = (),
        recover: Recover | None = None,
        remote: bool = False,
    ) -> Callable[[F], F]:
        """Decorator registering a function as tool ``name``; returns the function unchanged.

        The schema is derived from the type hints unless given; the description defaults
        to the docstring's first paragraph. ``recover`` makes a non-idempotent tool
        exactly-once across crashes (see :data:`Recover` and ``docs/durability.md``).
        ``remote`` lets a cluster executor run it (see :class:`Tool`).
        """

        def decorate(fn: F) -> F:
            self.register(
                Tool(
                    name=name,
                    description=description if description is not None else _first_paragraph(fn.__doc__),
                    parameters=dict(schema) if schema is not None else derive_schema(fn),
                    fn=fn,
                    is_async=inspect.iscoroutinefunction(fn),
                    idempotent=idempotent,
                    secret_args=frozenset(secret_args),
                    inline=inline,
                    timeout=timeout,
                    recover=recover,
                    remote=remote,
                )
            )
            return fn

        return decorate

    def register(self, tool: Tool) -> None:
        """Add ``tool``; ``ValueError`` for a bad or duplicate name."""
        if not _NAME_RE.match(tool.name):
            raise UsageError(f"bad tool name {tool.name!r}: use letters, digits, _, -, / and : only")
        if tool.name in self._tools:
            raise UsageError(f"tool {tool.name!r} is already registered")
        if tool.parameters.get("type", "object") != "object":
            raise UsageError(f"tool {tool.name!r}: parameters must be an object schema")
        if tool.remote and tool.recover is not None:
            # Its write-ahead record is logged by this process, mid-call: not from a cluster worker.
            raise UsageError(f"tool {tool.name!r}: remote=True and recover= cannot be combined")
        if tool.takes_ctx is None:
            tool = replace(tool, takes_ctx=_wants_ctx(tool.fn))
        self._tools[tool.name] = tool

    # -- lookup

    def get(self, name: str) -> Tool:
        """The tool called ``name``; ``ToolError`` with a suggestion when there is none."""
        try:
            return self._tools[name]
        except KeyError:
            close = difflib.get_close_matches(str(name), list(self._tools), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ToolError(f"unknown tool {name!r}{hint}") from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._tools)

    def specs(self, names: Iterable[str]) -> list[ToolSpec]:
        """``ToolSpec``s for ``names`` (for a ``ChatRequest``), in sorted order."""
        return [self.get(n).spec() for n in sorted(set(names))]

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    # -- calling

    def validate(self, name: str, arguments: Any) -> dict[str, Any]:
        """Checked arguments (defaults filled in) for a call of ``name``.

        Raises:
            ToolError: unknown tool, or e.g. ``fs/write: arguments.path: expected string, got integer``.
        """
        tool = self.get(name)
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, Mapping):
            raise ToolError(f"{name}: arguments: expected object, got {json_type_name(arguments)}")
        try:
            return validate(tool.parameters, arguments)
        except SchemaError as e:
            raise ToolError(f"{name}: {e}") from None

    async def run(
        self, tool: Tool, arguments: Mapping[str, Any], ctx: ToolContext, *, on_return: Callable[[], None] | None = None
    ) -> Any:
        """Call ``tool`` with already validated ``arguments``; the tool's own errors propagate.

        A tool that runs in a thread (:func:`in_thread`) is abandoned when the call is
        cancelled (a timeout returns control at once); ``on_return`` is then called from
        that thread when it finally returns.
        """
        args = (ctx,) if tool.takes_ctx else ()
        if tool.is_async:
            return await tool.fn(*args, **arguments)
        if tool.inline:
            return tool.fn(*args, **arguments)

        def work() -> Any:
            try:
                return tool.fn(*args, **arguments)
            finally:
                if on_return is not None:
                    on_return()

        return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)

    async def invoke(self, name: str, arguments: Any, ctx: ToolContext) -> Any:
        """Validate, then call tool ``name`` (async on the loop, sync in a thread unless inline)."""
        checked = self.validate(name, arguments)
        return await self.run(self.get(name), checked, ctx)

    # -- toolsets and redaction

    def toolset(self, spec: str | Iterable[str]) -> frozenset[str]:
        """Expand a toolset: set names (``all``, ``work``, ``tiny``, ``none``), globs and tool names.

        A string may list several items separated by commas or spaces. Set names and globs
        select among registered tools; an explicit name must be registered. ``mcp:<server>``
        selects every tool of that MCP server (``mcp:<server>/*``).

        Raises:
            ToolError: for an explicit name that is not registered, or an MCP server with no tools.
        """
        items = re.split(r"[,\s]+", spec.strip()) if isinstance(spec, str) else list(spec)
        out: set[str] = set()
        for item in filter(None, items):
            if item in NAMED_TOOLSETS:
                for pattern in NAMED_TOOLSETS[item]:
                    out.update(fnmatch.filter(self._tools, pattern))
            elif any(ch in item for ch in "*?["):
                out.update(fnmatch.filter(self._tools, item))
            elif item.startswith("mcp:") and "/" not in item:
                prefix = item + "/"
                found = [n for n in self._tools if n.startswith(prefix)]
                if not found:
                    raise ToolError(f"no tools from MCP server {item[4:]!r} (is it declared under 'mcp:' and up?)")
                out.update(found)
            else:
                self.get(item)
                out.add(item)
        return frozenset(out)

    def redact(self, name: str, arguments: Any) -> dict[str, Any]:
        """``arguments`` with the tool's declared ``secret_args`` and secret-looking keys
        replaced by ``"***"`` (for events; :mod:`agentctl.redact`). Unknown tools are fine."""
        if not isinstance(arguments, Mapping):
            return {"_": arguments} if arguments is not None else {}
        declared = self._tools[name].secret_args if name in self._tools else frozenset()
        return {k: REDACTED if k in declared or is_secret_key(str(k)) else KEYS_ONLY.value(v)
                for k, v in arguments.items()}


def in_thread(tool: Tool) -> bool:
    """Whether calls of ``tool`` run in a worker thread (a sync tool not declared inline)."""
    return not tool.is_async and not tool.inline
