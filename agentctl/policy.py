"""Budgets and the depth policy: pure values and checks, shared by plans and the runtime.

Deeper agents get smaller models, fewer tools and smaller budgets. A :class:`Policy`
maps a depth to a :class:`PolicyRule` (allowed models, a toolset, a budget ceiling);
:func:`grant_child` decides what a child may have, given its parent's grant and what
the spawn asked for, or raises :class:`~agentctl.errors.PolicyError` naming the rule.

Budgets are a ledger. The consumable budgets (``max_steps``, ``max_tool_calls``,
``max_tokens``) of a child are reserved out of its parent's remainder when it spawns
and what it did not use is refunded when it ends, so a whole tree can never spend more
than its root was given. ``max_seconds`` is a deadline (a child's can't outlast its
parent's), ``max_children`` counts direct children, ``tick_ms`` is a wake-up period.

Supervision is granted the same way (:class:`Supervision`, :func:`grant_supervision`): how
an agent supervises its children (strategy and restart intensity) is inherited by what it
spawns, and a spawn may tighten its intensity but never loosen it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any

from .errors import PolicyError

CONSUMABLE = ("max_steps", "max_tool_calls", "max_tokens")

#: The sender name of a person talking through the CLI; it may message any agent.
USER = "user"
#: The id of the run's root agent, the reconciler (:mod:`agentctl.reconcile.reconciler`).
PLAN_ROOT = "plan"
#: Ids that name the runtime's own parties, never a task or a spawned agent: ``user``
#: (the CLI's sender, which may message any agent) and ``plan`` (the run's root).
RESERVED_IDS = frozenset({USER, PLAN_ROOT})
#: The longest agent id a spawn may give.
MAX_ID_CHARS = 200


def reserved_id_error(agent_id: str) -> str | None:
    """Why ``agent_id`` may not name a task or a spawned agent, or None when it may.

    Shared by plan validation and the runtime's spawn, so both refuse the same ids.
    """
    if agent_id in RESERVED_IDS:
        return f"agent id {agent_id!r} is reserved (reserved: {', '.join(sorted(RESERVED_IDS))})"
    # Ids are shown in every view and line and typed back by the user (``send --to``):
    # a model must not name a child with nothing, a NUL byte, a newline, an invisible
    # character (a look-alike of another agent's id) or 100,000 characters.
    if not agent_id or len(agent_id) > MAX_ID_CHARS or not agent_id.isprintable() or agent_id.strip() != agent_id:
        shown = agent_id if len(agent_id) <= 40 else agent_id[:40] + "..."
        return (f"agent id {shown!r} is not a name: expected 1 to {MAX_ID_CHARS} printable characters, "
                "without spaces around them")
    return None
LIMITS = ("max_steps", "max_children", "max_seconds", "max_tool_calls", "max_tokens")


@dataclass(frozen=True, slots=True)
class Budget:
    """An agent's limits; ``None`` means unlimited (or, for ``tick_ms``, no tick)."""

    max_steps: int | None = None
    max_children: int | None = None
    max_seconds: float | None = None
    max_tool_calls: int | None = None
    max_tokens: int | None = None
    tick_ms: int | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> Budget:
        """Build from a plain mapping (unknown keys are the caller's to reject)."""
        if not data:
            return cls()
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (for events and checkpoints)."""
        return {name: getattr(self, name) for name in BUDGET_FIELDS}

    def overlay(self, other: Budget) -> Budget:
        """This budget with every field that ``other`` sets taken from ``other``."""
        changes = {f.name: getattr(other, f.name) for f in fields(other) if getattr(other, f.name) is not None}
        return replace(self, **changes)


UNLIMITED = Budget()
BUDGET_FIELDS = tuple(f.name for f in fields(Budget))


@dataclass(frozen=True, slots=True)
class Supervision:
    """How an agent supervises its children, as Erlang/OTP's supervisor flags.

    Past ``max_restarts`` restarts within ``restart_period`` seconds the agent gives up: it
    stops its children, fails, and its own supervisor decides (``agentctl.runtime.supervision``).
    ``None`` is unset: what a spawn asks for leaves it to be inherited; in a depth rule it sets
    no ceiling. A granted value (:attr:`Grant.supervise`) has every field set.

    Attributes:
        strategy: ``one_for_one``, ``one_for_all`` or ``rest_for_one``.
        max_restarts: restarts allowed within the period (0: none).
        restart_period: the sliding window, in seconds.
    """

    strategy: str | None = None
    max_restarts: int | None = None
    restart_period: float | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> Supervision:
        """Build from a plain mapping (a plan's ``supervise:``; unknown keys are the caller's to reject)."""
        if not data:
            return UNSET_SUPERVISION
        period = data.get("restart_period")
        return cls(strategy=data.get("strategy"), max_restarts=data.get("max_restarts"),
                   restart_period=None if period is None else float(period))

    def overlay(self, other: Supervision | None) -> Supervision:
        """This with every field that ``other`` sets taken from ``other``."""
        if other is None:
            return self
        return Supervision(*(getattr(self, n) if getattr(other, n) is None else getattr(other, n) for n in SUPERVISION_FIELDS))

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (events, snapshots)."""
        return {name: getattr(self, name) for name in SUPERVISION_FIELDS}


