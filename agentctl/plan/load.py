"""Read a plan file (YAML or EDN) into a validated :class:`~agentctl.plan.model.Plan`.

:func:`load_plan` is the single entry point the CLI and the reconciler call. Both
syntaxes are parsed into the same plain data (dicts, lists, scalars) and handed to
:func:`~agentctl.plan.validate.validate_plan`. YAML is read from libyaml's event stream
(:mod:`agentctl.plan.yaml_reader`) so every key path keeps its 1-based line; EDN has no
line numbers, except that its syntax and nesting errors name the line they happened on.
Both stay within the limits of :mod:`agentctl.plan.limits` (size, depth, aliases).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import edn_format

from ..errors import PlanError
from .limits import MAX_BYTES, check_edn_depth, check_size
from .lines import LineMap
from .lines import Path as KeyPath
from .model import Plan
from .validate import validate_plan
from .yaml_reader import read_yaml

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
    return parse_plan(read_plan_text(file), filename=file)


def read_plan_text(path: str | Path) -> str:
    """The text of the plan file at ``path``, read only up to the size limit.

    Raises:
        PlanError: unreadable, not UTF-8, or larger than :data:`~agentctl.plan.limits.MAX_BYTES`.
    """
    file = str(path)
    try:
        # O_NONBLOCK: a FIFO in the plan's place must not hang the open until a writer comes.
        with open(os.open(file, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
            kind = os.fstat(f.fileno()).st_mode
            if not stat.S_ISREG(kind):
                raise PlanError(f"cannot read plan file: not a regular file but a {_file_kind(kind)}", file=file)
            data = f.read(MAX_BYTES + 1)
            check_size(len(data) if len(data) <= MAX_BYTES else os.fstat(f.fileno()).st_size, file)
        return data.decode("utf-8")
    except OSError as exc:
        raise PlanError(f"cannot read plan file: {(exc.strerror or str(exc)).lower()}", file=file) from exc
    except UnicodeDecodeError as exc:
        raise PlanError(f"cannot read plan file: {exc}", file=file) from exc


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"


def line_finder(file: str | None, text: str | None = None) -> Callable[[KeyPath], int | None]:
    """A function giving the line of a key path in the YAML plan ``file`` (None where
    unknown). ``text`` (else the file) is parsed again on the first call only: error
    paths use it, so a plan that loads cleanly is parsed once."""
    lines: list[LineMap | None] = []

    def find(path: KeyPath) -> int | None:
        if not lines:
            try:
                yaml_file = file is not None and Path(file).suffix.lower() in YAML_SUFFIXES
                lines.append(parse_yaml(text if text is not None else read_plan_text(file), file)[1]
                             if file and yaml_file else None)
            except PlanError:
                lines.append(None)
        found = lines[0]
        return None if found is None else found.nearest(path)

    return find


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


def parse_yaml(text: str, filename: str) -> tuple[Any, LineMap]:
    """YAML text -> (plain data, key path -> 1-based line); see :mod:`agentctl.plan.yaml_reader`.

    Raises:
        PlanError: a syntax error (with the parser's line and column), an empty file, a
            key that appears twice in one mapping, or a limit of :mod:`agentctl.plan.limits`.
    """
    check_size(len(text), filename)
    return read_yaml(text, filename)


def parse_edn(text: str, filename: str) -> Any:
    """EDN text -> plain data: keyword keys become names with ``-`` -> ``_``.

    Raises:
        PlanError: a syntax error, or not exactly one top-level form.
    """
    check_size(len(text), filename)
    check_edn_depth(text, filename)
    try:
        forms = edn_format.loads_all(text)
    except Exception as exc:  # edn_format raises EDNDecodeError, ValueError, or ply errors
        raise PlanError(f"EDN syntax error: {_edn_reason(exc)}", file=filename, line=_edn_line(exc, text)) from exc
    if len(forms) != 1:
        raise PlanError(f"an EDN plan is exactly one map, found {len(forms)} top-level forms", file=filename)
    return _from_edn(forms[0], filename)


def _edn_line(exc: Exception, text: str) -> int | None:
    # ply's own lineno is never advanced by edn_format's lexer, but lexpos is right; the
    # lexer's own errors carry it only in their message.
    for arg in exc.args:
        pos = getattr(arg, "lexpos", None)
        if isinstance(pos, int):
            return text.count("\n", 0, pos) + 1
    found = re.search(r" with lexpos (\d+)", str(exc))
    return text.count("\n", 0, int(found[1])) + 1 if found else None


def _edn_reason(exc: Exception) -> str:
    for arg in exc.args:
        if hasattr(arg, "lexpos"):
            return f"unexpected {getattr(arg, 'value', arg)!r}"
    # edn_format quotes the text around the error, newlines and all: the line number says where.
    reason = str(exc).partition(" in the area of ")[0].partition(" with lexpos ")[0] or type(exc).__name__
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in reason)


def _from_edn(value: Any, filename: str, *, key: bool = False) -> Any:
    if key and isinstance(value, (dict, edn_format.ImmutableDict, list, tuple, edn_format.ImmutableList,
                                  frozenset, set)):
        raise PlanError(f"wrong map key (expected a keyword, string or number, got {_edn_kind(value)} "
                        f"{edn_format.dumps(value)[:40]})", file=filename)
    if isinstance(value, edn_format.Keyword):
        return value.name.replace("-", "_") if key else value.name
    if isinstance(value, edn_format.Symbol):
        return value.name
    if isinstance(value, edn_format.Char):
        return str(value)
    if isinstance(value, (dict, edn_format.ImmutableDict)):
        return {_from_edn(k, filename, key=True): _from_edn(v, filename) for k, v in value.items()}
    if isinstance(value, (frozenset, set)):
        # Sets have no order; sort so the same file always gives the same plan.
        return sorted((_from_edn(v, filename) for v in value), key=lambda v: (type(v).__name__, repr(v)))
    if isinstance(value, (list, tuple, edn_format.ImmutableList)):
        return [_from_edn(v, filename) for v in value]
    return value


def _edn_kind(value: Any) -> str:
    if isinstance(value, (frozenset, set)):
        return "set"
    return "map" if isinstance(value, (dict, edn_format.ImmutableDict)) else "vector"
