"""Plain one-line-per-event output, for logs, CI and terminals without a live display.

Used by ``agentctl run --plain`` / ``watch --plain`` (through :class:`PlainPrinter`) and
by the live view for its "latest events" lines (:func:`format_event`). Only notable
events get a line; the chatter (status changes, delivered messages, lock bookkeeping,
call requests) is left to the live view and the log itself.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, TextIO

__all__ = ["PlainPrinter", "format_event", "format_time", "one_line"]

#: Longest rendering of a result or body in a line (errors are printed whole).
MAX_VALUE = 60


def format_time(t: int | None) -> str:
    """``HH:MM:SS.mmm`` in local time for an event ``t`` (ms since the epoch)."""
    if t is None:
        return "--:--:--.---"
    return datetime.fromtimestamp(t / 1000).strftime("%H:%M:%S.%f")[:-3]


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


def _run_started(e: dict[str, Any]) -> str:
    plan = f"  plan={e['plan']}" if e.get("plan") else ""
    return f"run started  run_id={e.get('run_id')}  pid={e.get('pid')}{plan}"


def _run_finished(e: dict[str, Any]) -> str:
    return f"run finished {e.get('reason')} {e.get('status')}  events={e.get('events')}"


def _spawned(e: dict[str, Any]) -> str:
    parent = e.get("parent_id") or "-"
    model = f" model={e['model']}" if e.get("model") else ""
    return f"spawned  parent={parent} depth={e.get('depth')} kind={e.get('kind') or '-'}{model}"


def _done(e: dict[str, Any]) -> str:
    reason = f" ({e['reason']})" if e.get("reason") else ""
    return f"done {e.get('status')}{reason}  result={_short(e.get('result'))}"


def _error(e: dict[str, Any]) -> str:
    return f"error ({e.get('where')}) {e.get('error_type')}: {one_line(e.get('error'))}"


def _stopped(e: dict[str, Any]) -> str:
    return f"stopped {e.get('reason')}"


def _restarted(e: dict[str, Any]) -> str:
    return (
        f"restarted by {e.get('parent_id')} ({e.get('strategy')}, restart #{e.get('restarts')},"
        f" offender={e.get('offender')})"
    )


def _refused(e: dict[str, Any]) -> str:
    return f"refused spawn of {e.get('child_id')} ({e.get('rule')}): {one_line(e.get('error'))}"


def _denied(e: dict[str, Any]) -> str:
    return f"denied {e.get('from')} -> {e.get('to')} {e.get('kind')} ({e.get('reason')})"


def _conflict(e: dict[str, Any]) -> str:
    return (
        f"lock conflict {e.get('path')} {e.get('mode')}: held by {e.get('holder')}"
        f" ({e.get('holder_path')} {e.get('holder_mode')})"
    )


def _ms(e: dict[str, Any]) -> str:
    duration = e.get("duration_ms")
    return "" if duration is None else f"  {duration:.0f}ms"


def _tool_result(e: dict[str, Any]) -> str:
    if e.get("ok"):
        return f"tool {e.get('tool')} ok{_ms(e)}  result={_short(e.get('result'))}"
    return f"tool {e.get('tool')} FAILED{_ms(e)}: {one_line(e.get('error'))}"


def _llm_result(e: dict[str, Any]) -> str:
    tokens = f"{e.get('prompt_tokens', 0)}+{e.get('completion_tokens', 0)} tok"
    if e.get("ok"):
        return f"llm ok  {tokens}{_ms(e)}"
    return f"llm FAILED{_ms(e)}: {one_line(e.get('error'))}"


def _plan_loaded(e: dict[str, Any]) -> str:
    return f"plan loaded {e.get('name')} v{e.get('version')} ({e.get('tasks')} tasks) from {e.get('file')}"


def _plan_diff(e: dict[str, Any]) -> str:
    parts = [
        f"{sign}{','.join(ids)}"
        for sign, ids in (("+", e.get("added") or []), ("-", e.get("removed") or []), ("~", e.get("changed") or []))
        if ids
    ]
    return f"plan v{e.get('version')} diff {' '.join(parts) or '(no change)'}"


def _plan_invalid(e: dict[str, Any]) -> str:
    error = e.get("error") or {}
    if not isinstance(error, dict):
        return f"plan invalid: {one_line(error)}"
    where = error.get("file") or e.get("file") or "<plan>"
    if error.get("line") is not None:
        where += f":{error['line']}"
    at = f" at {error['path']}" if error.get("path") else ""
    return f"plan invalid: {where}{at}: {one_line(error.get('message'))}"


def _conflict_opened(e: dict[str, Any]) -> str:
    return f"conflict {e.get('conflict_id')} on {e.get('path')} with {e.get('holder')}: thread {e.get('thread_id')}, {e.get('policy')}, arbiter {e.get('arbiter') or '-'}"


def _conflict_resolved(e: dict[str, Any]) -> str:
    return f"conflict {e.get('conflict_id')} resolved: granted to {e.get('granted_to')}, {e.get('outcome')} (by {e.get('by')})"


def _run_resumed(e: dict[str, Any]) -> str:
    torn = f", torn line {e['torn_line']} cut" if e.get("torn_line") else ""
    ckpt = f", from checkpoint #{e['checkpoint']}" if e.get("checkpoint") else ""
    return f"run resumed after #{e.get('from_seq')}{ckpt}{torn}: {len(e.get('agents') or [])} agents continue"


def _agent_resumed(e: dict[str, Any]) -> str:
    return f"resumed  replaying {e.get('replay')} recorded outcomes, {e.get('messages')} messages"


def _mcp_started(e: dict[str, Any]) -> str:
    return f"mcp server {e.get('server')} up ({e.get('tools')} tools)"


def _mcp_exited(e: dict[str, Any]) -> str:
    return f"mcp server {e.get('server')} exited: {e.get('reason')}" + (", restarting" if e.get("restarting") else "")


def _message(e: dict[str, Any]) -> str | None:
    if e.get("delivered", True):
        return None  # delivered messages are the normal chatter
    return f"message {e.get('from')} -> {e.get('to')} {e.get('kind')} UNDELIVERED (inbox full)"


_FORMATTERS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "run/started": _run_started,
    "run/finished": _run_finished,
    "agent/spawned": _spawned,
    "agent/done": _done,
    "agent/error": _error,
    "agent/stopped": _stopped,
    "agent/restarted": _restarted,
    "agent/message": _message,
    "policy/refused": _refused,
    "bus/denied": _denied,
    "lock/conflict": _conflict,
    "tool/result": _tool_result,
    "llm/result": _llm_result,
    "plan/loaded": _plan_loaded,
    "plan/diff": _plan_diff,
    "plan/invalid": _plan_invalid,
    "conflict/opened": _conflict_opened,
    "conflict/resolved": _conflict_resolved,
    "run/resumed": _run_resumed,
    "agent/resumed": _agent_resumed,
    "mcp/started": _mcp_started,
    "mcp/exited": _mcp_exited,
}


def format_event(event: dict[str, Any]) -> str | None:
    """One short line for a notable event, ``None`` for noise and unknown types.

    The line reads ``12:00:01.234 #42 greeter  done ok  result='hi'``: local time, seq,
    agent (``-`` for run-level events), then what happened.
    """
    formatter = _FORMATTERS.get(event.get("type", ""))
    if formatter is None:
        return None
    body = formatter(event)
    if body is None:
        return None
    return f"{format_time(event.get('t'))} #{event.get('seq')} {event.get('agent_id') or '-'}  {body}"


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
