"""Why a run failed, one line per failed agent, for the end of ``agentctl run``.

Read from the run's :class:`~agentctl.events.run_state.RunState` (the fold the checkpointer
keeps) by :mod:`agentctl.cli.run` once the run is over: for each agent that ended ``failed``,
its fatal ``agent/error`` and, when a failed tool or LLM call of that agent led to it, which
call (tool, call id) and the call's own error; for each agent that said it failed (``done``
with status ``failed``), what it said. The text is as logged: already redacted.
"""

from __future__ import annotations

from ..events.outcomes import Failure
from ..events.reducers import FAILED_DONE, FATAL_WHERE
from ..events.run_state import RunState
from .plain import one_line

__all__ = ["failure_lines"]


def failure_lines(state: RunState) -> list[str]:
    """One line per agent that ended ``failed``: ``agent ID: WHAT failed: WHY``, in the order they failed;
    then one per agent that ended itself with ``done`` status ``failed`` or ``error`` (an LLM agent that gave up):
    ``agent ID: ended failed: RESULT``. The plan's root, whose result only counts its tasks, is left out."""
    last_call: dict[str | None, Failure] = {}
    fatal: dict[str | None, tuple[Failure, Failure | None]] = {}
    for failure in state.errors:
        if failure.call_id is not None:
            last_call[failure.agent_id] = failure
        elif failure.where in FATAL_WHERE:
            fatal[failure.agent_id] = (failure, last_call.pop(failure.agent_id, None))
    lines = []
    for agent_id, (error, call) in fatal.items():
        agent = state.agents.get(agent_id) if agent_id is not None else None
        if agent is None or agent.status != "failed":
            continue  # restarted since, and did not fail again
        lines.append(_line(agent_id, error, call))
    gave_up = [a for a in state.agents.values()
               if a.status == "failed" and a.done_status in FAILED_DONE and a.kind != "plan" and a.id not in fatal]
    for agent in sorted(gave_up, key=lambda a: a.ended_t or 0):
        lines.append(f"agent {agent.id}: ended failed: {one_line(agent.result)}")
    return lines


def _line(agent_id: str | None, error: Failure, call: Failure | None) -> str:
    if error.error_type == "interrupted":
        return f"agent {agent_id}: {one_line(error.error)}; see docs/durability.md"
    if call is not None:
        kind = f" ({call.error_type})" if call.error_type else ""
        return f"agent {agent_id}: {call.where} (call {call.call_id}) failed{kind}: {one_line(call.error)}"
    kind = f"{error.error_type}: " if error.error_type else ""
    return f"agent {agent_id}: {error.where} failed: {kind}{one_line(error.error)}"