SUPERVISION_FIELDS = ("strategy", "max_restarts", "restart_period")
#: Nothing set (what a depth rule without ``supervise`` has).
UNSET_SUPERVISION = Supervision()
#: What an agent gets when nothing above it says otherwise: OTP's flags, a little looser.
DEFAULT_SUPERVISION = Supervision("one_for_one", 3, 5.0)


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """What agents at one depth may have.

    Attributes:
        models: models allowed at this depth (``None``: any).
        tools: the toolset at this depth (``None``: whatever the parent has).
        budget: a ceiling on every limit it sets.
        supervise: a ceiling on the restart intensity of agents at this depth (``max_restarts``
            at most, ``restart_period`` at least) and their strategy unless their spawn names one.
    """

    models: tuple[str, ...] | None = None
    tools: frozenset[str] | None = None
    budget: Budget = UNLIMITED
    supervise: Supervision = UNSET_SUPERVISION


_NO_RULE = PolicyRule()


@dataclass(frozen=True, slots=True)
class Policy:
    """Rules by depth, and the rank of models (largest first).

    The rule for depth ``d`` is the one for the largest listed depth ``<= d``, so a rule
    for depth 2 covers every depth below it too. A child's model may not rank above its
    parent's, and a model a child asks for must be ranked when its parent's is (or be
    listed for its depth): an unranked name cannot pass as a lower one. With named
    ``providers`` (a plan's ``providers:``), models are ``<provider>/<model>`` and ranked
    across providers by that whole name; a model naming no such provider is refused.
    """

    rules: Mapping[int, PolicyRule] = field(default_factory=dict)
    model_rank: tuple[str, ...] = ()
    providers: frozenset[str] = frozenset()
    #: Approval gates every agent gets (see :func:`gate_for`), beside those its spawn asks for.
    approve: frozenset[str] = frozenset()
    #: Seconds a held call waits for an answer (``None``: forever), then ``approve_default`` decides.
    approve_timeout: float | None = None
    #: ``deny`` or ``approve``: the answer a held call gets at its ``approve_timeout``.
    approve_default: str = "deny"

    def rule_for(self, depth: int) -> PolicyRule:
        """The rule that applies at ``depth``."""
        best: int | None = None
        for d in self.rules:
            if d <= depth and (best is None or d > best):
                best = d
        return self.rules[best] if best is not None else _NO_RULE


@dataclass(frozen=True, slots=True)
class Grant:
    """What an agent was given: its model, tools, budget and supervision (after policy)."""

    model: str | None
    tools: frozenset[str]
    budget: Budget
    #: Approval gates: tool patterns whose calls wait for a person's yes (see :func:`gate_for`).
    approve: frozenset[str] = frozenset()
    #: How it supervises its children (every field set), and the most its children may have.
    supervise: Supervision = DEFAULT_SUPERVISION

    def to_dict(self) -> dict[str, Any]:
        """As logged (``agent/spawned``) and kept in a parent's snapshot: sets sorted, budget
        and supervision as mappings."""
        return {"model": self.model, "tools": sorted(self.tools), "budget": self.budget.to_dict(),
                "approve": sorted(self.approve), "supervise": self.supervise.to_dict()}


