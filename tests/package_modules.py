"""Every module of the agentctl package, imported, for the tests that walk the package."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import agentctl

#: Optional extras the default install (``.[test]``) lacks; a module that needs one is
#: walked where it is installed (``agentctl[ray]``: ``.ci/run`` runs these tests again then).
OPTIONAL = frozenset({"ray"})


def package_modules() -> dict[str, ModuleType]:
    """``name -> module`` for agentctl and every module under it, but those whose optional
    extra is not installed."""
    found = {}
    for name in ["agentctl"] + [m.name for m in pkgutil.walk_packages(agentctl.__path__, "agentctl.")]:
        try:
            found[name] = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if (exc.name or "").partition(".")[0] not in OPTIONAL:
                raise
    return found
