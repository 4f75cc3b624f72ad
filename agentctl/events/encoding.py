"""An event as one line of ``events.jsonl``: orjson, with a fallback for what it rejects.

Used by :meth:`agentctl.events.log.EventLog.emit`, which tries ``orjson.dumps`` with
:data:`FAST_OPTIONS` and :func:`to_jsonable` inline (the hot path) and falls back to
:func:`encode_event` when orjson refuses the event.
"""

from __future__ import annotations

import dataclasses
from pathlib import PurePath
from typing import Any

import msgspec
import orjson

__all__ = ["FAST_OPTIONS", "encode_event", "to_jsonable"]

_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS
#: Options for the first attempt. Non-str keys are rare and make every dump ~10% slower,
#: so it goes without them; :func:`encode_event` allows them.
FAST_OPTIONS = orjson.OPT_APPEND_NEWLINE


def to_jsonable(value: Any) -> Any:
    """Turn what orjson cannot encode into something it can; never raises (orjson's ``default``)."""
    if isinstance(value, (set, frozenset)):
        try:
            return sorted(value)
        except TypeError:  # mixed types do not sort; order is then arbitrary
            return list(value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, msgspec.Struct):
        return msgspec.structs.asdict(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return repr(value)


def _safe_value(value: Any) -> Any:
    try:
        orjson.dumps(value, default=to_jsonable, option=_OPTIONS)
    except (TypeError, ValueError, RecursionError):
        return repr(value)
    return value


def encode_event(event: dict[str, Any]) -> bytes:
    """One event as a JSON line, falling back to ``repr`` of any field orjson rejects.

    orjson rejects a few things ``default`` cannot fix (ints over 64 bits, cycles, very deep
    nesting); the seq must still appear in the file, so the bad fields are repr'd instead.
    """
    try:
        return orjson.dumps(event, default=to_jsonable, option=_OPTIONS)
    except (TypeError, ValueError, RecursionError):
        return orjson.dumps(
            {str(k): _safe_value(v) for k, v in event.items()}, default=to_jsonable, option=_OPTIONS
        )
