"""Check plain plan data and build a :class:`~agentctl.plan.model.Plan`, or raise the first error.

Called by :mod:`agentctl.plan.load` after parsing YAML or EDN into plain dicts and lists
(plus, for YAML, a map from key path to line). Checking happens in two passes: the
shape pass walks the data with the type table of :mod:`agentctl.plan.schema` (types,
required keys, unknown keys with a did-you-mean), then the meaning pass checks what a
table can't say (what each agent kind needs, duplicate ids, dependencies, cycles).
Every error is a :class:`~agentctl.errors.PlanError` naming the file, the 1-based line
(when known) and the key path, e.g. ``tasks[2].budget.max_steps``.
"""

from __future__ import annotations

import difflib
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn, TypeVar

from ..errors import PlanError, UsageError
from ..frozen import FrozenDict, freeze
from ..policy import Budget, PolicyRule, Supervision
from . import schema as s
from .lines import LineMap, Path, format_path
from .model import Defaults, Executor, McpServer, Plan, PlanPolicy, Settings, Step, Task, ToolResources
from .providers import named_providers

T = TypeVar("T")


def describe_value(value: Any) -> str:
    """A value as error messages show it: ``string 'ten'``, ``integer 5``, ``list``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"string {shown!r}"
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, list):
        return "list"
    return type(value).__name__


def _suggest(word: object, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Checker:
    """Walks data against type descriptors; knows the file and lines to blame."""

    def __init__(self, file: str | None, lines: LineMap | None) -> None:
        self.file = file
        self.lines = lines

    def line(self, path: Path) -> int | None:
        """The line of ``path``, else of its nearest ancestor that has one."""
        return None if self.lines is None else self.lines.nearest(path)

    def item_lines(self, sequence: list[Any]) -> list[int] | None:
        """The lines of the items of ``sequence`` (a list of the data), when known."""
        return None if self.lines is None else self.lines.items(sequence)

    def fail(self, message: str, path: Path, *, expected: str | None = None, got: str | None = None,
             line: int | None = None) -> NoReturn:
        raise PlanError(message, file=self.file, line=line if line is not None else self.line(path),
                        path=format_path(path) or None, expected=expected, got=got)

    def wrong_type(self, t: s.Type, value: Any, path: Path) -> NoReturn:
        self.fail("wrong type", path, expected=t.describe(), got=describe_value(value))

    def check(self, t: s.Type, value: Any, path: Path) -> None:
        """Raise the first way ``value`` at ``path`` does not fit ``t``."""
        try:
            checker = _CHECKERS[type(t)]
        except KeyError:  # pragma: no cover - a new descriptor without a checker is a bug here
            raise UsageError(f"no checker for {t!r}") from None
        checker(self, t, value, path)

    def _check_any(self, t: s.AnyValue, value: Any, path: Path) -> None:
        return

    def _check_bool(self, t: s.Bool, value: Any, path: Path) -> None:
        if not isinstance(value, bool):
            self.wrong_type(t, value, path)

    def _check_enum(self, t: s.Enum, value: Any, path: Path) -> None:
        if not isinstance(value, str):
            self.wrong_type(t, value, path)
        if value not in t.values:
            self.fail(f"unknown value {value!r}{_suggest(value, t.values)}", path,
                      expected=t.describe(), got=describe_value(value))

    def _check_map(self, t: s.AnyMap, value: Any, path: Path) -> None:
        if not isinstance(value, Mapping):
            self.wrong_type(t, value, path)

    def _check_seq(self, t: s.Seq, value: Any, path: Path) -> None:
        if not isinstance(value, list):
            self.wrong_type(t, value, path)
        for i, item in enumerate(value):
            self.check(t.item, item, (*path, i))

    def _check_either(self, t: s.Either, value: Any, path: Path) -> None:
        self.check(t.long if isinstance(value, Mapping) else t.short, value, path)

    def _check_str(self, t: s.Str, value: Any, path: Path) -> None:
        if not isinstance(value, str):
            self.wrong_type(t, value, path)
        if t.pattern and not re.fullmatch(t.pattern, value):
            self.fail("invalid value", path, expected=t.describe(), got=describe_value(value))

    def _check_number(self, t: s.Int | s.Num, value: Any, path: Path) -> None:
        kinds = int if isinstance(t, s.Int) else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            self.wrong_type(t, value, path)
        low = t.minimum
        exclusive = isinstance(t, s.Num) and t.exclusive
        if low is not None and (value < low or (exclusive and value == low)):
            self.fail("value out of range", path, expected=t.describe(), got=describe_value(value))

    def _check_obj(self, t: s.Obj, value: Any, path: Path) -> None:
        if not isinstance(value, Mapping):
            self.wrong_type(t, value, path)
        for key, item in value.items():
            spec = t.get(key) if isinstance(key, str) else None
            if spec is None:
                self.fail(f"unknown key {key!r}{_suggest(key, t.names)}", (*path, key),
                          expected="one of " + ", ".join(t.names), got=describe_value(key))
            self.check(spec.type, item, (*path, key))
        for spec in t.fields:
            if spec.required and spec.name not in value:
                self.fail(f"missing required key {spec.name!r}", path, expected=spec.type.describe(), got="nothing")

    def _check_int_keyed(self, t: s.IntKeyed, value: Any, path: Path) -> None:
        if not isinstance(value, Mapping):
            self.wrong_type(t, value, path)
        for key, item in value.items():
            ok = (isinstance(key, int) and not isinstance(key, bool) and key >= 0) or (
                isinstance(key, str) and key.isdigit())
            if not ok:
                self.fail("invalid depth", (*path, key), expected="integer >= 0", got=describe_value(key))
            self.check(t.value, item, (*path, key))

    def _check_named(self, t: s.Named, value: Any, path: Path) -> None:
        if not isinstance(value, Mapping):
            self.wrong_type(t, value, path)
        for key, item in value.items():
            if not isinstance(key, str) or not re.fullmatch(t.pattern, key):
                self.fail(f"invalid {t.hint}", (*path, key), expected=f"{t.hint} matching {t.pattern}",
                          got=describe_value(key))
            self.check(t.value, item, (*path, key))

    def _check_steps(self, t: s.Steps, value: Any, path: Path) -> None:
        if not isinstance(value, list):
            self.wrong_type(t, value, path)
        for i, step in enumerate(value):
            here = (*path, i)
            if not isinstance(step, Mapping) or len(step) != 1:
                got = describe_value(step) if not isinstance(step, Mapping) else (
                    "mapping with keys " + ", ".join(repr(k) for k in step) if step else "empty mapping")
                self.fail("a step is a mapping with exactly one key, the op", here,
                          expected="{op: argument}", got=got)
            (op, arg), = step.items()
            if op not in s.STEP_OPS:
                self.fail(f"unknown step op {op!r}{_suggest(op, tuple(s.STEP_OPS))}", (*here, op),
                          expected="one of " + ", ".join(s.STEP_OPS), got=describe_value(op))
            self.check(s.STEP_OPS[op], arg, (*here, op))


#: The checker of each type descriptor (a table: plans check every value of a 10,000-task file).
_CHECKERS: dict[type, Callable[[_Checker, Any, Any, Path], None]] = {
    s.AnyValue: _Checker._check_any, s.Str: _Checker._check_str, s.Int: _Checker._check_number,
    s.Num: _Checker._check_number, s.Bool: _Checker._check_bool, s.Enum: _Checker._check_enum,
    s.AnyMap: _Checker._check_map, s.Seq: _Checker._check_seq, s.Obj: _Checker._check_obj,
    s.IntKeyed: _Checker._check_int_keyed, s.Named: _Checker._check_named, s.Either: _Checker._check_either,
    s.Steps: _Checker._check_steps,
}


def _tuple(value: list[Any] | None) -> tuple[Any, ...] | None:
    return None if value is None else tuple(value)


def _budget(value: Mapping[str, Any] | None) -> Budget | None:
    return None if value is None else Budget.from_mapping(value)


def _supervise(value: Mapping[str, Any] | None) -> Supervision | None:
    return None if value is None else Supervision.from_mapping(value)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


class _Builder:
    """Turns shape-checked data into model values, checking what the table can't say."""

    def __init__(self, checker: _Checker) -> None:
        self.c = checker

    def task(self, d: Mapping[str, Any], path: Path) -> Task:
        agent = d.get("agent", "script")
        needs = {"python": "step", "llm": "instructions", "script": "steps"}[agent]
        if needs not in d:
            self.c.fail(f"missing required key {needs!r}: agent {agent!r} needs it", path)
        for key, only in (("steps", "script"), ("step", "python")):
            if key in d and agent != only:
                self.c.fail(f"{key!r} only applies to agent {only!r}, this task is agent {agent!r}", (*path, key))
        topology = d.get("topology")
        return Task(
            id=d["id"], agent=agent, instructions=d.get("instructions"), model=d.get("model"),
            tools=_tuple(d.get("tools")), budget=_budget(d.get("budget")),
            depends_on=tuple(d.get("depends_on", ())), steps=self.steps(d.get("steps", []), (*path, "steps")),
            step=d.get("step"), restart=d.get("restart"), supervise=_supervise(d.get("supervise")), priority=int(d.get("priority", 0)),
            tool_timeout=_float(d.get("tool_timeout")), approve=tuple(d.get("approve", ())),
            on_interrupted=d.get("on_interrupted"),
            topology=None if topology is None else FrozenDict(topology), line=self.c.line(path),
        )

    def steps(self, items: list[Mapping[str, Any]], path: Path) -> tuple[Step, ...]:
        out = []
        lines = self.c.item_lines(items) or ()
        for i, item in enumerate(items):
            (op, arg), = item.items()
            line = lines[i] if i < len(lines) else self.c.line((*path, i))
            out.append(Step(op, self.step_arg(op, arg, (*path, i, op)), line=line))
        return tuple(out)

    def step_arg(self, op: str, arg: Any, path: Path) -> Any:
        # One shape per op (short forms expanded, defaults filled) so the runtime never guesses.
        if op == "sleep":
            return float(arg)
        if op == "send":
            return FrozenDict(to=arg["to"], kind=arg.get("kind", "chat"), body=freeze(arg.get("body")))
        if op == "spawn":
            return self.task(arg, path)
        if op == "lock":
            arg = {"path": arg} if isinstance(arg, str) else arg
            return FrozenDict(path=arg["path"], mode=arg.get("mode", "write"), timeout=float(arg.get("timeout", 0)))
        if op == "wait":
            arg = {"kind": arg} if isinstance(arg, str) else arg
            return FrozenDict(kind=arg["kind"], timeout=_float(arg.get("timeout")))
        if op == "call":
            return FrozenDict(tool=arg["tool"], args=freeze(arg.get("args") or {}))
        if op == "resolve":
            return FrozenDict(grant=arg["grant"], outcome=arg.get("outcome", "wait"))
        return freeze(arg)

    def policy(self, d: Mapping[str, Any] | None) -> PlanPolicy | None:
        if d is None:
            return None
        rules = []
        for depth, rule in (d.get("depth") or {}).items():
            tools = rule.get("tools")
            rules.append((int(depth), PolicyRule(
                models=_tuple(rule.get("models")), tools=None if tools is None else frozenset(tools),
                budget=Budget.from_mapping(rule.get("budget")),
                supervise=Supervision.from_mapping(rule.get("supervise")))))
        return PlanPolicy(model_rank=tuple(d.get("model_rank", ())), depth=tuple(sorted(rules, key=lambda r: r[0])),
                          conflicts=d.get("conflicts", "first_come"),
                          conflict_timeout=float(d.get("conflict_timeout", 10.0)),
                          approve=tuple(d.get("approve", ())), approve_timeout=_float(d.get("approve_timeout")),
                          approve_default=d.get("approve_default", "deny"))




