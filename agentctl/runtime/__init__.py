"""The runtime: supervisor tree, scheduler and action interpreter."""

from .runtime import Runtime as Runtime
from .runtime import RuntimeStatistics as RuntimeStatistics
from .runtime import open_runtime as open_runtime
from .spec import AgentSpec as AgentSpec
from .spec import StepContext as StepContext
from .tree import Exit as Exit

__all__ = ["AgentSpec", "Exit", "Runtime", "RuntimeStatistics", "StepContext", "open_runtime"]
