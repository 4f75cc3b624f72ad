"""The work plane: bounded pools that run tool calls and LLM calls, logging each as events.

Called by the runtime's action interpreter for ``call_tool`` and ``call_llm`` actions.
:class:`WorkPlane` is the interface (so the pools can later live elsewhere, e.g. on
Ray); :class:`LocalWorkPlane` runs them in this process with ``anyio`` capacity limiters.

Every call has a timeout that is enforced: an async tool is cancelled; a sync tool runs in
a worker thread (unless declared ``inline``), which cannot be stopped from outside, so on
timeout the call answers at once, the tool is told through ``ctx.cancel`` (one that checks
it returns early), and its thread is abandoned, counted in :class:`PoolStatistics`
(``stranded``) until it returns. A tool call's timeout is the caller's (a plan task's
``tool_timeout``), else the plan's for that tool, else the tool's own, else the plane's
default; it never outlasts the agent's deadline (``within``).

Every call is logged before it runs (``tool/requested`` / ``llm/requested``). A tool call
is also written ahead: the optional ``before_run`` hook is awaited with its event (the
runtime uses it to wait until the event is on disk) before the call may take a slot, so
that a resumed run knows a tool that may not run twice was started. A tool with a
``recover`` check writes ahead itself instead, right before its effect and under its own
locks: its ``ToolContext.write_ahead`` logs ``tool/prepared`` and waits the same way. LLM
calls skip that
wait: resume asks the model again for a call with no recorded reply, so the fsync would
only add latency (about 2.5 ms per call at 16 agents). Failures of any kind (unknown
tool, bad arguments, the tool raising, a timeout) come back as a :class:`CallOutcome`
with ``ok=False`` and a ``tool/result`` / ``llm/result`` event; they are never raised.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Protocol, cast, runtime_checkable

import anyio

from ..errors import ToolError, UsageError, WorkerError
from ..events.emit import Emit
from ..redact import Redactor
from .deltas import DELTA_INTERVAL, Flusher, ReplyStream
from .llm.base import ChatReply, ChatRequest, Provider, StreamingProvider
from .tools.registry import Tool, ToolContext, ToolRegistry, in_thread

__all__ = [
    "CallOutcome", "Interrupted", "LocalWorkPlane", "PoolStatistics", "Ran", "ToolRunner", "WorkPlane",
    "WorkPlaneStatistics",
]

BeforeRun = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Ran:
    """What a :class:`ToolRunner` brings back from one call: the value, or the tool's error text.

    Attributes:
        ok: whether the tool returned.
        value: its return value.
        error: the tool's error text when not ok (reported as ``tool_error``).
        node: where it ran (a Ray node id), logged in ``tool/result``.
    """

    ok: bool
    value: Any = None
    error: str | None = None
    node: str | None = None


@runtime_checkable
class ToolRunner(Protocol):
    """Runs some tools somewhere else (a cluster) for a :class:`LocalWorkPlane`.

    The plane keeps everything around the call (events, write-ahead, validation, the pool
    slot, the timeout); the runner only carries the validated call out. A call the plane
    cancels (its timeout, the run's shutdown) is cancelled where it runs. Implemented by
    :class:`agentctl.services.ray_plane.RayRunner`.
    """

    def takes(self, tool: Tool) -> bool:
        """Whether calls of ``tool`` go to this runner."""
        ...

    async def run(self, tool: Tool, arguments: Mapping[str, Any], ctx: ToolContext, call_id: str) -> Ran:
        """Carry out one call; raises :class:`Interrupted` when the worker running it was lost."""
        ...


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """What a tool or LLM call came to.

    Attributes:
        call_id: the call's id (as in its events).
        ok: whether it succeeded.
        value: the tool's return value, or the ``ChatReply``.
        error: the error text when not ok.
        error_type: ``timeout``, ``invalid_arguments``, ``unknown_tool``, ``tool_error``,
            ``unknown_provider``, ``llm_error``, ``cancelled`` or ``interrupted`` (the
            worker that ran it was lost: handled as after a crash).
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
    """One pool: its size, calls running and queued for a slot, calls finished ok / not ok.

    ``timed_out`` counts calls that hit their timeout; ``stranded``, the worker threads of
    timed-out calls that are still running (they hold no slot).
    """

    size: int
    running: int
    queued: int
    completed: int
    failed: int
    timed_out: int = 0
    stranded: int = 0


@dataclass(frozen=True, slots=True)
class WorkPlaneStatistics:
    """Both pools."""

    tool: PoolStatistics
    llm: PoolStatistics


@runtime_checkable
class WorkPlane(Protocol):
    """Runs tool and LLM calls for agents."""

    async def call_tool(
        self, agent_id: str, name: str, arguments: Mapping[str, Any], *, call_id: str | None = None, ctx: ToolContext,
        timeout: float | None = None, within: float | None = None,
    ) -> CallOutcome:
        """Run tool ``name`` (``timeout``: the caller's, ``within``: a cap); never raises for a failed call."""
        ...

    async def call_llm(
        self, agent_id: str, request: ChatRequest, *, call_id: str | None = None, provider: str | None = None,
        within: float | None = None,
    ) -> CallOutcome:
        """Ask ``provider`` (default: the plane's; ``within``: a cap on the timeout); never raises for a failed call."""
        ...

    async def serve(self) -> None:
        """The plane's own background work, until cancelled (run by the runtime)."""
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
        self.running = self.queued = self.completed = self.failed = self.timed_out = 0
        self.stranded = 0  # changed from worker threads too: under _stranded_lock
        self._stranded_lock = threading.Lock()

    def count(self, ok: bool) -> None:
        if ok:
            self.completed += 1
        else:
            self.failed += 1

    def statistics(self) -> PoolStatistics:
        return PoolStatistics(self.size, self.running, self.queued, self.completed, self.failed, self.timed_out,
                              self.stranded)

    def watch_thread(self) -> _ThreadWatch:
        """A watch for one call's worker thread, to count it as stranded if it outlives its timeout."""
        return _ThreadWatch(self)


class _ThreadWatch:
    """One call's thread: stranded from its call's timeout until it returns."""

    __slots__ = ("abandoned", "pool", "returned")

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.returned = self.abandoned = False

    def on_return(self) -> None:
        """Called from the worker thread when the tool returns."""
        with self.pool._stranded_lock:
            self.returned = True
            if self.abandoned:
                self.pool.stranded -= 1

    def abandon(self) -> None:
        """The call timed out: its thread, if still running, is stranded."""
        with self.pool._stranded_lock:
            if not self.returned:
                self.abandoned = True
                self.pool.stranded += 1


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


class Interrupted(WorkerError):
    """The worker or node running a call was lost mid-call: whether it took effect is unknown.

    Its result event says so with ``error_type: "interrupted"``, and the agent is told as a
    resumed agent would be (see ``docs/durability.md``): a step that fails over it fails
    the agent for good.
    """


class Cancelled(WorkerError):
    """A call cut short by the run's shutdown (Ctrl-C, SIGTERM) or its agent's end (its
    ``max_seconds``, a stop of its subtree): it has no outcome of its own.

    Its result event says so with ``error_type: "cancelled"``, which crash resume reads as
    "interrupted" (see :mod:`agentctl.events.journal`), never as the call's failure.
    """


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, (ToolError, Cancelled, Interrupted)):
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
        tool_timeout: seconds a tool call may run, unless the tool or the plan says otherwise.
        tool_timeouts: seconds by tool name (the plan's ``settings.tool_timeouts``).
        llm_timeout: seconds an LLM call may run (a request's own ``timeout`` wins).
        before_run: awaited with each ``tool/requested`` event before the tool runs.
        runner: carries out the calls of the tools it takes elsewhere (a cluster); the
            others, and every call when ``None``, run in this process.
        id_prefix: put before generated call ids (a resumed run uses a new one, so ids
            stay unique within its log).
        qualified_models: models name their provider (``local/qwen3:8b``, a plan with
            ``providers:``); see :meth:`_route`.
        redactor: hides the run's secrets in streamed fragments (see
            :mod:`agentctl.services.deltas`) before they reach the log.
        delta_interval: seconds between two ``llm/delta`` events of one call.
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
        tool_timeouts: Mapping[str, float] | None = None,
        llm_timeout: float = 300.0,
        before_run: BeforeRun | None = None,
        runner: ToolRunner | None = None,
        id_prefix: str = "",
        qualified_models: bool = False,
        redactor: Redactor | None = None,
        delta_interval: float = DELTA_INTERVAL,
    ) -> None:
        self._emit = emit
        self._flusher = Flusher(delta_interval)
        self.qualified_models = qualified_models
        self._redactor = redactor
        self.tools = tools
        self.providers: dict[str, Provider] = dict(providers or {})
        self.default_provider = default_provider
        self.tool_timeout = tool_timeout
        self.tool_timeouts = dict(tool_timeouts or {})
        self.llm_timeout = llm_timeout
        self._before_run = before_run
        self._runner = runner
        self._tool_pool = _Pool(tool_workers)
        self._llm_pool = _Pool(llm_workers)
        self._tool_ids = itertools.count(1)
        self._llm_ids = itertools.count(1)
        self._id_prefix = id_prefix

    # -- tools

    async def call_tool(
        self, agent_id: str, name: str, arguments: Mapping[str, Any], *, call_id: str | None = None, ctx: ToolContext,
        timeout: float | None = None, within: float | None = None,
    ) -> CallOutcome:
        """Validate and run tool ``name`` on the tool pool; see the module docstring."""
        call_id = call_id or f"{self._id_prefix}t{next(self._tool_ids)}"
        event = self._emit(
            "tool/requested", agent_id, call_id=call_id, tool=name, arguments=self.tools.redact(name, arguments)
        )
        finish = _Finisher(self._emit, self._tool_pool, "tool/result", agent_id, call_id, tool=name)
        try:
            if name in self.tools and self.tools.get(name).recover is not None:
                # It writes ahead itself, right before its effect (ToolContext.write_ahead).
                ctx = replace(ctx, prepared=partial(self._prepared, agent_id, call_id, name))
            elif self._before_run is not None:
                await self._before_run(event)
            if name not in self.tools:
                return finish.fail(ToolError(_unknown(self.tools, name)), "unknown_tool")
            try:
                checked = self.tools.validate(name, arguments)
            except ToolError as e:
                return finish.fail(e, "invalid_arguments")
            tool = self.tools.get(name)
            limit = _cap(timeout if timeout is not None else self.tool_timeouts.get(name, tool.timeout or self.tool_timeout), within)
            if self._runner is not None and self._runner.takes(tool):
                return await self._run_elsewhere(self._runner, tool, checked, ctx, limit, finish)
            watch = self._tool_pool.watch_thread() if in_thread(tool) else None
            async with _Slot(self._tool_pool):
                finish.start()
                with anyio.move_on_after(limit) as scope:
                    try:
                        value = await self.tools.run(tool, checked, ctx, on_return=watch.on_return if watch else None)
                    except Exception as e:
                        return finish.fail(e, "tool_error")
                if scope.cancelled_caught:
                    ctx.cancel.set()  # a thread that checks it can stop
                    return finish.fail(self._timed_out(name, limit, watch), "timeout")
                return finish.ok(value, result=value)
        except anyio.get_cancelled_exc_class():
            finish.fail(Cancelled("cancelled: the run shut down or the agent ended (its max_seconds, a stop)"), "cancelled")
            raise

    async def _run_elsewhere(
        self, runner: ToolRunner, tool: Tool, checked: dict[str, Any], ctx: ToolContext, limit: float, finish: _Finisher,
    ) -> CallOutcome:
        """One call carried out by ``runner``, under the same slot and timeout as a local one."""
        async with _Slot(self._tool_pool):
            finish.start()
            with anyio.move_on_after(limit) as scope:
                try:
                    ran = await runner.run(tool, checked, ctx, finish.call_id)
                except Interrupted as e:
                    return finish.fail(e, "interrupted")
            if scope.cancelled_caught:
                self._tool_pool.timed_out += 1
                return finish.fail(TimeoutError(f"{tool.name} timed out after {limit:g}s (cancelled where it ran)"),
                                   "timeout")
            if not ran.ok:
                return finish.fail(ToolError(ran.error or "failed"), "tool_error", node=ran.node)
            return finish.ok(ran.value, result=ran.value, node=ran.node)

    async def _prepared(self, agent_id: str, call_id: str, name: str, record: Any) -> None:
        event = self._emit("tool/prepared", agent_id, call_id=call_id, tool=name, record=record)
        if self._before_run is not None:
            await self._before_run(event)

    # -- LLM

    async def call_llm(
        self, agent_id: str, request: ChatRequest, *, call_id: str | None = None, provider: str | None = None,
        within: float | None = None,
    ) -> CallOutcome:
        """Ask a provider on the LLM pool; see the module docstring."""
        call_id = call_id or f"{self._id_prefix}l{next(self._llm_ids)}"
        pname, model = self._route(provider, request.model)
        if model != request.model:
            request = replace(request, model=model)
        self._emit(
            "llm/requested",
            agent_id,
            call_id=call_id,
            provider=pname,
            model=request.model,
            messages=len(request.messages),
            tools=[t.name for t in request.tools],
        )
        finish = _Finisher(self._emit, self._llm_pool, "llm/result", agent_id, call_id, provider=pname)
        try:
            prov = self.providers.get(pname)
            if prov is None:
                known = ", ".join(sorted(self.providers)) or "none"
                return finish.fail(LookupError(f"unknown provider {pname!r} (known: {known})"), "unknown_provider")
            timeout = _cap(request.timeout if request.timeout is not None else self.llm_timeout, within)
            async with _Slot(self._llm_pool):
                finish.start()
                with anyio.move_on_after(timeout) as scope:
                    try:
                        if getattr(prov, "stream", False):
                            stream = ReplyStream(self._emit, agent_id, call_id, redactor=self._redactor,
                                                 interval=self._flusher.interval)
                            reply = await self._flusher.follow(stream, cast(StreamingProvider, prov).chat(request, stream.feed))
                        else:
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
            finish.fail(Cancelled("cancelled: the run shut down or the agent ended (its max_seconds, a stop)"), "cancelled")
            raise

    def _route(self, provider: str | None, model: str) -> tuple[str, str]:
        """The provider a call goes to, and the model name it is sent.

        With named providers (a plan's ``providers:``), a model ``local/qwen3:8b`` goes to
        provider ``local`` as ``qwen3:8b``, whatever provider the agent was given; otherwise
        the agent's provider (else the plane's default) gets the model as it is.
        """
        if self.qualified_models:
            head, sep, rest = model.partition("/")
            if sep and head in self.providers:
                return head, rest
        return provider or self.default_provider, model

    def _timed_out(self, name: str, limit: float, watch: _ThreadWatch | None) -> TimeoutError:
        self._tool_pool.timed_out += 1
        if watch is None:
            return TimeoutError(f"{name} timed out after {limit:g}s (cancelled)")
        watch.abandon()
        state = "still running" if watch.abandoned else "returned"
        return TimeoutError(f"{name} timed out after {limit:g}s; its worker thread is {state} and was abandoned")

    # -- housekeeping

    async def serve(self) -> None:
        """Log what streaming calls hold back while their models pause, until cancelled (one
        task for every call; the runtime runs it). Without it, held text waits for the end of
        the reply."""
        await self._flusher.run()

    def statistics(self) -> WorkPlaneStatistics:
        """Both pools' statistics."""
        return WorkPlaneStatistics(tool=self._tool_pool.statistics(), llm=self._llm_pool.statistics())

    async def aclose(self) -> None:
        """Close every provider."""
        for prov in self.providers.values():
            await prov.aclose()