def _executor(d: Mapping[str, Any]) -> Executor:
    tools = {
        name: ToolResources(num_cpus=float(r.get("num_cpus", 1.0)),
                            resources=FrozenDict({k: float(v) for k, v in (r.get("resources") or {}).items()}),
                            max_retries=r.get("max_retries"))
        for name, r in (d.get("tools") or {}).items()
    }
    return Executor(kind=d["kind"], address=d.get("address", "auto"), shared_workspace=bool(d.get("shared_workspace")),
                    tools=FrozenDict(tools))


def _check_opt_in(c: _Checker, settings: Mapping[str, Any], tasks: tuple[Task, ...], defaults: Defaults) -> None:
    named: list[tuple[str, Path]] = [(t, ("defaults", "tools", i)) for i, t in enumerate(defaults.tools or ())]

    def collect(task: Task, path: Path) -> None:
        named.extend((t, (*path, "tools", i)) for i, t in enumerate(task.tools or ()))
        for k, step in enumerate(task.steps):
            if step.op == "call":
                named.append((step.arg["tool"], (*path, "steps", k, "call", "tool")))
            elif step.op == "spawn":
                collect(step.arg, (*path, "steps", k, "spawn"))

    for i, task in enumerate(tasks):
        collect(task, ("tasks", i))
    for tool, path in named:
        for prefix, switch in s.OPT_IN.items():
            if tool.startswith(prefix) and not settings.get(switch):
                c.fail(f"{tool} needs settings.{switch}: true ({switch} tools are off by default)", path,
                       expected=f"settings.{switch}: true", got=f"settings.{switch} {'unset' if switch not in settings else 'false'}")


