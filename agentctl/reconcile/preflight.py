"""What a run will make of a plan before anything starts: the code it imports and what each spawn is granted.

Invoked from ``agentctl validate`` (every problem at once), ``agentctl diff`` (spawns the
run would refuse, shown as refused) and ``agentctl run`` (the code a plan names, imported
before the first agent starts). Every grant comes from :func:`agentctl.policy.grant_spawn`,
the function the runtime's own spawn calls, fed with what the run's root agent and its
budget ledger would hold: one decision, so ``validate`` and ``diff`` refuse exactly what
the run refuses.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from ..agents.factory import asked, asked_supervise, load_step
from ..errors import AgentctlError, PlanError, PolicyError
from ..plan.code import import_plan_module
from ..plan.lines import Path as KeyPath
from ..plan.lines import format_path
from ..plan.load import line_finder
from ..plan.model import Defaults, Plan, Settings, Task
from ..plan.schema import OPT_IN
from ..policy import CONSUMABLE, UNLIMITED, Budget, Grant, Policy, grant_spawn, split_gate

#: Expands the tool names a plan asks for (toolset names, globs) into tool names.
Toolset = Callable[[Iterable[str]], frozenset[str]]


def root_tools(settings: Settings, names: Iterable[str]) -> frozenset[str]:
    """The tools the run's root holds: every registered tool but the opt-in families left off."""
    off = tuple(prefix for prefix, switch in OPT_IN.items() if not getattr(settings, switch))
    return frozenset(n for n in names if not n.startswith(off)) if off else frozenset(names)


@dataclass
class _Parent:
    """A parent agent as the ledger sees it before anything ran: its grant and reservations."""

    grant: Grant
    reserved: dict[str, int] = field(default_factory=dict)
    spawned: int = 0
    steps: int = 0

    def remaining(self) -> Budget:
        b = self.grant.budget
        if b == UNLIMITED:
            return b
        used = {"max_steps": self.steps}
        left = {n: None if getattr(b, n) is None else getattr(b, n) - self.reserved.get(n, 0) - used.get(n, 0)
                for n in CONSUMABLE}
        children = None if b.max_children is None else b.max_children - self.spawned
        return Budget(max_children=children, max_seconds=b.max_seconds, tick_ms=b.tick_ms, **left)

    def spawn(self, policy: Policy, depth: int, task: Task, defaults: Defaults | None, toolset: Toolset) -> Grant:
        model, tools, budget = asked(task, defaults)
        supervise = asked_supervise(task, defaults)
        try:
            names = None if tools is None else toolset(tools)
        except AgentctlError as exc:
            raise PolicyError("tools", str(exc)) from None
        grant = grant_spawn(policy=policy, depth=depth, agent_id=task.id, parent=self.grant,
                            parent_remaining=self.remaining(), spawned_children=self.spawned,
                            model=model, tools=names, budget=budget, supervise=supervise)
        self.spawned += 1
        for name in CONSUMABLE:
            if getattr(self.grant.budget, name) is not None and getattr(grant.budget, name) is not None:
                self.reserved[name] = self.reserved.get(name, 0) + int(getattr(grant.budget, name))
        return grant


def _plan_root(plan: Plan, held: frozenset[str], steps: int = 1) -> tuple[Policy, _Parent]:
    """The run's root agent as its spawns see it, after ``steps`` of its own steps (the
    reconciler spawns from its first step on, and each step counts against its budget)."""
    policy = plan.runtime_policy()
    root = grant_spawn(policy=policy, depth=0, agent_id=None, parent=Grant(None, held, UNLIMITED),
                       parent_remaining=None, spawned_children=0, model=None, tools=None, budget=None)
    return policy, _Parent(root, steps=steps)


