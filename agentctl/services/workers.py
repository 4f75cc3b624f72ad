"""The work plane: bounded pools that run tool calls and LLM calls, logging each as events.

Called by the runtime's action interpreter for ``call_tool`` and ``call_llm`` actions.
:class:`WorkPlane` is the interface (so the pools can later live elsewhere, e.g. on
Ray); :class:`LocalWorkPlane` runs them in this process with ``anyio`` capacity limiters.

Every call is logged before it runs (``tool/requested`` / ``llm/requested``). A tool call
is also written ahead: the optional ``before_run`` hook is awaited with its event (the
runtime uses it to wait until the event is on disk) before the call may take a slot, so
that a resumed run knows a tool that may not run twice was started. LLM calls skip that
wait: resume asks the model again for a call with no recorded reply, so the fsync would
only add latency (about 2.5 ms per call at 16 agents). Failures of any kind (unknown
tool, bad arguments, the tool raising, a timeout) come back as a :class:`CallOutcome`
with ``ok=False`` and a ``tool/result`` / ``llm/result`` event; they are never raised.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import anyio

from ..errors import ToolError, UsageError, WorkerError
from .llm.base import ChatReply, ChatRequest, Provider
from .tools.registry import ToolContext, ToolRegistry

__all__ = ["CallOutcome", "LocalWorkPlane", "PoolStatistics", "WorkPlane", "WorkPlaneStatistics"]

Emit = Callable[..., dict[str, Any]]
BeforeRun = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """What a tool or LLM call came to.

    Attributes:
        call_id: the call's id (as in its events).
        ok: whether it succeeded.
        value: the tool's return value, or the ``ChatReply``.
        error: the error text when not ok.
        error_type: ``timeout``, ``invalid_arguments``, ``unknown_tool``, ``tool_error``,
            ``unknown_provider``, ``llm_error`` or ``cancelled``.
        duration_ms: time the call ran (from getting a slot to its result).
        tokens: prompt + completion tokens (LLM calls).
    """

    call_id: str
    ok: bool
    value: Any = None
    error: str | None = None
    error_type: str | None = None
    duration_ms: float = 0.0
    tokens: int = 0


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    """One pool: its size, calls running and queued for a slot, calls finished ok / not ok."""

    size: int
    running: int
    queued: int
    completed: int
    failed: int


@dataclass(frozen=True, slots=True)
class WorkPlaneStatistics:
    """Both pools."""

    tool: PoolStatistics
    llm: PoolStatistics


@runtime_checkable
class WorkPlane(Protocol):
    """Runs tool and LLM calls for agents."""

    async def call_tool(
        self, agent_id: str, name: str, arguments: Mapping[str, Any], *, call_id: str | None = None, ctx: ToolContext
    ) -> CallOutcome:
        """Run tool ``name``; never raises for a failed call."""
        ...

    async def call_llm(
        self, agent_id: str, request: ChatRequest, *, call_id: str | None = None, provider: str | None = None
    ) -> CallOutcome:
        """Ask ``provider`` (default: the plane's); never raises for a failed call."""
        ...

    def statistics(self) -> WorkPlaneStatistics:
        """Pool statistics."""
        ...


class _Pool:
    """A capacity limiter plus the counters for its statistics."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise UsageError("a pool needs at least one worker")
        self.limiter = anyio.CapacityLimiter(size)
        self.size = size
        self.running = self.queued = self.completed = self.failed = 0

    def count(self, ok: bool) -> None:
        if ok:
            self.completed += 1
        else:
            self.failed += 1

    def statistics(self) -> PoolStatistics:
        return PoolStatistics(self.size, self.running, self.queued, self.completed, self.failed)


class _Slot:
    """Async context: wait for a slot in ``pool`` (counted as queued), then hold it (running)."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool

    async def __aenter__(self) -> None:
        # A fresh token per call: CapacityLimiter refuses two borrows by one task.
        try:
            # A free slot is taken without the event-loop turn acquire_on_behalf_of()
            # always yields: every turn before a request goes out lets other agents'
            # work run first, and N agents' requests leave bunched.
            self.pool.limiter.acquire_on_behalf_of_nowait(self)
        except anyio.WouldBlock:
            self.pool.queued += 1
            try:
                await self.pool.limiter.acquire_on_behalf_of(self)
            finally:
                self.pool.queued -= 1
        self.pool.running += 1

    async def __aexit__(self, *exc: object) -> None:
        self.pool.running -= 1
        self.pool.limiter.release_on_behalf_of(self)


class Cancelled(WorkerError):
    """A call cut short by the run's shutdown (Ctrl-C, SIGTERM): it has no outcome of its own.

    Its result event says so with ``error_type: "cancelled"``, which crash resume reads as
    "interrupted" (see :mod:`agentctl.events.journal`), never as the call's failure.
    """


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, (ToolError, Cancelled)):
        return str(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class LocalWorkPlane:
    """The work plane on this machine: two bounded pools, tools and LLM providers.

    Args:
        emit: the event sink, ``emit(type, agent_id=None, fields=None, /, **more) -> event``
            (fields as one dict, as keywords, or both).
        tools: the tool registry.
        providers: LLM providers by name.
        default_provider: the provider used when a call names none.
        llm_workers: LLM calls that may run at once.
        tool_workers: tool calls that may run at once.
        tool_timeout: seconds a tool call may run.
        llm_timeout: seconds an LLM call may run (a request's own ``timeout`` wins).
        before_run: awaited with each ``tool/requested`` event before the tool runs.
        id_prefix: put before generated call ids (a resumed run uses a new one, so ids
            stay unique within its log).
    """

    def __init__(
        self,
        emit: Emit,
        *,
        tools: ToolRegistry,
        providers: Mapping[str, Provider] | None = None,
        default_provider: str = "scripted",
        llm_workers: int = 4,
        tool_workers: int = 8,
        tool_timeout: float = 60.0,
        llm_timeout: float = 300.0,
        before_run: BeforeRun | None = None,
        id_prefix: str = "",
    ) -> None:
        self._emit = emit
        self.tools = tools
        self.providers: dict[str, Provider] = dict(providers or {})
        self.default_provider = default_provider
        self.tool_timeout = tool_timeout
        self.llm_timeout = llm_timeout
        self._before_run = before_run
        self._tool_pool = _Pool(tool_workers)
        self._llm_pool = _Pool(llm_workers)
        self._tool_ids = itertools.count(1)
        self._llm_ids = itertools.count(1)
        self._id_prefix = id_prefix

    # -- tools

    async def call_tool(
        self, agent_id: str, name: str, arguments: Mapping[str, Any], *, call_id: str | None = None, ctx: ToolContext
    ) -> CallOutcome:
        """Validate and run tool ``name`` on the tool pool; see the module docstring."""
        call_id = call_id or f"{self._id_prefix}t{next(self._tool_ids)}"
        event = self._emit(
            "tool/requested", agent_id, call_id=call_id, tool=name, arguments=self.tools.redact(name, arguments)
        )
        finish = _Finisher(self._emit, self._tool_pool, "tool/result", agent_id, call_id, tool=name)
        try:
            if self._before_run is not None:
                await self._before_run(event)
            if name not in self.tools:
                return finish.fail(ToolError(_unknown(self.tools, name)), "unknown_tool")
            try:
                checked = self.tools.validate(name, arguments)
            except ToolError as e:
                return finish.fail(e, "invalid_arguments")
            tool = self.tools.get(name)
            async with _Slot(self._tool_pool):
                finish.start()
                with anyio.move_on_after(self.tool_timeout) as scope:
                    try:
                        value = await self.tools.run(tool, checked, ctx)
                    except Exception as e:
                        return finish.fail(e, "tool_error")
                if scope.cancelled_caught:
                    return finish.fail(TimeoutError(f"{name} timed out after {self.tool_timeout:g}s"), "timeout")
                return finish.ok(value, result=value)
        except anyio.get_cancelled_exc_class():
            finish.fail(Cancelled("cancelled by the run's shutdown"), "cancelled")
            raise

    # -- LLM

    async def call_llm(
        self, agent_id: str, request: ChatRequest, *, call_id: str | None = None, provider: str | None = None
    ) -> CallOutcome:
        """Ask a provider on the LLM pool; see the module docstring."""
        call_id = call_id or f"{self._id_prefix}l{next(self._llm_ids)}"
        pname = provider or self.default_provider
        self._emit(
            "llm/requested",
            agent_id,
            call_id=call_id,
            provider=pname,
            model=request.model,
            messages=len(request.messages),
            tools=[t.name for t in request.tools],
        )
        finish = _Finisher(self._emit, self._llm_pool, "llm/result", agent_id, call_id, llm=True)
        try:
            prov = self.providers.get(pname)
            if prov is None:
                known = ", ".join(sorted(self.providers)) or "none"
                return finish.fail(LookupError(f"unknown provider {pname!r} (known: {known})"), "unknown_provider")
            timeout = request.timeout if request.timeout is not None else self.llm_timeout
            async with _Slot(self._llm_pool):
                finish.start()
                with anyio.move_on_after(timeout) as scope:
                    try:
                        reply = await prov.chat(request)
                    except Exception as e:
                        return finish.fail(e, "llm_error")
                if scope.cancelled_caught:
                    return finish.fail(TimeoutError(f"{pname} timed out after {timeout:g}s"), "timeout")
                if not isinstance(reply, ChatReply):
                    return finish.fail(TypeError(f"{pname} returned {type(reply).__name__}, not a ChatReply"), "llm_error")
                return finish.ok(
                    reply,
                    tokens=reply.prompt_tokens + reply.completion_tokens,
                    reply=reply.to_message(),
                    prompt_tokens=reply.prompt_tokens,
                    completion_tokens=reply.completion_tokens,
                )
        except anyio.get_cancelled_exc_class():
            finish.fail(Cancelled("cancelled by the run's shutdown"), "cancelled")
            raise

    # -- housekeeping

    def statistics(self) -> WorkPlaneStatistics:
        """Both pools' statistics."""
        return WorkPlaneStatistics(tool=self._tool_pool.statistics(), llm=self._llm_pool.statistics())

    async def aclose(self) -> None:
        """Close every provider."""
        for prov in self.providers.values():
            await prov.aclose()


def _unknown(tools: ToolRegistry, name: str) -> str:
    try:
        tools.get(name)
    except ToolError as e:
        return str(e)
    return f"unknown tool {name!r}"  # pragma: no cover - only reached if registered meanwhile


class _Finisher:
    """Emits the one ``*/result`` event of a call and builds its outcome."""

    def __init__(
        self, emit: Emit, pool: _Pool, type: str, agent_id: str, call_id: str, *, tool: str | None = None, llm: bool = False
    ) -> None:
        self.emit, self.pool, self.type = emit, pool, type
        self.agent_id, self.call_id, self.tool, self.llm = agent_id, call_id, tool, llm
        self.started = time.perf_counter()
        self.done = False

    def start(self) -> None:
        self.started = time.perf_counter()

    def _ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 3)

    def _emit_result(self, ok: bool, error: str | None, error_type: str | None, fields: dict[str, Any]) -> float:
        ms = self._ms()
        self.done = True
        self.pool.count(ok)
        extra = {"tool": self.tool} if self.tool is not None else {}
        self.emit(self.type, self.agent_id, call_id=self.call_id, **extra, ok=ok, error=error, error_type=error_type,
                  **fields, duration_ms=ms)
        return ms

    def ok(self, value: Any, *, tokens: int = 0, **fields: Any) -> CallOutcome:
        ms = self._emit_result(True, None, None, fields)
        return CallOutcome(self.call_id, True, value, None, None, ms, tokens)

    def fail(self, exc: BaseException, error_type: str) -> CallOutcome:
        text = _error_text(exc)
        if not self.done:
            fields = (
                {"reply": None, "prompt_tokens": 0, "completion_tokens": 0} if self.llm else {"result": None}
            )
            ms = self._emit_result(False, text, error_type, fields)
        else:
            ms = self._ms()
        return CallOutcome(self.call_id, False, None, text, error_type, ms)
