"""agentctl: a runtime and command-line orchestrator for hierarchical LLM agents.

The public API is what ``__all__`` lists: what a program embedding the runtime (see the
README's library example), a plugin registering tools and a custom ``python`` agent use.
Every other module is internal and may change. The names are imported on first use
(:func:`__getattr__`), so ``import agentctl`` stays cheap for the command line; the
``TYPE_CHECKING`` imports below say the same to type checkers and editors, and
``tests/test_public_api.py`` keeps the two lists equal.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from . import actions as actions
    from .actions import Result as Result
    from .agents.plugin import keeps_state as keeps_state
    from .errors import ActionError as ActionError
    from .errors import AgentctlError as AgentctlError
    from .errors import BusError as BusError
    from .errors import CorruptLogError as CorruptLogError
    from .errors import LLMError as LLMError
    from .errors import LockError as LockError
    from .errors import LogError as LogError
    from .errors import PlanError as PlanError
    from .errors import PolicyError as PolicyError
    from .errors import ToolError as ToolError
    from .errors import UsageError as UsageError
    from .errors import WorkerError as WorkerError
    from .events.log import Durability as Durability
    from .events.log import EventLog as EventLog
    from .events.log import open_event_log as open_event_log
    from .events.reader import read_events as read_events
    from .plan.load import load_plan as load_plan
    from .plan.model import Plan as Plan
    from .policy import Budget as Budget
    from .policy import Policy as Policy
    from .runtime.runtime import Runtime as Runtime
    from .runtime.runtime import open_runtime as open_runtime
    from .runtime.spec import AgentSpec as AgentSpec
    from .runtime.spec import StepContext as StepContext
    from .runtime.tree import Exit as Exit
    from .services.bus import Message as Message
    from .services.llm.base import ChatReply as ChatReply
    from .services.llm.base import ChatRequest as ChatRequest
    from .services.llm.base import Provider as Provider
    from .services.llm.base import ToolCall as ToolCall
    from .services.llm.base import ToolSpec as ToolSpec
    from .services.llm.ollama import OllamaProvider as OllamaProvider
    from .services.llm.openai import OpenAIProvider as OpenAIProvider
    from .services.llm.scripted import ScriptedProvider as ScriptedProvider
    from .services.tools.builtins import default_registry as default_registry
    from .services.tools.registry import Tool as Tool
    from .services.tools.registry import ToolContext as ToolContext
    from .services.tools.registry import ToolRegistry as ToolRegistry
    from .services.workers import LocalWorkPlane as LocalWorkPlane

# Where each public name lives; a module's own name maps to the module.
_WHERE = {
    "actions": "agentctl.actions",
    "Result": "agentctl.actions",
    "keeps_state": "agentctl.agents.plugin",
    "ActionError": "agentctl.errors",
    "AgentctlError": "agentctl.errors",
    "BusError": "agentctl.errors",
    "CorruptLogError": "agentctl.errors",
    "LLMError": "agentctl.errors",
    "LockError": "agentctl.errors",
    "LogError": "agentctl.errors",
    "PlanError": "agentctl.errors",
    "PolicyError": "agentctl.errors",
    "ToolError": "agentctl.errors",
    "UsageError": "agentctl.errors",
    "WorkerError": "agentctl.errors",
    "Durability": "agentctl.events.log",
    "EventLog": "agentctl.events.log",
    "open_event_log": "agentctl.events.log",
    "read_events": "agentctl.events.reader",
    "load_plan": "agentctl.plan.load",
    "Plan": "agentctl.plan.model",
    "Budget": "agentctl.policy",
    "Policy": "agentctl.policy",
    "Runtime": "agentctl.runtime.runtime",
    "open_runtime": "agentctl.runtime.runtime",
    "AgentSpec": "agentctl.runtime.spec",
    "StepContext": "agentctl.runtime.spec",
    "Exit": "agentctl.runtime.tree",
    "Message": "agentctl.services.bus",
    "ChatReply": "agentctl.services.llm.base",
    "ChatRequest": "agentctl.services.llm.base",
    "Provider": "agentctl.services.llm.base",
    "ToolCall": "agentctl.services.llm.base",
    "ToolSpec": "agentctl.services.llm.base",
    "OllamaProvider": "agentctl.services.llm.ollama",
    "OpenAIProvider": "agentctl.services.llm.openai",
    "ScriptedProvider": "agentctl.services.llm.scripted",
    "Tool": "agentctl.services.tools.registry",
    "ToolContext": "agentctl.services.tools.registry",
    "ToolRegistry": "agentctl.services.tools.registry",
    "default_registry": "agentctl.services.tools.builtins",
    "LocalWorkPlane": "agentctl.services.workers",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    """Import a public name on first use (then it is an ordinary attribute)."""
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'agentctl' has no attribute {name!r}")
    module = importlib.import_module(where)
    value = module if where == f"agentctl.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