def _rank(policy: Policy, model: str | None) -> int | None:
    if model is None or model not in policy.model_rank:
        return None
    return policy.model_rank.index(model)


def _check_rank(policy: Policy, rule: PolicyRule, parent: str | None, chosen: str | None, *, asked: bool) -> None:
    """Refuse a child's model ranked above its parent's. A model the child asks for must
    moreover be comparable when the plan ranks models and the parent has one: ranked (the
    parent's too), or the parent's own, or listed for the depth. An unlisted name (another
    spelling of a ranked one, a dated alias, a bigger model the plan never named) would
    otherwise pass as "not ranked"."""
    child_rank, parent_rank = _rank(policy, chosen), _rank(policy, parent)
    if child_rank is not None and parent_rank is not None and child_rank < parent_rank:
        raise PolicyError("model", f"model {chosen!r} ranks above the parent's {parent!r}")
    if not asked or not policy.model_rank or parent is None or chosen == parent:
        return
    if rule.models is not None and chosen in rule.models:
        return
    if parent_rank is None:
        raise PolicyError("model", f"model {chosen!r} cannot be ranked against the parent's {parent!r}, which "
                                   "policy.model_rank does not list: its children may ask only for its own model")
    if child_rank is None:
        raise PolicyError("model", f"model {chosen!r} is not in policy.model_rank ({', '.join(policy.model_rank)}): "
                                   f"a child may ask only for a model ranked no higher than its parent's {parent!r}")


def _cap(value: float | None, ceiling: float | None) -> float | None:
    if ceiling is None:
        return value
    if value is None:
        return ceiling
    return min(value, ceiling)


def grant_supervision(asked: Supervision | None, parent: Supervision | None, rule: Supervision, depth: int) -> Supervision:
    """How a child at ``depth`` supervises its own children, or ``PolicyError`` saying why not.

    Args:
        asked: what its spawn (a plan's ``supervise:``) asks for; unset fields are inherited.
        parent: its parent's supervision, inherited and a ceiling; ``None`` for a child of a
            root (a plan's task, the plan author's word): nothing inherited, no ceiling but
            the depth rule's, :data:`DEFAULT_SUPERVISION` fills in.
        rule: the depth rule's ``supervise``.

    Intensity only tightens downwards: ``max_restarts`` asked above the parent's or the
    rule's, or a ``restart_period`` below either, is refused (a spawn asking for more must
    not get it, as with budgets); inherited values are capped by the rule. The strategy
    decides nothing about intensity: asked, else the rule's, else inherited.
    """
    base = parent if parent is not None else DEFAULT_SUPERVISION
    if asked is None and rule is UNSET_SUPERVISION:
        return base  # the common spawn (asks nothing, no depth rule): no work per agent
    asked = asked or UNSET_SUPERVISION
    limits = ((parent, "its parent's"),) if parent is not None else ()
    for flags, whose in (*limits, (rule, f"the depth {depth} policy's")):
        if asked.max_restarts is not None and flags.max_restarts is not None and asked.max_restarts > flags.max_restarts:
            raise PolicyError("supervise", f"max_restarts {asked.max_restarts} exceeds {whose} {flags.max_restarts}")
        if (asked.restart_period is not None and flags.restart_period is not None
                and asked.restart_period < flags.restart_period):
            raise PolicyError("supervise", f"restart_period {asked.restart_period:g} is shorter than "
                                           f"{whose} {flags.restart_period:g}")
    restarts = asked.max_restarts
    if restarts is None:
        restarts = base.max_restarts if rule.max_restarts is None else min(base.max_restarts or 0, rule.max_restarts)
    period = asked.restart_period
    if period is None:
        period = max(base.restart_period or 0.0, rule.restart_period or 0.0)
    return Supervision(asked.strategy or rule.strategy or base.strategy, restarts, period)