def _cap(timeout: float, within: float | None) -> float:
    return timeout if within is None else min(timeout, within)


def _unknown(tools: ToolRegistry, name: str) -> str:
    try:
        tools.get(name)
    except ToolError as e:
        return str(e)
    return f"unknown tool {name!r}"  # pragma: no cover - only reached if registered meanwhile


class _Finisher:
    """Emits the one ``*/result`` event of a call and builds its outcome."""

    def __init__(
        self, emit: Emit, pool: _Pool, type: str, agent_id: str, call_id: str, *, tool: str | None = None,
        provider: str | None = None,
    ) -> None:
        self.emit, self.pool, self.type = emit, pool, type
        self.agent_id, self.call_id, self.tool, self.provider = agent_id, call_id, tool, provider
        self.llm = provider is not None
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
        extra = ({"tool": self.tool, "node": fields.pop("node", None)} if self.tool is not None
                 else {"provider": self.provider})
        self.emit(self.type, self.agent_id, call_id=self.call_id, **extra, ok=ok, error=error, error_type=error_type,
                  **fields, duration_ms=ms)
        return ms

    def ok(self, value: Any, *, tokens: int = 0, **fields: Any) -> CallOutcome:
        ms = self._emit_result(True, None, None, fields)
        return CallOutcome(self.call_id, True, value, None, None, ms, tokens)

    def fail(self, exc: BaseException, error_type: str, *, node: str | None = None) -> CallOutcome:
        text = _error_text(exc)
        if not self.done:
            fields: dict[str, Any] = (
                {"reply": None, "prompt_tokens": 0, "completion_tokens": 0} if self.llm else {"result": None, "node": node}
            )
            ms = self._emit_result(False, text, error_type, fields)
        else:
            ms = self._ms()
        return CallOutcome(self.call_id, False, None, text, error_type, ms)
