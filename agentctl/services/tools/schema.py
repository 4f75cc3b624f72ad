"""JSON Schema for tool parameters: derive it from type hints, and validate arguments.

Called by :class:`~agentctl.services.tools.registry.ToolRegistry` when a tool is
registered (``derive_schema``) and before every call (``validate``). Only the subset of
JSON Schema that tool parameters need is supported: ``type`` (a name or a list of names;
``integer`` is not ``number`` and a bool is neither), ``properties``, ``required``,
``additionalProperties``, ``items``, ``enum``, ``minimum``/``maximum`` and ``default``.
No third-party validator, so no new dependency.
"""

from __future__ import annotations

import copy
import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Union

from agentctl.errors import ToolError, UsageError

__all__ = ["SchemaError", "derive_schema", "json_type_name", "validate"]


class SchemaError(ToolError, ValueError):
    """A value that does not match its schema.

    Attributes:
        path: where in the value, e.g. ``arguments.files[2].path``.
        problem: what is wrong, e.g. ``expected string, got integer``.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


_SIMPLE: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_NONE_TYPES = (type(None), None)


def json_type_name(value: Any) -> str:
    """The JSON type of a Python value (``integer`` and ``number`` kept apart)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    return type(value).__name__


# ---------------------------------------------------------------- derivation


def type_schema(hint: Any) -> dict[str, Any]:
    """The JSON Schema for one Python type hint.

    Raises:
        TypeError: for a hint outside the supported set.
    """
    if hint is inspect.Parameter.empty or hint is Any:
        return {}
    if hint in _SIMPLE:
        return {"type": _SIMPLE[hint]}
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        return type_schema(args[0])
    if origin is Literal:
        schema: dict[str, Any] = {"enum": list(args)}
        kinds = {json_type_name(a) for a in args}
        if len(kinds) == 1:
            schema["type"] = kinds.pop()
        return schema
    if origin in (Union, types.UnionType):
        return _union_schema(args)
    if hint in (list, tuple, set, frozenset) or origin in (list, tuple, set, frozenset, Sequence):
        out: dict[str, Any] = {"type": "array"}
        if args:
            item = args[0]
            if origin is tuple and len(args) > 1 and args[1] is not Ellipsis:
                item = Any  # heterogeneous tuples: no per-position schema in our subset
            items = type_schema(item)
            if items:
                out["items"] = items
        return out
    if hint in (dict, Mapping) or origin in (dict, Mapping):
        return {"type": "object"}
    raise UsageError(f"unsupported parameter type {hint!r}")


def _union_schema(args: tuple[Any, ...]) -> dict[str, Any]:
    members = [a for a in args if a not in _NONE_TYPES]
    nullable = len(members) != len(args)
    if len(members) == 1:
        schema = type_schema(members[0])
    else:
        # A union of plain types becomes a list of type names; anything richer is left open.
        parts = [type_schema(m) for m in members]
        names = [p.get("type") for p in parts]
        if all(isinstance(n, str) and set(p) == {"type"} for n, p in zip(names, parts, strict=True)):
            schema = {"type": names}
        else:
            schema = {}
    if nullable and "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        schema = {**schema, "type": [*kinds, "null"]}
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
    return schema


def derive_schema(fn: Callable[..., Any], *, skip_ctx: bool = True) -> dict[str, Any]:
    """An object schema for ``fn``'s parameters, from its type hints.

    A first parameter named ``ctx`` is injected by the registry and left out. Parameters
    with defaults are optional (their JSON-able defaults are recorded as ``default``).
    Unknown keys are refused (``additionalProperties: false``).

    Raises:
        TypeError: for ``*args``/``**kwargs`` or an unsupported type hint.
    """
    sig = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # unresolvable forward refs: fall back to the raw annotations
        hints = {}
    properties: dict[str, Any] = {}
    required: list[str] = []
    params = list(sig.parameters.values())
    if skip_ctx and params and params[0].name == "ctx":
        params = params[1:]
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise UsageError(f"{getattr(fn, '__name__', fn)}: *args/**kwargs cannot be tool parameters")
        if p.kind is p.POSITIONAL_ONLY:
            raise UsageError(f"{getattr(fn, '__name__', fn)}: positional-only parameter {p.name!r}")
        prop = dict(type_schema(hints.get(p.name, p.annotation)))
        if p.default is p.empty:
            required.append(p.name)
        elif _jsonable(p.default):
            prop["default"] = copy.deepcopy(p.default)
        properties[p.name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


def _jsonable(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_jsonable(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _jsonable(v) for k, v in value.items())
    return False


# ---------------------------------------------------------------- validation


def validate(schema: Mapping[str, Any], value: Any, path: str = "arguments") -> Any:
    """Check ``value`` against ``schema`` and return it with object defaults filled in.

    Integral floats (``3.0``) are accepted for ``integer`` and returned as ``int``,
    because models often send them that way.

    Raises:
        SchemaError: at the first mismatch, naming the key path and expected vs got.
    """
    value = _check_type(schema, value, path)
    if "enum" in schema and value not in list(schema["enum"]):
        choices = ", ".join(repr(c) for c in schema["enum"])
        raise SchemaError(path, f"expected one of {choices}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        # Not JSON, but Python's json reads NaN and Infinity (and 1e400 as inf): NaN passes
        # every comparison with a minimum or a parent's remaining budget.
        raise SchemaError(path, f"expected a finite number, got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise SchemaError(path, f"expected >= {schema['minimum']}, got {value!r}")
        if "maximum" in schema and value > schema["maximum"]:
            raise SchemaError(path, f"expected <= {schema['maximum']}, got {value!r}")
    if isinstance(value, Mapping) and _allows(schema, "object"):
        return _validate_object(schema, value, path)
    if isinstance(value, (list, tuple)) and _allows(schema, "array") and "items" in schema:
        return [validate(schema["items"], item, f"{path}[{i}]") for i, item in enumerate(value)]
    return value


def _allows(schema: Mapping[str, Any], kind: str) -> bool:
    t = schema.get("type")
    return t is None or t == kind or (isinstance(t, list) and kind in t)


def _check_type(schema: Mapping[str, Any], value: Any, path: str) -> Any:
    t = schema.get("type")
    if t is None:
        return value
    kinds = t if isinstance(t, list) else [t]
    got = json_type_name(value)
    if got in kinds:
        return value
    if got == "integer" and "number" in kinds:
        return value
    if got == "number" and "integer" in kinds and float(value).is_integer():
        return int(value)
    expected = " or ".join(kinds)
    raise SchemaError(path, f"expected {expected}, got {got}")


def _validate_object(schema: Mapping[str, Any], value: Mapping[str, Any], path: str) -> dict[str, Any]:
    props: Mapping[str, Any] = schema.get("properties", {})
    for key in schema.get("required", ()):
        if key not in value:
            raise SchemaError(f"{path}.{key}", "missing required argument")
    extra = schema.get("additionalProperties", True)
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise SchemaError(path, f"expected string keys, got {json_type_name(key)}")
        if key in props:
            out[key] = validate(props[key], item, f"{path}.{key}")
        elif extra is False:
            allowed = ", ".join(sorted(props)) or "none"
            raise SchemaError(f"{path}.{key}", f"unknown argument (allowed: {allowed})")
        elif isinstance(extra, Mapping):
            out[key] = validate(extra, item, f"{path}.{key}")
        else:
            out[key] = item
    for key, prop in props.items():
        if key not in out and isinstance(prop, Mapping) and "default" in prop:
            out[key] = copy.deepcopy(prop["default"])
    return out
