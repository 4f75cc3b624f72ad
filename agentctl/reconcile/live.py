"""Which parts of a plan a running run can change, and which an edit changed.

Invoked from ``agentctl run`` (:mod:`agentctl.cli.session`) on every valid save of the
plan. An edit is applied whole or refused whole, out loud: ``tasks`` are reconciled,
``defaults`` and the depth policy apply to every agent spawned after the edit (a task's
``supervise``, its own or from ``defaults``, to its running agent too:
:func:`supervision_changes`), and an
edit that touches a field the running run was built from (worker pools, the log, the root's
supervision, tools that were registered, MCP servers, the LLM provider) is refused with
a ``plan/refused`` event naming those fields; the run goes on with the version it has.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from ..agents.factory import asked_supervise
from ..plan.model import Defaults, Plan, PlanPolicy
from ..policy import Supervision

#: Fields of a section that a running run cannot change (``None``: none of them can).
FIXED: dict[str, frozenset[str] | None] = {
    "defaults": frozenset({"provider", "base_url", "stream"}),
    "policy": frozenset({"conflicts", "conflict_timeout"}),
    "settings": None,
    "mcp": None,
    "providers": None,
}

_EMPTY: dict[str, Any] = {"defaults": Defaults(), "policy": PlanPolicy()}


def changed_sections(old: Plan, new: Plan) -> list[str]:
    """The top-level sections (``name``, ``tasks``, ``defaults``, ...) that differ, in file order."""
    return [f.name for f in fields(Plan) if f.compare and getattr(old, f.name) != getattr(new, f.name)]


def fixed_changes(old: Plan, new: Plan) -> list[str]:
    """The key paths an edit from ``old`` to ``new`` changes that a running run cannot change."""
    out: list[str] = []
    for section in changed_sections(old, new):
        if section not in FIXED:
            continue
        fixed = FIXED[section]
        was, now = getattr(old, section), getattr(new, section)
        if fixed is None and not hasattr(was, "__dataclass_fields__"):
            out.append(section)
            continue
        was, now = was or _EMPTY[section], now or _EMPTY[section]
        out.extend(f"{section}.{f.name}" for f in fields(was)
                   if (fixed is None or f.name in fixed) and getattr(was, f.name) != getattr(now, f.name))
    return out


def supervision_changes(old: Plan, new: Plan) -> dict[str, Supervision | None]:
    """The tasks of both plans whose ``supervise`` (their own over ``defaults.supervise``) an
    edit changed, by id, with what they ask for now. Such a change restarts nothing: it is
    applied to the running agent (:meth:`agentctl.runtime.Runtime.set_supervision`); a task
    whose spec changed too is restarted by the reconcile, with the new value, anyway."""
    out: dict[str, Supervision | None] = {}
    for task in new.tasks:
        before = old.task(task.id)
        now = asked_supervise(task, new.defaults)
        if before is not None and asked_supervise(before, old.defaults) != now:
            out[task.id] = now
    return out
