"""Frozen values and back: :class:`FrozenDict`, :func:`freeze`, :func:`thaw`.

A leaf module (it imports nothing of agentctl), so every layer may use it: the plan model
keeps its mappings frozen and hashable; events, the LLM wire and MCP servers get plain JSON
values back with :func:`thaw`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["FrozenDict", "freeze", "thaw"]


class FrozenDict(Mapping[Any, Any]):
    """A read-only, hashable mapping; compares equal to a ``dict`` with the same items."""

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[Any, Any] | None = None, /, **items: Any) -> None:
        self._data: dict[Any, Any] = {**(data or {}), **items}
        self._hash: int | None = None

    def __getitem__(self, key: Any) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        # Plans compare whole on every save: between two FrozenDicts, compare the dicts directly.
        if isinstance(other, FrozenDict):
            return self._data == other._data
        return super().__eq__(other)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __repr__(self) -> str:
        return f"FrozenDict({self._data!r})"


def freeze(value: Any) -> Any:
    """``value`` with every dict made a :class:`FrozenDict` and every list a tuple."""
    if isinstance(value, Mapping):
        return FrozenDict({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The inverse of :func:`freeze`: plain JSON values (str-keyed dicts and lists) for events,
    the LLM wire and MCP servers."""
    if isinstance(value, Mapping):
        return {str(k): thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value
