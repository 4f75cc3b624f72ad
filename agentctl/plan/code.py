"""The plan's own Python code: the ``step:`` modules and ``settings.plugins`` it names,
imported from beside the plan file, and the paths that hold them.

Used by the CLI (:func:`plan_code` around everything that loads a plan's code, the run
included), by :func:`agentctl.agents.factory.load_step` and the plugin loader
(:func:`import_plan_module`), and by the run's wiring (:func:`code_paths`, which the file
tools refuse).

A plan is code: a module it names is looked up in the plan's directory first, as a script's
own modules are. Only such a module: the directory is not put on ``sys.path``. The plan
usually sits in the workspace, where agents write files, and any module first imported while
the directory was on the path would have come from a file an agent wrote: agentctl's own
lazy imports at every run and resume (``h2``, ``certifi``, the optional ``socksio``), or
what a plugin imports. Submodules of a package beside the plan come from that package, as
always.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

from .model import Plan

__all__ = ["code_paths", "import_plan_module", "plan_code", "plan_modules"]

#: The top-level module names being imported through :func:`import_plan_module` right now.
_ASKED: ContextVar[frozenset[str]] = ContextVar("agentctl_plan_modules", default=frozenset())


class _Beside(importlib.abc.MetaPathFinder):
    """Finds a top-level module the plan names in the plan's directory, and nothing else."""

    def __init__(self, where: str) -> None:
        self.where = where

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if path is not None or fullname not in _ASKED.get():
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, [self.where])


@contextmanager
def plan_code(plan_path: str | Path) -> Iterator[None]:
    """While the block runs, the modules the plan names (imported with
    :func:`import_plan_module`) are found beside ``plan_path`` ahead of everything else."""
    finder = _Beside(os.path.dirname(os.path.realpath(plan_path)))  # realpath: a symlink loop is the loader's to report
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        with suppress(ValueError):
            sys.meta_path.remove(finder)


def import_plan_module(name: str) -> ModuleType:
    """Import ``name``, a module the plan names (a ``step:`` module, a plugin); inside
    :func:`plan_code`, its top-level package is looked for beside the plan first."""
    token = _ASKED.set(frozenset({name.partition(".")[0]}))
    try:
        return importlib.import_module(name)
    finally:
        _ASKED.reset(token)


def code_paths(plan_path: str | Path, modules: Iterable[str]) -> tuple[Path, ...]:
    """Every path beside ``plan_path`` that :func:`plan_code` would import one of
    ``modules`` from (whether it exists or not): a package directory and a file of each
    importable suffix for each top-level name. An agent that could write one would run
    its code in agentctl at the next run, resume or ``validate``. With them, ``__pycache__``:
    an unchecked hash-based ``.pyc`` there is imported without a look at the source."""
    where = Path(os.path.realpath(plan_path)).parent
    suffixes = importlib.machinery.all_suffixes()
    tops = sorted({m.partition(".")[0] for m in modules if m})
    beside = tuple(p for top in tops for p in (where / top, *(where / (top + s) for s in suffixes)))
    return (*beside, where / "__pycache__") if beside else ()


def plan_modules(plan: Plan) -> tuple[str, ...]:
    """The modules ``plan`` names: its plugins and its tasks' ``step:`` modules."""
    steps = (task.step.partition(":")[0] for task in plan.tasks if task.step)
    return tuple(dict.fromkeys((*plan.settings.plugins, *steps)))
