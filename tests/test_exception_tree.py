"""One exception tree: every exception agentctl defines or raises is an AgentctlError, and
errors.py's docstring draws every one of them."""

from __future__ import annotations

import ast
import builtins
import inspect
import re
from pathlib import Path

from package_modules import package_modules

import agentctl
from agentctl import errors
from agentctl.errors import AgentctlError

PACKAGE = Path(agentctl.__file__).parent
BUILTIN_EXCEPTIONS = {name for name, value in vars(builtins).items()
                      if isinstance(value, type) and issubclass(value, BaseException)}
# Builtin exceptions agentctl may raise, and why.
ALLOWED_BUILTIN_RAISES = {
    # The fsync helper process reports os.fsync's errno; the writer turns it into a LogError,
    # as it does for an fsync made in this process.
    ("agentctl/events/syncer.py", "OSError"),
    # Caught three lines below, with every other failed connect, and reported as an McpError.
    ("agentctl/services/mcp/supervisor.py", "TimeoutError"),
    # The module __getattr__ protocol: an unknown name must be an AttributeError.
    ("agentctl/__init__.py", "AttributeError"),
    # A base class's method that its subclasses override (the usual Python spelling).
    ("agentctl/plan/schema.py", "NotImplementedError"),
    ("agentctl/services/llm/http_provider.py", "NotImplementedError"),
}


def exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for name, module in package_modules().items():
        for value in vars(module).values():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == name:
                found[f"{name}.{value.__qualname__}"] = value
    return found


def test_every_exception_class_in_the_package_is_an_agentctl_error() -> None:
    classes = exception_classes()
    assert "agentctl.errors.PlanError" in classes and "agentctl.services.tools.schema.SchemaError" in classes
    outside = sorted(name for name, cls in classes.items() if not issubclass(cls, AgentctlError))
    assert outside == []


def test_the_docstring_of_errors_draws_every_public_exception() -> None:
    drawn = errors.__doc__ or ""
    missing = sorted(name for name, cls in exception_classes().items()
                     if not cls.__name__.startswith("_")
                     and not re.search(rf"(?m)^ +[│├└─ ]*{cls.__name__}\b", drawn))
    assert missing == []


def raised_builtins(package: Path = PACKAGE) -> set[tuple[str, str]]:
    """(file, name) of every ``raise Name`` or ``raise Name(...)`` of a builtin exception."""
    found = set()
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(target, ast.Name) and target.id in BUILTIN_EXCEPTIONS:
                found.add((path.relative_to(package.parent).as_posix(), target.id))
    return found


def test_no_builtin_exception_is_raised_except_the_listed_ones() -> None:
    assert raised_builtins() - ALLOWED_BUILTIN_RAISES == set()


def test_the_raise_check_finds_builtin_raises_in_nested_code(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "sub" / "m.py").write_text(
        "class Mine(Exception): ...\n"
        "def f(x):\n    if x:\n        raise Mine('fine')\n    def g():\n        raise KeyError\n"
        "    raise ValueError(f'{x}') from None\n")
    assert raised_builtins(package) == {("pkg/sub/m.py", "KeyError"), ("pkg/sub/m.py", "ValueError")}
