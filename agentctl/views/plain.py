"""Plain one-line-per-event output, for logs, CI and terminals without a live display.

Used by ``agentctl run --plain`` / ``watch --plain`` (through :class:`PlainPrinter`) and
by the live view for its "latest events" lines (:func:`format_event`). Only notable
events get a line; the chatter (status changes, delivered messages, lock bookkeeping,
call requests) is left to the live view and the log itself.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any, TextIO

from agentctl.events.types import (
    AgentDone,
    AgentError,
    AgentMessage,
    AgentReplayed,
    AgentRestarted,
    AgentResumed,
    AgentSpawned,
    AgentStopped,
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    BusDenied,
    ConflictOpened,
    ConflictResolved,
    Event,
    LlmDelta,
    LlmResult,
    LockConflict,
    McpExited,
    McpStarted,
    PlanDiff,
    PlanInvalid,
    PlanLoaded,
    PolicyRefused,
    RunFinished,
    RunResumed,
    RunStarted,
    ToolResult,
    UnknownEvent,
    decode_as,
)

__all__ = ["PlainPrinter", "format_event", "format_time", "format_value", "one_line"]

#: Longest rendering of a result or body in a line (errors are printed whole).
MAX_VALUE = 60


def format_time(t: int | None) -> str:
    """``HH:MM:SS.mmm`` in local time for an event ``t`` (ms since the epoch)."""
    if t is None:
        return "--:--:--.---"
    second, ms = divmod(t, 1000)
    return f"{_clock(second)}.{ms:03d}"


@lru_cache(maxsize=64)
def _clock(second: int) -> str:
    # A busy run logs thousands of events a second: strftime per line was a third of a line's cost.
    return datetime.fromtimestamp(second).strftime("%H:%M:%S")


def _short(value: Any, limit: int = MAX_VALUE) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(value: Any) -> str:
    """An error's whole text on one line: line breaks shown as ``⏎``, other control
    characters escaped (error texts may quote a model's or a tool's output)."""
    if value is None:
        return "-"
    text = " ⏎ ".join(str(value).splitlines())
    return text if text.isprintable() else "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _run_started(e: RunStarted) -> str:
    plan = f"  plan={e.plan}" if e.plan else ""
    return f"run started  run_id={e.run_id}  pid={e.pid}{plan}"


def _run_finished(e: RunFinished) -> str:
    return f"run finished {e.reason} {e.status}  events={e.events}"


def _spawned(e: AgentSpawned) -> str:
    model = f" model={e.model}" if e.model else ""
    return f"spawned  parent={e.parent_id or '-'} depth={e.depth} kind={e.kind or '-'}{model}"


def _done(e: AgentDone) -> str:
    reason = f" ({e.reason})" if e.reason else ""
    return f"done {e.status}{reason}  result={_short(e.result)}"


def _error(e: AgentError) -> str:
    return f"error ({e.where}) {e.error_type}: {one_line(e.error)}"


def _stopped(e: AgentStopped) -> str:
    return f"stopped {e.reason}"


def _restarted(e: AgentRestarted) -> str:
    return f"restarted by {e.parent_id} ({e.strategy}, restart #{e.restarts}, offender={e.offender})"


def _refused(e: PolicyRefused) -> str:
    return f"refused spawn of {e.child_id} ({e.rule}): {one_line(e.error)}"


def _denied(e: BusDenied) -> str:
    return f"denied {e.from_} -> {e.to} {e.kind} ({e.reason})"


def _conflict(e: LockConflict) -> str:
    return f"lock conflict {e.path} {e.mode}: held by {e.holder} ({e.holder_path} {e.holder_mode})"


def _ms(duration_ms: float) -> str:
    return f"  {duration_ms:.0f}ms"


def _tool_result(e: ToolResult) -> str:
    if e.ok:
        return f"tool {e.tool} ok{_ms(e.duration_ms)}  result={_short(e.result)}"
    return f"tool {e.tool} FAILED{_ms(e.duration_ms)}: {one_line(e.error)}"


def _llm_result(e: LlmResult) -> str:
    tokens = f"{e.prompt_tokens}+{e.completion_tokens} tok"
    if e.ok:
        return f"llm {e.provider} ok  {tokens}{_ms(e.duration_ms)}"
    return f"llm {e.provider} FAILED{_ms(e.duration_ms)}: {one_line(e.error)}"


def _llm_delta(e: LlmDelta) -> str:
    parts = [f"llm {e.call_id} ..."]
    if e.content:
        parts.append(one_line(e.content))
    if e.tool_calls:
        parts.append("[tool calls] " + one_line(e.tool_calls.strip()))
    if e.cut:
        parts.append(f"({e.cut} characters cut)")
    return " ".join(parts)


def _plan_loaded(e: PlanLoaded) -> str:
    return f"plan loaded {e.name} v{e.version} ({e.tasks} tasks) from {e.file}"


def _plan_diff(e: PlanDiff) -> str:
    parts = [f"{sign}{','.join(ids)}" for sign, ids in (("+", e.added), ("-", e.removed), ("~", e.changed)) if ids]
    return f"plan v{e.version} diff {' '.join(parts) or '(no change)'}"


def _plan_invalid(e: PlanInvalid) -> str:
    error = e.error
    where = str(error.get("file") or e.file or "<plan>")
    if error.get("line") is not None:
        where += f":{error['line']}"
    at = f" at {error['path']}" if error.get("path") else ""
    return f"plan invalid: {where}{at}: {one_line(error.get('message'))}"


def _conflict_opened(e: ConflictOpened) -> str:
    return (f"conflict {e.conflict_id} on {e.path} with {e.holder}: thread {e.thread_id}, {e.policy},"
            f" arbiter {e.arbiter or '-'}")


def _conflict_resolved(e: ConflictResolved) -> str:
    return f"conflict {e.conflict_id} resolved: granted to {e.granted_to}, {e.outcome} (by {e.by})"


def _run_resumed(e: RunResumed) -> str:
    torn = f", torn line {e.torn_line} cut" if e.torn_line else ""
    ckpt = f", from checkpoint #{e.checkpoint}" if e.checkpoint else ""
    return f"run resumed after #{e.from_seq}{ckpt}{torn}: {len(e.agents)} agents continue"


def _agent_resumed(e: AgentResumed) -> str:
    return f"resumed  replaying {e.replay} recorded outcomes, {e.messages} messages"


def _agent_replayed(e: AgentReplayed) -> str | None:
    if not e.messages:
        return None  # the usual case: nothing came while it replayed
    return f"replayed  live again; the {e.messages} message(s) that came meanwhile are read at step {e.step + 1}"


def _mcp_started(e: McpStarted) -> str:
    return f"mcp server {e.server} up ({e.tools} tools)"


def _mcp_exited(e: McpExited) -> str:
    return f"mcp server {e.server} exited: {e.reason}" + (", restarting" if e.restarting else "")


def _approval_requested(e: ApprovalRequested) -> str:
    wait = f"; {e.default} after {e.timeout:g} s" if e.timeout is not None else ""
    return (f"approval needed: call {e.call_id} {e.tool} {_short(e.arguments)} (gate {e.gate}{wait}): "
            f"agentctl approve|deny {e.call_id}")


def _approval_granted(e: ApprovalGranted) -> str:
    return f"call {e.call_id} {e.tool} approved by {e.by}" + (f": {e.note}" if e.note else "")


def _approval_denied(e: ApprovalDenied) -> str:
    return f"call {e.call_id} {e.tool} DENIED by {e.by}: {e.reason}"


def _message(e: AgentMessage) -> str | None:
    if e.delivered:
        return None  # delivered messages are the normal chatter
    return f"message {e.from_} -> {e.to} {e.kind} UNDELIVERED (inbox full)"


_BY_CLASS: dict[type[Event], Callable[[Any], str | None]] = {
    RunStarted: _run_started,
    RunFinished: _run_finished,
    AgentSpawned: _spawned,
    AgentDone: _done,
    AgentError: _error,
    AgentStopped: _stopped,
    AgentRestarted: _restarted,
    AgentMessage: _message,
    PolicyRefused: _refused,
    BusDenied: _denied,
    LockConflict: _conflict,
    ToolResult: _tool_result,
    LlmResult: _llm_result,
    LlmDelta: _llm_delta,
    PlanLoaded: _plan_loaded,
    PlanDiff: _plan_diff,
    PlanInvalid: _plan_invalid,
    ConflictOpened: _conflict_opened,
    ConflictResolved: _conflict_resolved,
    RunResumed: _run_resumed,
    AgentResumed: _agent_resumed,
    AgentReplayed: _agent_replayed,
    McpStarted: _mcp_started,
    McpExited: _mcp_exited,
    ApprovalRequested: _approval_requested,
    ApprovalGranted: _approval_granted,
    ApprovalDenied: _approval_denied,
}
#: The same by ``type``, to skip the decoding of the types that get no line.
_FORMATTERS = {cls.type: fn for cls, fn in _BY_CLASS.items()}
_NOTABLE: dict[str | None, type[Event]] = {cls.type: cls for cls in _BY_CLASS}


def format_event(event: Mapping[str, Any]) -> str | None:
    """One short line for a notable event, ``None`` for noise and unknown types.

    The line reads ``12:00:01.234 #42 greeter  done ok  result='hi'``: local time, seq,
    agent (``-`` for run-level events), then what happened. Only a notable type is decoded
    (:func:`~agentctl.events.types.decode_as`).
    """
    cls = _NOTABLE.get(event.get("type"))
    if cls is None or (cls is AgentMessage and event.get("delivered") is True):
        # Not decoded: half of a busy run's events are delivered messages, which get no line
        # (a --plain run formats every event as it is emitted).
        return None
    return format_value(decode_as(event, cls))


def format_value(e: Event | UnknownEvent) -> str | None:
    """:func:`format_event` for an event already decoded. A notable type too damaged to
    decode gets its type and fields as they are."""
    if isinstance(e, UnknownEvent):
        if e.type not in _FORMATTERS:
            return None
        body: str | None = f"{e.type} (unreadable) {_short(e.data, 200)}"
    else:
        formatter = _BY_CLASS.get(type(e))
        body = None if formatter is None else formatter(e)
    if body is None:
        return None
    return f"{format_time(e.t or None)} #{e.seq} {e.agent_id or '-'}  {body}"


class PlainPrinter:
    """Prints :func:`format_event` lines to a file, flushing each (feed it every event)."""

    def __init__(self, file: TextIO | None = None) -> None:
        """Args: file: where to print; ``sys.stdout`` (looked up at print time) when None."""
        self._file = file
        self.printed = 0

    def feed(self, event: dict[str, Any]) -> None:
        """Print the event's line, if it has one."""
        line = format_event(event)
        if line is None:
            return
        file = self._file if self._file is not None else sys.stdout
        file.write(line + "\n")
        file.flush()
        self.printed += 1

    __call__ = feed
