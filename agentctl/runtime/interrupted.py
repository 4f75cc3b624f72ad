"""Settling interrupted tool calls before a resumed run starts its agents again.

Invoked from the CLI session (:mod:`agentctl.cli.session`) right after ``run/resumed``,
before any agent runs: nothing else touches the workspace while the checks look at it.
For every call in a live agent's journal that has no result and whose tool declares a
``recover`` check (all built-in ``fs/*`` tools do), the check looks at the workspace and
says whether the call took effect; the answer is logged as ``tool/recovered``, and the
journal (:mod:`agentctl.events.journal`) turns it into the call's outcome (applied), a
rerun (not applied) or an ``interrupted`` result (unknown) when the agent is replayed
(:mod:`agentctl.runtime.recovery`).
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import AgentctlError
from ..events.emit import Emit
from ..events.journal import Journals
from ..events.types import ToolRecovered
from ..services.tools.registry import Recovered, ToolContext, ToolRegistry


def recover_interrupted(journals: Journals, tools: ToolRegistry, context: Callable[[str], ToolContext], emit: Emit) -> int:
    """Check every interrupted call that can be checked; log each answer. Returns how many.

    Args:
        journals: the live agents' journals (updated through ``emit``'s subscribers).
        tools: the run's tools (plugins loaded).
        context: the tool context for an agent id.
        emit: the event log's ``emit``.
    """
    checks = []
    for agent_id, journal in journals.by_agent.items():
        for effect in journal.effects:
            # A call still held for approval never started: there is nothing to check.
            if effect["op"] == "tool" and not effect["done"] and "approval" not in effect and effect.get("name") in tools:
                recover = tools.get(effect["name"]).recover
                if recover is not None:
                    checks.append((agent_id, effect, recover))
    for agent_id, effect, recover in checks:
        error = None
        try:
            found = recover(context(agent_id), effect.get("arguments") or {}, effect.get("record"))
        except (AgentctlError, OSError, ValueError, TypeError) as exc:
            found, error = Recovered(None), f"{type(exc).__name__}: {exc}"
        emit(ToolRecovered(agent_id=agent_id, call_id=effect["call_id"], tool=effect["name"], applied=found.applied,
                           result=found.value, error=error))
    return len(checks)
