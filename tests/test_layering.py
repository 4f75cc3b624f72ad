"""Imports point one way, and private names stay in their module: every module of agentctl is
checked with the ast, imports inside functions and under ``TYPE_CHECKING`` included, against
the layer order written down in docs/architecture.md."""

from __future__ import annotations

import ast
from pathlib import Path

import agentctl

PACKAGE = Path(agentctl.__file__).parent

#: Top to bottom: a part may import the parts below it (and the leaves), never one above it.
ORDER = (
    "cli",        # wires everything: the only place that knows every part
    "reconcile",  # the plan's root agent: diffs plans, spawns task agents
    "agents",     # agent kinds (script, python, llm): step functions built from plan tasks
    "plan",       # plan files as frozen values: below here nothing knows plans exist
    "runtime",    # the supervisor tree, scheduler, action interpreter
    "services",   # bus, locks, worker pools, tools, LLM providers, MCP
    "events",     # the event log, its reader and the fold
)
#: Values and helpers every part may use; a leaf imports no other part but ``frozen`` and ``errors``.
LEAVES = (
    "policy",    # budgets and the depth policy
    "actions",   # what a step returns
    "executor",  # where tools run (settings.executor's values)
    "frozen",    # FrozenDict, freeze, thaw
    "redact",    # hides secrets in whatever leaves the process
    "errors",    # the exception tree
)
#: Parts held to less than their place in the order gives them: the plan model knows nothing
#: downstream of it (the runtime, services or the log), only the leaves.
NARROW = {"plan": set(LEAVES)}
#: Parts beside the order: views read events only (events are their one input).
SIDE = {"views": {"events", "frozen", "errors"}, "examples": set()}
#: ``agentctl/__init__.py`` is the public facade over everything, imported lazily.
FACADE = "agentctl"


def allowed(part: str) -> set[str]:
    """The parts ``part`` may import."""
    if part in SIDE:
        return SIDE[part] | {part}
    if part in LEAVES:
        return {part, "frozen", "errors"}
    if part in NARROW:
        return NARROW[part] | {part}
    below = set(ORDER[ORDER.index(part):]) | set(LEAVES)
    return below | ({"views", "examples"} if part == "cli" else set())


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str, root: Path) -> bool:
    where = root.parent.joinpath(*name.split("."))
    return where.with_suffix(".py").is_file() or (where / "__init__.py").is_file()


def imports(path: Path, root: Path) -> list[tuple[int, str, str | None]]:
    """(line, absolute module, name taken from it or None) of every import of the package in
    ``path``, at any depth."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[int, str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for a in node.names:
                sub = f"{module}.{a.name}"
                found.append((node.lineno, sub, None) if is_module(sub, root) else (node.lineno, module, a.name))
    return [(line, m, n) for line, m, n in found if m == root.name or m.startswith(root.name + ".")]


def imported(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import of the package in ``path``, at any depth."""
    return [(line, m) for line, m, _ in imports(path, root)]


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else FACADE


def violations(root: Path = PACKAGE) -> list[str]:
    """``file:line: a -> b`` for every import of a part that ``a`` may not import."""
    out = []
    for path in sorted(root.rglob("*.py")):
        here = part_of(module_name(path, root))
        if here == FACADE:
            continue
        for line, module in imported(path, root):
            there = part_of(module)
            if there != FACADE and there not in allowed(here):
                out.append(f"{path.relative_to(root.parent)}:{line}: {here} -> {there} ({module})")
            if there == FACADE and here != "cli":
                out.append(f"{path.relative_to(root.parent)}:{line}: {here} -> the facade ({module})")
    return out


def test_every_part_is_placed() -> None:
    parts = {part_of(module_name(p, PACKAGE)) for p in PACKAGE.rglob("*.py")} - {FACADE}
    assert parts <= set(ORDER) | set(LEAVES) | set(SIDE), parts - set(ORDER) - set(LEAVES) - set(SIDE)


def test_no_module_imports_upstream() -> None:
    assert violations() == []


def test_the_check_catches_an_upstream_import_inside_a_function(tmp_path: Path) -> None:
    root = tmp_path / "agentctl"
    for part in ("services", "runtime", "views"):
        (root / part).mkdir(parents=True)
        (root / part / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "runtime" / "ok.py").write_text("from ..services import bus\nfrom agentctl.errors import X\n")
    (root / "services" / "bad.py").write_text("def f():\n    from ..runtime import ok\n    return ok\n")
    (root / "views" / "bad.py").write_text("import agentctl.runtime.ok\n")
    (root / "plan").mkdir()
    (root / "plan" / "model.py").write_text("from ..services import bus\nfrom ..policy import Budget\n")
    (root / "policy.py").write_text("from .redact import Redactor\nfrom .frozen import thaw\nfrom .errors import PolicyError\n")
    assert violations(root) == [
        "agentctl/plan/model.py:1: plan -> services (agentctl.services)",
        "agentctl/policy.py:1: policy -> redact (agentctl.redact)",
        "agentctl/services/bad.py:2: services -> runtime (agentctl.runtime.ok)",
        "agentctl/views/bad.py:1: views -> runtime (agentctl.runtime.ok)",
    ]