def grant_child(
    *,
    policy: Policy,
    depth: int,
    parent: Grant | None,
    parent_remaining: Budget | None,
    model: str | None,
    tools: Iterable[str] | None,
    budget: Budget | None,
    approve: frozenset[str] = frozenset(),
    supervise: Supervision | None = None,
) -> Grant:
    """Decide what a child at ``depth`` gets, or raise ``PolicyError``.

    What the spawn leaves out (``None``) is inherited: the model from the parent, the
    tools from the depth rule (else the parent), each limit from the depth rule's
    ceiling, else half of what the parent has left of it (a deadline: all of it). What it asks for explicitly must fit: tools a
    subset of the parent's, a model allowed at the depth and not ranked above the
    parent's, every limit within the parent's remainder and the depth's ceiling.
    Approval gates only add up: the parent's, the policy's and those asked for (``approve``),
    so no child escapes a gate above it. Supervision: see :func:`grant_supervision` (a child
    at depth 0 or 1 has a root above it, whose supervision it neither inherits nor is capped by).
    """
    rule = policy.rule_for(depth)
    gates = (parent.approve if parent is not None else frozenset()) | policy.approve | approve
    above = parent.supervise if parent is not None and depth >= 2 else None
    if supervise is None and rule.supervise is UNSET_SUPERVISION:
        flags = above if above is not None else DEFAULT_SUPERVISION  # grant_supervision's answer, without the call
    else:
        flags = grant_supervision(supervise, above, rule.supervise, depth)
    if (
        parent is not None and model is None and tools is None and budget is None
        and (rule is _NO_RULE or rule == _NO_RULE) and parent.budget == UNLIMITED and gates == parent.approve
        and (flags is parent.supervise or flags == parent.supervise)
    ):
        # Nothing asked, nothing limited: share the parent's grant (spawning 100,000 agents
        # this way costs no policy work and no memory per agent).
        return parent
    chosen_model = model if model is not None else (parent.model if parent else None)
    if rule.models is not None and chosen_model not in rule.models:
        if model is not None:
            raise PolicyError("model", f"model {chosen_model!r} is not allowed at depth {depth} (allowed: {', '.join(rule.models)})")
        # An inherited model that the depth does not allow gives way to the depth's first choice.
        chosen_model = rule.models[0] if rule.models else None
    if model is not None and policy.providers and model.partition("/")[0] not in policy.providers:
        raise PolicyError("model", f"model {model!r} names no provider of the plan "
                                   f"(expected <provider>/<model>, providers: {', '.join(sorted(policy.providers))})")
    if parent is not None:
        _check_rank(policy, rule, parent.model, chosen_model, asked=model is not None)

    if tools is not None:
        chosen_tools = frozenset(tools)
        if parent is not None and not chosen_tools <= parent.tools:
            extra = ", ".join(sorted(chosen_tools - parent.tools))
            raise PolicyError("tools", f"tools not held by the parent: {extra}")
        if rule.tools is not None and not chosen_tools <= rule.tools:
            extra = ", ".join(sorted(chosen_tools - rule.tools))
            raise PolicyError("tools", f"tools not allowed at depth {depth}: {extra}")
    else:
        base = rule.tools if rule.tools is not None else (parent.tools if parent else frozenset())
        chosen_tools = base & parent.tools if parent is not None else base

    asked = budget or UNLIMITED
    values: dict[str, Any] = {}
    for name in LIMITS:
        want = getattr(asked, name)
        ceiling = getattr(rule.budget, name)
        room = getattr(parent_remaining, name) if parent_remaining is not None else None
        if want is not None:
            if not want >= 0:  # NaN too: it passes every comparison below
                raise PolicyError("budget", f"{name} {want!r} is not a number >= 0")
            if ceiling is not None and want > ceiling:
                raise PolicyError("budget", f"{name} {want} exceeds the depth {depth} ceiling {ceiling}")
            if room is not None and name != "max_children" and want > room:
                raise PolicyError("budget", f"{name} {want} exceeds what the parent has left ({room})")
            values[name] = want
        elif name == "max_children":
            values[name] = ceiling
        elif name in CONSUMABLE and room is not None:
            # Half, not all, of what is left: the parent keeps room to go on coordinating.
            values[name] = _cap(max(room // 2, 0), ceiling)
        else:
            values[name] = _cap(room, ceiling)
    values["tick_ms"] = asked.tick_ms if asked.tick_ms is not None else rule.budget.tick_ms
    return Grant(chosen_model, chosen_tools, Budget(**values), gates, flags)


def grant_spawn(
    *,
    policy: Policy,
    depth: int,
    agent_id: str | None,
    parent: Grant,
    parent_remaining: Budget | None,
    spawned_children: int,
    model: str | None,
    tools: frozenset[str] | None,
    budget: Budget | None,
    approve: frozenset[str] = frozenset(),
    supervise: Supervision | None = None,
) -> Grant:
    """What a spawn will be granted, or ``PolicyError`` saying why not: the one decision
    that the runtime's spawn, ``agentctl validate``, ``agentctl diff`` and the reconciler's
    preflight (:mod:`agentctl.reconcile.preflight`) all make.

    Args:
        agent_id: the new agent's id, checked against :data:`RESERVED_IDS`
            (``None``: trusted code starting the run's root under its reserved name).
        parent, parent_remaining, spawned_children: the parent's grant, what is left of
            its budget and how many children it has spawned so far.
        model, tools, budget: what the spawn asks for (``tools`` already expanded to names).
        approve: approval gates the spawn adds to those it inherits.
        supervise: the supervision the spawn asks for (unset fields inherited).
    """
    reserved = reserved_id_error(agent_id) if agent_id is not None else None
    if reserved is not None:
        raise PolicyError("id", reserved)
    most = parent.budget.max_children
    if most is not None and spawned_children >= most:
        raise PolicyError("max_children", f"the parent may spawn at most {most} children")
    return grant_child(policy=policy, depth=depth, parent=parent, parent_remaining=parent_remaining,
                       model=model, tools=tools, budget=budget, approve=approve, supervise=supervise)


# --- approval gates -------------------------------------------------------------------

#: What an approval gate looks like: a tool-name glob (``shell/run``, ``docker/*``,
#: ``mcp:*``), or a file tool's glob with a workspace path glob after a colon
#: (``fs/write:src/**``; relative, no ``..``). Also the plan schema's pattern.
GATE_PATTERN = (
    r"^(?:fs/[A-Za-z*?\[\]!-]+:(?!/)(?!\.\.(?:/|$))(?!.*/\.\.(?:/|$))[^\s:]+"
    r"|(?!fs/[^:]*:)(?:mcp:)?[A-Za-z0-9_.*?\[\]!-]+(?:/[A-Za-z0-9_.*?\[\]!-]+)*)$"
)
GATE_HINT = "a tool pattern ('shell/run', 'docker/*', 'mcp:*') or a file tool's with a path glob ('fs/write:src/**')"
#: Tools whose ``path`` argument a gate's path glob is matched against.
FS_TOOLS = "fs/"


def split_gate(gate: str) -> tuple[str, str | None]:
    """A gate's tool glob and its path glob (``None``: every path)."""
    if gate.startswith(FS_TOOLS) and ":" in gate:
        tool, _, path = gate.partition(":")
        return tool, path
    return gate, None


def gate_for(gates: Iterable[str], tool: str, path: Callable[[], str | None]) -> str | None:
    """The first gate (in sorted order) that holds a call of ``tool``, or None.

    Args:
        gates: the agent's gates (:attr:`Grant.approve`).
        tool: the tool called.
        path: gives the call's workspace path, normalised and relative (asked only for a gate
            with a path glob); ``None`` when it has none that can be resolved: such a call
            is held (in doubt, a person decides).
    """
    for gate in sorted(gates):
        tool_glob, path_glob = split_gate(gate)
        if not fnmatchcase(tool, tool_glob):
            continue
        if path_glob is None:
            return gate
        where = path()
        if where is None or _path_regex(path_glob).fullmatch(where):
            return gate
    return None


@lru_cache(maxsize=256)
def _path_regex(glob: str) -> re.Pattern[str]:
    """``**`` is any number of directories, ``*`` and ``?`` stay within one name."""
    out, i = [], 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(out), re.DOTALL)
