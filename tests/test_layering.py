"""Imports point one way, and private names stay in their module: every module of agentctl is
checked with the ast, imports inside functions and under ``TYPE_CHECKING`` included, against
the layer order written down in docs/architecture.md."""

from __future__ import annotations

import ast
from pathlib import Path

import agentctl

PACKAGE = Path(agentctl.__file__).parent

#: Top to bottom: a part may import the parts below it, never one above it.
ORDER = (
    "cli",        # wires everything: the only place that knows every part
    "reconcile",  # the plan's root agent: diffs plans, spawns task agents
    "agents",     # agent kinds (script, python, llm): step functions built from plan tasks
    "plan",       # plan files as frozen values: below here nothing knows plans exist
    "runtime",    # the supervisor tree, scheduler, action interpreter
    "services",   # bus, locks, worker pools, tools, LLM providers, MCP
    "events",     # the event log, its reader and the fold
    "policy",     # budgets and the depth policy
    "actions",    # what a step returns (leaf)
    "frozen",     # FrozenDict, freeze, thaw (leaf)
    "redact",     # hides secrets in whatever leaves the process (leaf)
    "errors",     # the exception tree (leaf)
)
#: Parts beside the order: views read events only (events are their one input).
SIDE = {"views": {"events", "frozen", "errors"}, "examples": set()}
#: ``agentctl/__init__.py`` is the public facade over everything, imported lazily.
FACADE = "agentctl"


def allowed(part: str) -> set[str]:
    if part in SIDE:
        return SIDE[part] | {part}
    below = set(ORDER[ORDER.index(part):])
    return below | ({"views", "examples"} if part == "cli" else set())


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str, root: Path) -> bool:
    where = root.parent.joinpath(*name.split("."))
    return where.with_suffix(".py").is_file() or (where / "__init__.py").is_file()


def imported(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import of the package in ``path``, at any depth."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found += [(node.lineno, f"{module}.{a.name}" if is_module(f"{module}.{a.name}", root) else module)
                      for a in node.names]
    return [(line, m) for line, m in found if m == root.name or m.startswith(root.name + ".")]


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
    assert parts <= set(ORDER) | set(SIDE), parts - set(ORDER) - set(SIDE)


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
    assert violations(root) == [
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


#: Import cycles kept on purpose, each with why (a new one fails the test).
KNOWN_CYCLES: dict[tuple[str, ...], str] = {
    ("agentctl.events.reducers", "agentctl.events.run_state"):
        "RunState.apply dispatches to the reducers, which name RunState only to type their argument",
}


def test_no_import_cycles() -> None:
    assert {tuple(c) for c in cycles()} == set(KNOWN_CYCLES)


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
