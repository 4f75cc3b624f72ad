"""Wire-format helpers shared by the HTTP LLM providers (Ollama, OpenAI-compatible).

Used by :mod:`agentctl.services.llm.ollama` and :mod:`agentctl.services.llm.openai`:

* :class:`ToolNames` — the reversible mapping between agentctl tool names such as
  ``fs/write`` and the ``[A-Za-z0-9_-]{1,64}`` names function-calling APIs accept;
* :func:`decode_arguments` — a model's tool-call arguments as a dict, or an error;
* :func:`text_content` — content made JSON-ready for the wire (values: ``plan.model.thaw``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from agentctl.frozen import thaw

__all__ = ["MAX_ARGUMENT_DEPTH", "ToolNames", "decode_arguments", "text_content"]

#: How deep a model's tool-call arguments may nest lists and objects.
MAX_ARGUMENT_DEPTH = 64

_WIRE_OK = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_WIRE_BAD = re.compile(r"[^A-Za-z0-9_-]")


class ToolNames:
    """Reversible, collision-safe mapping of agentctl tool names to wire names.

    ``fs/write`` becomes ``fs__write``; other characters outside ``[A-Za-z0-9_-]`` become
    ``_``; names longer than 64 characters are cut and given a hash suffix. Names that
    are already valid are kept as they are and win over mapped ones; a mapped name that
    collides gets a numeric suffix. The reverse lookup is exact, so the model's
    ``fs__write`` comes back as ``fs/write``.
    """

    def __init__(self, names: Iterable[str]) -> None:
        self._to_wire: dict[str, str] = {}
        self._from_wire: dict[str, str] = {}
        names = list(dict.fromkeys(names))
        for name in names:
            if _WIRE_OK.match(name):
                self._bind(name, name)
        for name in names:
            if name not in self._to_wire:
                self._bind(name, self._free(_mangle(name)))

    def _bind(self, name: str, wire: str) -> None:
        self._to_wire[name] = wire
        self._from_wire[wire] = name

    def _free(self, wire: str) -> str:
        candidate, n = wire, 2
        while candidate in self._from_wire:
            suffix = f"_{n}"
            candidate = wire[: 64 - len(suffix)] + suffix
            n += 1
        return candidate

    def to_wire(self, name: str) -> str:
        """The wire name of ``name`` (names outside the tool list are mangled the same way)."""
        return self._to_wire.get(name) or _mangle(name)

    def from_wire(self, wire: str) -> str:
        """The agentctl name of the model's ``wire`` name (unknown names come back stripped)."""
        # llama.cpp's legacy function_call names carry stray ':' and spaces.
        cleaned = wire.strip().rstrip(":").strip()
        if cleaned in self._from_wire:
            return self._from_wire[cleaned]
        return cleaned


def _mangle(name: str) -> str:
    wire = _WIRE_BAD.sub("_", name.replace("/", "__")) or "_"
    if len(wire) > 64:
        wire = wire[:55] + "_" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return wire


def decode_arguments(raw: Any) -> tuple[dict[str, Any], str | None]:
    """Tool-call arguments as a dict, or ``({}, error)`` when they are not a JSON object, or
    one nested deeper than :data:`MAX_ARGUMENT_DEPTH`."""
    if raw is None or raw == "":
        return {}, None
    if isinstance(raw, Mapping):
        value: Any = dict(raw)
    elif not isinstance(raw, str):
        return {}, f"tool arguments must be a JSON object, got {type(raw).__name__}"
    else:
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            shown = raw if len(raw) <= 120 else raw[:117] + "..."
            return {}, f"tool arguments are not valid JSON ({exc}): {shown}"
    if not isinstance(value, dict):
        return {}, f"tool arguments must be a JSON object, got {type(value).__name__}"
    if _too_deep(value, MAX_ARGUMENT_DEPTH):
        # Everything downstream (validation, redaction, the log) walks them recursively.
        return {}, f"tool arguments are nested deeper than {MAX_ARGUMENT_DEPTH} levels"
    return value, None


def _too_deep(value: Any, limit: int) -> bool:
    """Whether ``value`` holds lists or objects nested more than ``limit`` deep (iteratively)."""
    level = [value]
    for _ in range(limit):
        level = [v for item in level for v in (item.values() if isinstance(item, dict) else item)
                 if isinstance(v, (dict, list))]
        if not level:
            return False
    return True


def text_content(content: Any) -> str:
    """A message's content as the string the wire wants (``None`` becomes ``""``)."""
    if content is None:
        return ""
    return content if isinstance(content, str) else json.dumps(thaw(content))


def function_tools(tools: Iterable[Any], names: ToolNames) -> list[dict[str, Any]]:
    """``tools`` (``ToolSpec``s) in the function-calling format Ollama and OpenAI share."""
    return [
        {
            "type": "function",
            "function": {"name": names.to_wire(t.name), "description": t.description, "parameters": thaw(t.parameters)},
        }
        for t in tools
    ]
