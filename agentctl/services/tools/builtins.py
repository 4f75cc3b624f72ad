"""The built-in tools in one registry: :func:`default_registry`.

Kept apart from :mod:`.registry` so that the registry imports no tool module (each tool
module imports the registry to register itself). Called by the CLI's run session, the
runtime (when given no registry) and programs embedding agentctl.
"""

from __future__ import annotations

from .bridge import register_bridge_tools
from .docker import register_docker_tools
from .fs import register_fs_tools
from .registry import ToolRegistry
from .shell import register_shell_tools

__all__ = ["default_registry"]


def default_registry() -> ToolRegistry:
    """A fresh registry holding the built-in ``fs/*``, ``shell/run``, ``agent/*`` and ``docker/*`` tools."""
    registry = ToolRegistry()
    register_fs_tools(registry)
    register_shell_tools(registry)
    register_bridge_tools(registry)
    register_docker_tools(registry)
    return registry