def predict_grants(plan: Plan, toolset: Toolset, held: frozenset[str],
                   running: Collection[str] = (), root_steps: int = 1) -> dict[str, Grant | PolicyError]:
    """What each top-level task would be granted when the reconciler spawns it, or why not.

    ``held`` are the root's tools (:func:`root_tools`); ``running`` are tasks already
    running, whose reservations come first; the rest are granted in plan order.
    ``root_steps`` is the step of the root's that spawns them (1 for a new run).
    """
    policy, parent = _plan_root(plan, held, root_steps)
    ordered = [t for t in plan.tasks if t.id in running] + [t for t in plan.tasks if t.id not in running]
    out: dict[str, Grant | PolicyError] = {}
    for task in ordered:
        try:
            out[task.id] = parent.spawn(policy, 1, task, plan.defaults, toolset)
        except PolicyError as exc:
            out[task.id] = exc
    return out


def _key_path(rule: str, task: Task, path: KeyPath, top_level: bool) -> KeyPath:
    """Where in the plan the asking that ``rule`` refused was written."""
    key = {"tools": "tools", "model": "model", "budget": "budget", "id": "id", "supervise": "supervise"}.get(rule)
    if key is None:
        return path
    if key != "id" and getattr(task, key) is None:
        return ("defaults", key) if top_level else path
    return (*path, key)


def check_grants(plan: Plan, toolset: Toolset, held: frozenset[str],
                 locate: Callable[[KeyPath], int | None]) -> list[PlanError]:
    """Every spawn the run would refuse, and every ``call`` of a tool the caller would not hold.

    Covers the top-level tasks and the children their scripts spawn (in step order, each
    against its parent's ledger). ``locate(key_path)`` gives a key path's line.
    """
    policy, root = _plan_root(plan, held)
    errors: list[PlanError] = []

    def fail(message: str, path: KeyPath, expected: str | None = None, got: str | None = None) -> None:
        errors.append(PlanError(message, file=plan.source, line=locate(path), path=format_path(path),
                                expected=expected, got=got))

    def visit(parent: _Parent, depth: int, task: Task, defaults: Defaults | None, path: KeyPath) -> None:
        try:
            grant = parent.spawn(policy, depth, task, defaults, toolset)
        except PolicyError as exc:
            fail(f"the run would refuse to start {task.id!r} ({exc.rule}): {exc}",
                 _key_path(exc.rule, task, path, defaults is not None))
            return
        me = _Parent(grant, steps=1)
        for i, step in enumerate(task.steps):
            here = (*path, "steps", i, step.op)
            if step.op == "spawn":
                visit(me, depth + 1, step.arg, None, here)
            elif step.op == "call":
                tool = step.arg["tool"]
                if not tool.startswith("mcp:") and tool not in grant.tools:
                    known = "it is not a tool" if _unknown(toolset, tool) else f"{task.id!r} does not hold it"
                    fail(f"call of {tool!r}: {known}", (*here, "tool"),
                         expected="a tool the task holds: " + (", ".join(sorted(grant.tools)) or "none"),
                         got=repr(tool))

    for i, task in enumerate(plan.tasks):
        visit(root, 1, task, plan.defaults, ("tasks", i))
    return errors


def _unknown(toolset: Toolset, tool: str) -> bool:
    try:
        toolset([tool])
    except AgentctlError:
        return True
    return False


def load_plugins(modules: tuple[str, ...], registry: Any, file: str | None = None,
                 locate: Callable[[KeyPath], int | None] | None = None) -> None:
    """Import each plugin module and let it register its tools; ``PlanError`` (with the
    plan ``file`` and the line ``locate`` gives) if one cannot be imported."""
    for i, name in enumerate(modules):
        try:
            register = import_plan_module(name).register
        except (ImportError, AttributeError) as exc:
            path: KeyPath = ("settings", "plugins", i)
            raise PlanError(f"cannot load plugin {name!r}: {exc}", file=file, path=format_path(path),
                            line=locate(path) if locate else None,
                            expected="a module with a register(registry) function", got=name) from None
        register(registry)