def _check_graph(c: _Checker, tasks: tuple[Task, ...]) -> None:
    seen: dict[str, int] = {}
    for i, task in enumerate(tasks):
        if task.id in seen:
            j = seen[task.id]
            first = f"tasks[{j}]" + (f" (line {tasks[j].line})" if tasks[j].line is not None else "")
            c.fail(f"duplicate task id {task.id!r}, already used by {first}", ("tasks", i, "id"))
        seen[task.id] = i
    ids = tuple(seen)
    for i, task in enumerate(tasks):
        for k, dep in enumerate(task.depends_on):
            if dep not in seen:
                c.fail(f"depends_on names unknown task {dep!r}{_suggest(dep, ids)}", ("tasks", i, "depends_on", k))
        for spawned, path in _spawns(task.steps, ("tasks", i, "steps")):
            if spawned.id in seen:
                c.fail(f"spawned child id {spawned.id!r} is already a task id", (*path, "id"))
    cycle = _find_cycle(tasks)
    if cycle:
        i = seen[cycle[0]]
        k = tasks[i].depends_on.index(cycle[1])
        c.fail("dependency cycle: " + " -> ".join(cycle), ("tasks", i, "depends_on", k))


def _spawns(steps: tuple[Step, ...], path: Path) -> list[tuple[Task, Path]]:
    out: list[tuple[Task, Path]] = []
    for i, step in enumerate(steps):
        if step.op == "spawn":
            out.append((step.arg, (*path, i, "spawn")))
            out.extend(_spawns(step.arg.steps, (*path, i, "spawn", "steps")))
    return out


