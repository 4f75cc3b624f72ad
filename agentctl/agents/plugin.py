"""How a ``python`` plugin step declares that its state may be kept in checkpoint snapshots.

Used by plugin authors (``agentctl.keeps_state``, a decorator on the step function) and read
by :mod:`agentctl.agents.factory` when it builds the task's spec. A step function without
it is replayed from its first step on every resume: its ``ctx.state`` is arbitrary Python
that agentctl cannot keep on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from ..errors import UsageError
from ..runtime.spec import StateCodec

F = TypeVar("F", bound=Callable[..., Any])

_ATTR = "__agentctl_state__"


def keeps_state(
    version: str,
    *,
    state: Any = None,
    encode: Callable[[dict[str, Any]], Any] | None = None,
    decode: Callable[[Any], dict[str, Any]] | None = None,
) -> Callable[[F], F]:
    """Let checkpoints keep the decorated step function's ``ctx.state`` (see docs/durability.md).

    Args:
        version: names this version of the step function: a snapshot taken of another
            version (or another function) is not restored; the agent is replayed from its
            first step instead, with one warning. Change it whenever the state's meaning
            or the step's logic changes.
        state: a type msgspec converts the state's JSON form back to (a ``TypedDict``, say,
            whose fields may be ``msgspec.Struct`` values); it must give a dict. Without it
            and without ``encode``/``decode``, the state must be plain JSON data.
        encode, decode: the state to JSON-able data and back, for anything else (both or
            neither; ``decode`` may raise on data it does not recognise).

    Raises:
        UsageError: only one of ``encode`` and ``decode``, or ``state`` beside them.
    """
    if (encode is None) != (decode is None) or (state is not None and encode is not None):
        raise UsageError("keeps_state takes state=, or encode= and decode= together, or neither")
    if encode is None or decode is None:
        encode, decode = msgspec.to_builtins, (dict if state is None else _converter(state))

    def mark(fn: F) -> F:
        tag = f"python/{version}:{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"
        setattr(fn, _ATTR, StateCodec(tag, encode, decode))
        return fn

    return mark


def state_codec(fn: Callable[..., Any]) -> StateCodec | None:
    """How ``fn`` declared its state is kept (:func:`keeps_state`), or None."""
    codec = getattr(fn, _ATTR, None)
    return codec if isinstance(codec, StateCodec) else None


def _converter(kind: Any) -> Callable[[Any], dict[str, Any]]:
    def decode(data: Any) -> dict[str, Any]:
        value = msgspec.convert(data, kind)
        return value if isinstance(value, dict) else msgspec.structs.asdict(value)

    return decode
