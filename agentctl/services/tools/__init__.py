"""Tools agents can call: the registry, schema derivation/validation and the built-ins.

Used by the work plane (``agentctl.services.workers``) and the runtime. Start from
:func:`default_registry` for the built-in ``fs/*`` and ``shell/run`` tools, and register
more with :meth:`ToolRegistry.tool`.
"""

from __future__ import annotations

from .builtins import default_registry
from .fs import register_fs_tools, resolve_in_workspace
from .registry import NAMED_TOOLSETS, Recover, Recovered, Tool, ToolContext, ToolRegistry, is_secret_key
from .schema import SchemaError, derive_schema, json_type_name, validate
from .shell import OUTPUT_CAP, register_shell_tools, shell_run

__all__ = [
    "NAMED_TOOLSETS",
    "OUTPUT_CAP",
    "Recover",
    "Recovered",
    "SchemaError",
    "Tool",
    "ToolContext",
    "ToolRegistry",
    "default_registry",
    "derive_schema",
    "is_secret_key",
    "json_type_name",
    "register_fs_tools",
    "register_shell_tools",
    "resolve_in_workspace",
    "shell_run",
    "validate",
]