def _find_cycle(tasks: tuple[Task, ...]) -> list[str] | None:
    """The first dependency cycle in file order, as ids ending where it started."""
    deps = {t.id: t.depends_on for t in tasks}
    done: set[str] = set()

    def visit(node: str, stack: list[str]) -> list[str] | None:
        if node in stack:
            return stack[stack.index(node):] + [node]
        if node in done:
            return None
        stack.append(node)
        for dep in deps.get(node, ()):
            found = visit(dep, stack)
            if found:
                return found
        stack.pop()
        done.add(node)
        return None

    for t in tasks:
        found = visit(t.id, [])
        if found:
            return found
    return None


def _mcp_servers(c: _Checker, data: Mapping[str, Any]) -> tuple[McpServer, ...]:
    out = []
    for name, d in data.items():
        path: Path = ("mcp", name)
        if ("command" in d) == ("url" in d):
            c.fail("an MCP server needs exactly one of 'command' (stdio) or 'url' (streamable HTTP)", path)
        if "env" in d and "url" in d:
            c.fail("'env' only applies to a stdio server (one with 'command')", (*path, "env"))
        command = tuple(d.get("command", ()))
        if "command" in d:
            if not command:
                c.fail("empty command", (*path, "command"), expected="[program, args...]", got="empty list")
            # 'python' is agentctl's own interpreter (see agentctl.services.mcp.stdio), so it always exists.
            if command[0] != "python" and shutil.which(command[0]) is None:
                c.fail(f"command not found: {command[0]!r}", (*path, "command"))
        out.append(McpServer(name=name, command=command, url=d.get("url"), env=FrozenDict(d.get("env") or {})))
    return tuple(out)


def _mcp_tool_names(tasks: tuple[Task, ...], defaults: Defaults) -> list[tuple[str, Path]]:
    """Every tool name a task, a spawned child, a ``call`` step or the defaults mention, with where."""
    out: list[tuple[str, Path]] = [(n, ("defaults", "tools", k)) for k, n in enumerate(defaults.tools or ())]

    def walk(task: Task, path: Path) -> None:
        out.extend((n, (*path, "tools", k)) for k, n in enumerate(task.tools or ()))
        for i, step in enumerate(task.steps):
            here = (*path, "steps", i, step.op)
            if step.op == "call":
                out.append((step.arg["tool"], (*here, "tool")))
            elif step.op == "spawn":
                walk(step.arg, here)

    for i, task in enumerate(tasks):
        walk(task, ("tasks", i))
    return out


