"""Plans: the YAML/EDN files that describe a run's top-level agents.

``load_plan(path)`` is the one entry point (the CLI and the reconciler call it); it
returns a frozen :class:`Plan` or raises :class:`~agentctl.errors.PlanError` naming the
file, line and key path. ``plan_json_schema()`` gives editors a JSON Schema of the file.
"""

from __future__ import annotations

from ..frozen import FrozenDict, freeze, thaw
from .load import SUFFIXES, load_plan, parse_plan
from .model import Defaults, Plan, PlanPolicy, Settings, Step, Task
from .schema import plan_json_schema
from .validate import format_path, validate_plan

__all__ = [
    "SUFFIXES",
    "Defaults",
    "FrozenDict",
    "Plan",
    "PlanPolicy",
    "Settings",
    "Step",
    "Task",
    "format_path",
    "freeze",
    "load_plan",
    "parse_plan",
    "plan_json_schema",
    "thaw",
    "validate_plan",
]
