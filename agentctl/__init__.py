"""agentctl: a runtime and command-line orchestrator for hierarchical LLM agents."""

__version__ = "0.1.0"