def _check_mcp_refs(c: _Checker, servers: tuple[McpServer, ...], tasks: tuple[Task, ...], defaults: Defaults) -> None:
    declared = [m.name for m in servers]
    for name, path in _mcp_tool_names(tasks, defaults):
        if not name.startswith("mcp:"):
            continue
        server = name[4:].split("/", 1)[0]
        if server not in declared:
            known = ", ".join(declared) or "none declared"
            c.fail(f"unknown MCP server {server!r}{_suggest(server, declared)}; declare it under 'mcp:' "
                   f"(known: {known})", path, got=describe_value(name))


class _Found:
    """The errors found so far; checks that are independent of each other all run."""

    def __init__(self) -> None:
        self.errors: list[PlanError] = []

    def attempt(self, check: Callable[..., T], *args: Any) -> T | None:
        try:
            return check(*args)
        except PlanError as exc:
            self.errors.append(exc)
            return None

    def raise_any(self) -> None:
        """Raise the first error by line, carrying the others in ``more``."""
        if self.errors:
            ordered = sorted(self.errors, key=lambda e: e.line if e.line is not None else 0)
            first = ordered[0]
            first.more = tuple(ordered[1:])
            raise first


def validate_plan(data: Any, file: str | None = None, lines: LineMap | None = None) -> Plan:
    """Check plain plan data and build the :class:`Plan`, or raise the first :class:`PlanError`
    (by line) with every other problem found in the same pass in its ``more``.

    Args:
        data: the parsed file: dicts, lists and scalars.
        file: the file name, for messages and ``Plan.source``.
        lines: key path -> 1-based line (YAML); ``None`` when the syntax has no lines.

    Raises:
        PlanError: with ``file``, ``line``, ``path``, ``expected`` and ``got`` where known.
    """
    c = _Checker(file, lines)
    if not isinstance(data, Mapping):
        c.fail("a plan is a mapping with keys " + ", ".join(s.PLAN.names), (), expected="mapping",
               got=describe_value(data))
    found = _Found()
    raw_tasks = data.get("tasks")
    if isinstance(raw_tasks, list):
        # Each task on its own, so one bad task does not hide the next one's problems.
        for i, task in enumerate(raw_tasks):
            found.attempt(c.check, s.TASK, task, ("tasks", i))
        found.attempt(c.check, s.PLAN, {**data, "tasks": []}, ())
    else:
        found.attempt(c.check, s.PLAN, data, ())
    found.raise_any()
    b = _Builder(c)
    built = [found.attempt(b.task, t, ("tasks", i)) for i, t in enumerate(data["tasks"])]
    found.raise_any()
    tasks = tuple(t for t in built if t is not None)
    found.attempt(_check_graph, c, tasks)
    d = data.get("defaults") or {}
    defaults = Defaults(
        provider=d.get("provider"), model=d.get("model"), base_url=d.get("base_url"),
        budget=Budget.from_mapping(d.get("budget")), tools=_tuple(d.get("tools")),
        restart=d.get("restart", "transient"), supervise=_supervise(d.get("supervise")), on_interrupted=d.get("on_interrupted", "fail"),
        context_chars=d.get("context_chars"),
        llm_options=None if d.get("llm_options") is None else freeze(d["llm_options"]),
        stream=d.get("stream", True),
    )
    st = dict(data.get("settings") or {})
    if "restart_period" in st:
        st["restart_period"] = float(st["restart_period"])
    if "checkpoint_seconds" in st:
        st["checkpoint_seconds"] = float(st["checkpoint_seconds"])
    for key in ("plugins", "secrets"):
        if key in st:
            st[key] = tuple(st[key])
    if "tool_timeouts" in st:
        st["tool_timeouts"] = FrozenDict({k: float(v) for k, v in st["tool_timeouts"].items()})
    if "lock_wait" in st:
        st["lock_wait"] = float(st["lock_wait"])
    if "executor" in st:
        st["executor"] = _executor(st["executor"])
    providers = found.attempt(named_providers, data, file, lines) or ()
    servers = found.attempt(_mcp_servers, c, data.get("mcp") or {}) or ()
    found.attempt(_check_mcp_refs, c, servers, tasks, defaults)
    found.attempt(_check_opt_in, c, st, tasks, defaults)
    found.raise_any()
    return Plan(name=data["name"], tasks=tasks, defaults=defaults, policy=b.policy(data.get("policy")),
                settings=Settings(**st), mcp=servers, providers=providers, source=file)
