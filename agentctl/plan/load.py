"""Read a plan file (YAML or EDN) into a validated :class:`~agentctl.plan.model.Plan`.

:func:`load_plan` is the single entry point the CLI and the reconciler call. Both
syntaxes are parsed into the same plain data (dicts, lists, scalars) and handed to
:func:`~agentctl.plan.validate.validate_plan`. YAML is composed node by node (safe
loader) so every key path keeps its 1-based line; EDN has no line numbers, except that
its syntax errors name the line they happened on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import edn_format
import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import PlanError
from .model import Plan
from .validate import Lines, format_path, validate_plan

YAML_SUFFIXES = (".yaml", ".yml")
EDN_SUFFIXES = (".edn",)
SUFFIXES = YAML_SUFFIXES + EDN_SUFFIXES


def load_plan(path: str | Path) -> Plan:
    """Read and validate the plan at ``path``; the syntax is chosen by its extension.

    Raises:
        PlanError: unsupported extension, unreadable file, syntax or validation error.
    """
    file = str(path)
    if Path(file).suffix.lower() not in SUFFIXES:
        raise PlanError(
            f"unsupported plan file extension {Path(file).suffix or '(none)'!r}; "
            f"supported: {', '.join(SUFFIXES)}", file=file)
    try:
        text = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"cannot read plan file: {exc}", file=file) from exc
    return parse_plan(text, filename=file)


def parse_plan(text: str, *, filename: str) -> Plan:
    """Parse and validate plan ``text``; ``filename``'s extension picks the syntax.

    Raises:
        PlanError: as for :func:`load_plan`.
    """
    suffix = Path(filename).suffix.lower()
    if suffix in YAML_SUFFIXES:
        data, lines = parse_yaml(text, filename)
        return validate_plan(data, filename, lines)
    if suffix in EDN_SUFFIXES:
        return validate_plan(parse_edn(text, filename), filename, None)
    raise PlanError(f"unsupported plan file extension {suffix or '(none)'!r}; supported: {', '.join(SUFFIXES)}",
                    file=filename)


def parse_yaml(text: str, filename: str) -> tuple[Any, Lines]:
    """YAML text -> (plain data, key path -> 1-based line).

    Raises:
        PlanError: a syntax error (with pyyaml's line and column), an empty file, or a
            key that appears twice in one mapping.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise PlanError("plan file is empty", file=filename, line=1)
        lines: dict[tuple[str | int, ...], int] = {(): node.start_mark.line + 1}
        return _from_node(loader, node, (), lines, filename), lines
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        line = mark.line + 1 if mark else None
        col = f" (column {mark.column + 1})" if mark else ""
        raise PlanError(f"YAML syntax error: {what}{col}", file=filename, line=line) from exc
    except yaml.YAMLError as exc:
        raise PlanError(f"YAML syntax error: {exc}", file=filename) from exc
    finally:
        loader.dispose()


def _from_node(loader: yaml.SafeLoader, node: Node, path: tuple[str | int, ...],
               lines: dict[tuple[str | int, ...], int], filename: str) -> Any:
    if isinstance(node, MappingNode):
        own = {id(k) for k, _ in node.value}
        loader.flatten_mapping(node)  # resolves '<<' merge keys the way the safe loader does
        out: dict[Any, Any] = {}
        own_keys: set[Any] = set()
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            here = (*path, key)
            line = key_node.start_mark.line + 1
            try:
                duplicate = key in out
            except TypeError:  # an unhashable key such as a list
                raise PlanError("a key must be a string", file=filename, line=line,
                                path=format_path(path) or None) from None
            # Merged-in keys come first and may be overridden; only a key written twice is an error.
            if duplicate and id(key_node) in own and key in own_keys:
                raise PlanError(f"duplicate key {key!r} (first at line {lines.get(here)})", file=filename,
                                line=line, path=format_path(here))
            if id(key_node) in own:
                own_keys.add(key)
            lines[here] = line
            out[key] = _from_node(loader, value_node, here, lines, filename)
        return out
    if isinstance(node, SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            items.append(_from_node(loader, item, (*path, i), lines, filename))
        return items
    assert isinstance(node, ScalarNode)
    return loader.construct_object(node, deep=True)


def parse_edn(text: str, filename: str) -> Any:
    """EDN text -> plain data: keyword keys become names with ``-`` -> ``_``.

    Raises:
        PlanError: a syntax error, or not exactly one top-level form.
    """
    try:
        forms = edn_format.loads_all(text)
    except Exception as exc:  # edn_format raises EDNDecodeError, ValueError, or ply errors
        raise PlanError(f"EDN syntax error: {_edn_reason(exc)}", file=filename, line=_edn_line(exc, text)) from exc
    if len(forms) != 1:
        raise PlanError(f"an EDN plan is exactly one map, found {len(forms)} top-level forms", file=filename)
    return _from_edn(forms[0])


def _edn_line(exc: Exception, text: str) -> int | None:
    # ply's own lineno is never advanced by edn_format's lexer, but lexpos is right.
    for arg in exc.args:
        pos = getattr(arg, "lexpos", None)
        if isinstance(pos, int):
            return text.count("\n", 0, pos) + 1
    return None


def _edn_reason(exc: Exception) -> str:
    for arg in exc.args:
        if hasattr(arg, "lexpos"):
            return f"unexpected {getattr(arg, 'value', arg)!r}"
    return str(exc) or type(exc).__name__


def _from_edn(value: Any, *, key: bool = False) -> Any:
    if isinstance(value, edn_format.Keyword):
        return value.name.replace("-", "_") if key else value.name
    if isinstance(value, edn_format.Symbol):
        return value.name
    if isinstance(value, edn_format.Char):
        return str(value)
    if isinstance(value, (dict, edn_format.ImmutableDict)):
        return {_from_edn(k, key=True): _from_edn(v) for k, v in value.items()}
    if isinstance(value, (frozenset, set)):
        # Sets have no order; sort so the same file always gives the same plan.
        return sorted((_from_edn(v) for v in value), key=lambda v: (type(v).__name__, repr(v)))
    if isinstance(value, (list, tuple, edn_format.ImmutableList)):
        return [_from_edn(v) for v in value]
    return value