def foreign_private_names(root: Path = PACKAGE) -> list[str]:
    """``file:line: .name`` for every ``obj._name`` (not ``self``/``cls``) whose ``_name`` the
    file does not define itself: a private name reached across modules."""
    out: list[tuple[str, int, str]] = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        defined: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                defined.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                defined.add(node.id)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                defined.add(node.value)  # __slots__ entries
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
                    and node.attr not in defined):
                out.append((str(path), node.lineno, f"{path.relative_to(root.parent)}:{node.lineno}: .{node.attr}"))
    return [text for _, _, text in sorted(out)]


#: The writing side of the event log: its modules, and the names the ``events`` package exports of it.
WRITER_MODULES = frozenset({"log", "writer", "syncer", "logfile"})
WRITER_NAMES = frozenset({"EventLog", "open_event_log"})


def log_openers(root: Path = PACKAGE) -> list[str]:
    """``file:line: module`` for every import of the event log's writing side outside ``events``
    and ``cli``: services and the runtime are handed an ``Emit``, views read events."""
    out = []
    for path in sorted(root.rglob("*.py")):
        if part_of(module_name(path, root)) in ("events", "cli", FACADE):
            continue
        for line, module, name in imports(path, root):
            parts = module.split(".")
            if parts[1:2] == ["events"] and (parts[2:3] and parts[2] in WRITER_MODULES
                                             or len(parts) == 2 and name in WRITER_NAMES):
                out.append(f"{path.relative_to(root.parent)}:{line}: {module}{'.' + name if name else ''}")
    return out


def test_only_the_cli_opens_the_event_log() -> None:
    assert log_openers() == []


def test_the_log_check_catches_a_service_or_view_that_opens_the_log(tmp_path: Path) -> None:
    root = tmp_path / "agentctl"
    for part in ("services", "views", "events", "cli"):
        (root / part).mkdir(parents=True)
        (root / part / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    for name in ("log", "emit", "reader"):
        (root / "events" / f"{name}.py").write_text("")
    (root / "services" / "bus.py").write_text("from ..events.emit import Emit\nfrom ..events import EventLog\n")
    (root / "views" / "live.py").write_text("from agentctl.events.reader import read\nimport agentctl.events.log\n")
    (root / "cli" / "session.py").write_text("from ..events import open_event_log\n")
    assert log_openers(root) == ["agentctl/services/bus.py:2: agentctl.events.EventLog",
                                 "agentctl/views/live.py:2: agentctl.events.log"]


def test_no_module_reaches_another_modules_private_names() -> None:
    assert foreign_private_names() == []


def test_the_private_name_check_catches_a_call_into_another_module(tmp_path: Path) -> None:
    root = tmp_path / "agentctl"
    root.mkdir()
    (root / "tree.py").write_text("class Tree:\n    def _spawn(self):\n        self._n = 1\n")
    (root / "interp.py").write_text("def run(rt, inbox):\n    rt._spawn()\n    return inbox._n\n")
    assert foreign_private_names(root) == ["agentctl/interp.py:2: ._spawn", "agentctl/interp.py:3: ._n"]


def runtime_holders(root: Path = PACKAGE) -> list[str]:
    """The runtime's own modules that import the ``Runtime`` facade (its parts get handles)."""
    return sorted(module_name(path, root) for path in (root / "runtime").rglob("*.py")
                  if path.name not in ("runtime.py", "__init__.py")
                  and any(m == f"{root.name}.runtime.runtime" for _, m in imported(path, root)))


def test_the_runtimes_parts_are_given_handles_not_the_runtime() -> None:
    # Even the bridge tools' side (agent_control) names only the calls it uses (a Protocol).
    assert runtime_holders() == []


def test_the_handle_check_catches_a_part_that_imports_the_runtime(tmp_path: Path) -> None:
    root = tmp_path / "agentctl"
    (root / "runtime").mkdir(parents=True)
    for name in ("__init__", "runtime", "agent_control"):
        (root / "runtime" / f"{name}.py").write_text("")
    (root / "runtime" / "interpreter.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .runtime import Runtime\n")
    assert runtime_holders(root) == ["agentctl.runtime.interpreter"]


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the modules of the package it imports (at any depth, ``TYPE_CHECKING`` too)."""
    graph = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    return {name: {m for _, m in imported(path, root) if m in graph and m != name} for name, path in graph.items()}


def cycles(root: Path = PACKAGE) -> list[list[str]]:
    """The import cycles of the package: every strongly connected set of more than one
    module (Tarjan's algorithm), each sorted, in order."""
    graph = import_graph(root)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            members = stack[stack.index(v):]
            del stack[stack.index(v):]
            if len(members) > 1:
                found.append(sorted(members))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_no_import_cycles() -> None:
    assert cycles() == []


def test_the_cycle_check_counts_imports_under_type_checking(tmp_path: Path) -> None:
    root = tmp_path / "agentctl"
    (root / "runtime").mkdir(parents=True)
    for name in ("__init__.py", "runtime/__init__.py", "runtime/leaf.py"):
        (root / name).write_text("")
    (root / "runtime" / "agent.py").write_text("from .recovery import Replay\nfrom . import leaf\n")
    (root / "runtime" / "recovery.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from agentctl.runtime.agent import Agent\n")
    (root / "runtime" / "tree.py").write_text("def f():\n    from .agent import Agent\n")
    assert cycles(root) == [["agentctl.runtime.agent", "agentctl.runtime.recovery"]]
