"""The public API: ``agentctl.__all__`` resolves, matches the typed re-exports, stays cheap to
import, and the README's library example runs on it (after trio's ``test_exports``)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import agentctl

ROOT = Path(__file__).resolve().parents[1]


def typed_reexports() -> dict[str, str]:
    """``name -> module`` of the ``from .x import Y as Y`` lines under ``if TYPE_CHECKING:``."""
    tree = ast.parse((ROOT / "agentctl" / "__init__.py").read_text())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.level == 1, ast.dump(imp)
                for alias in imp.names:
                    assert alias.asname == alias.name, f"{alias.name}: re-export as itself"
                    module = "agentctl" + (f".{imp.module}" if imp.module else "")
                    found[alias.name] = module if imp.module else f"{module}.{alias.name}"
    return found


def test_all_is_sorted_unique_and_equal_to_the_typed_reexports() -> None:
    assert agentctl.__all__ == sorted(set(agentctl.__all__))
    assert set(typed_reexports()) == set(agentctl.__all__)


def test_every_public_name_resolves_to_the_object_of_its_defining_module() -> None:
    import importlib

    for name, module in typed_reexports().items():
        value = getattr(agentctl, name)
        if module == f"agentctl.{name}":
            assert value is importlib.import_module(module)
        else:
            assert value is getattr(importlib.import_module(module), name), name
        assert name in dir(agentctl)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        agentctl.nope  # noqa: B018
    assert not hasattr(agentctl, "_WHEREVER")


def test_importing_agentctl_imports_none_of_its_parts() -> None:
    code = "import sys, agentctl; print(' '.join(sorted(m for m in sys.modules if m.startswith(('agentctl', 'httpx', 'anyio', 'msgspec')))))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == ["agentctl"]


def test_the_readme_library_example_runs_on_the_public_api(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## As a library"):]
    example = re.search(r"```python\n(.*?)```", section, re.S)
    assert example is not None
    code = example.group(1)
    assert set(re.findall(r"^from (\S+) import", code, re.M)) == {"agentctl"}  # nothing internal
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "ok" in done.stdout
    assert (tmp_path / "out" / "w.txt").read_text() == "hi"
    assert (tmp_path / "run" / "events.jsonl").read_text().count('"type":"agent/done"') == 1


def test_every_module_all_names_what_it_has() -> None:
    from package_modules import package_modules

    checked = 0
    for name, module in package_modules().items():
        names = getattr(module, "__all__", None)
        if names is None or module is agentctl:
            continue
        checked += 1
        assert len(set(names)) == len(names), name
        missing = [n for n in names if not hasattr(module, n)]
        assert missing == [], f"{name}.__all__ names what it does not have: {missing}"
    assert checked > 40