def check_code(plan: Plan, locate: Callable[[KeyPath], int | None]) -> list[PlanError]:
    """Import every ``step:`` function the plan names (plugins are loaded by the caller)."""
    errors: list[PlanError] = []
    for i, task in enumerate(plan.tasks):
        if task.step is None:
            continue
        try:
            load_step(task.step)
        except PlanError as exc:
            path: KeyPath = ("tasks", i, "step")
            errors.append(PlanError(exc.message, file=plan.source, line=locate(path), path=format_path(path),
                                    expected="'module:function' importable beside the plan or on sys.path",
                                    got=repr(task.step)))
    return errors


def check_gates(plan: Plan, names: Iterable[str], locate: Callable[[KeyPath], int | None]) -> list[PlanError]:
    """Every approval gate that could hold no call: a misspelt gate would let the call it
    meant through unasked. ``names`` are the run's tools (built-in and plugins); an ``mcp:``
    gate must name a declared server (or a glob of servers)."""
    known, servers = sorted(names), [server.name for server in plan.mcp]
    sites: list[tuple[KeyPath, str]] = [(("policy", "approve", i), g)
                                        for i, g in enumerate(plan.policy.approve if plan.policy else ())]

    def collect(task: Task, path: KeyPath) -> None:
        sites.extend(((*path, "approve", j), g) for j, g in enumerate(task.approve))
        for k, step in enumerate(task.steps):
            if step.op == "spawn":
                collect(step.arg, (*path, "steps", k, "spawn"))

    for i, task in enumerate(plan.tasks):
        collect(task, ("tasks", i))
    errors = []
    for path, gate in sites:
        tool, _ = split_gate(gate)
        server = tool.removeprefix("mcp:").partition("/")[0] if tool.startswith("mcp:") else None
        if server is not None:
            matched = any(c in server for c in "*?[") or server in servers
            expected = "mcp:<server>[/<tool>] with a server under mcp: (" + (", ".join(servers) or "none") + ")"
        else:
            matched = any(fnmatchcase(name, tool) for name in known)
            expected = "a pattern matching a tool of the run, such as " + ", ".join(known[:6]) + ", ..."
        if not matched:
            errors.append(PlanError(f"approval gate {gate!r} matches no tool: it would hold nothing", file=plan.source,
                                    line=locate(path), path=format_path(path), expected=expected, got=repr(gate)))
    return errors


def plan_toolset(expand: Toolset) -> Toolset:
    """``expand`` (a registry's toolset) for names a plan may hold before any MCP server is up:
    ``mcp:`` names are left as they are (whether their server is declared is checked when
    the plan is read)."""

    def toolset(names: Iterable[str]) -> frozenset[str]:
        names = list(names)
        return expand([n for n in names if not n.startswith("mcp:")])

    return toolset


def preflight(plan: Plan) -> list[PlanError]:
    """Every problem the run would meet with ``plan`` beyond reading it: plugins and ``step:``
    functions that do not import, tools that do not exist or would not be granted, spawns
    the policy or the ledger would refuse. Call it inside :func:`~agentctl.plan.code.plan_code`."""
    from ..services.tools import default_registry

    find = line_finder(plan.source)
    registry = default_registry()
    try:
        load_plugins(plan.settings.plugins, registry, plan.source, find)
    except PlanError as exc:
        return [exc, *check_code(plan, find)]
    held = root_tools(plan.settings, registry.names())
    return (check_code(plan, find) + check_gates(plan, registry.names(), find)
            + check_grants(plan, plan_toolset(registry.toolset), held, find))


def plan_grants(plan: Plan, running: Collection[str] = (), root_steps: int = 1) -> dict[str, Grant | PolicyError]:
    """:func:`predict_grants` with the tools the run would have (built-in and plugins).

    Call it inside :func:`~agentctl.plan.code.plan_code`.

    Raises:
        PlanError: a plugin that does not import.
    """
    from ..services.tools import default_registry

    registry = default_registry()
    load_plugins(plan.settings.plugins, registry, plan.source, line_finder(plan.source))
    held = root_tools(plan.settings, registry.names())
    return predict_grants(plan, plan_toolset(registry.toolset), held, running, root_steps)
