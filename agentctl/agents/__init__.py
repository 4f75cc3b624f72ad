"""Agent kinds: step functions built from plan tasks (``script``, ``python``, ``llm``)."""

from .factory import spec_for_task as spec_for_task

__all__ = ["spec_for_task"]
