"""YAML text -> plain data and a :class:`~agentctl.plan.lines.LineMap`, read from libyaml's events.

Called by :mod:`agentctl.plan.load`. The values are built straight from the parser's
event stream (libyaml's, through ``yaml.CSafeLoader``; the pure-Python parser where
libyaml is missing) by one loop with an explicit stack, not by pyyaml's recursive
composer and constructor. That keeps three promises while reading, before any of the
work they guard against is done: nesting deeper than :data:`~agentctl.plan.limits.MAX_DEPTH`
is refused at the line where it happens (no ``RecursionError``), an alias reuses the
value its anchor built (no copy) while the values it stands for are counted against
:func:`~agentctl.plan.limits.alias_budget` (an alias bomb fails at its first line that
goes over), and every value's line is recorded for error messages.

Scalars are resolved and constructed exactly as ``yaml.safe_load`` does (the safe
loader's resolver and constructors); merge keys (``<<``) as well. Unlike it, a key
written twice in one mapping is an error, and an alias may not refer to a node it is
inside (that would make the data recursive).
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import ScalarNode

from ..errors import PlanError
from .limits import MAX_DEPTH, alias_budget, too_deep
from .lines import LineMap, format_path

#: libyaml's parser with the safe loader's resolver and constructors; pure Python without libyaml.
LOADER: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_VALUE = "tag:yaml.org,2002:value"
_COLLECTION_TAGS = (None, "!", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")
_RESOLVERS: dict[Any, list[tuple[str, Any]]] = yaml.SafeLoader.yaml_implicit_resolvers
_WILDCARD = _RESOLVERS.get(None, [])


class _Merge:
    """The ``<<`` key of a mapping: its value is merged in, it is not a key itself."""


_MERGE_KEY = _Merge()
_NO_KEY = object()


def read_yaml(text: str, filename: str) -> tuple[Any, LineMap]:
    """Parse one YAML document into plain data and the line of every key path.

    Raises:
        PlanError: a syntax error (with the parser's line and column), an empty file,
            more than one document, a key written twice, an undefined alias, nesting or
            alias expansion past the limits.
    """
    loader = LOADER(text)
    try:
        return _Reader(loader, filename).document()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        line = mark.line + 1 if mark else None
        col = f" (column {mark.column + 1})" if mark else ""
        raise PlanError(f"YAML syntax error: {what}{col}", file=filename, line=line) from exc
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, say)
        line = text.count("\n", 0, exc.position) + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise PlanError(f"YAML syntax error: unacceptable character #x{char:04x}: {exc.reason}",
                        file=filename, line=line) from exc
    except yaml.YAMLError as exc:
        raise PlanError(f"YAML syntax error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                        file=filename) from exc
    finally:
        loader.dispose()


class _Frame:
    """A mapping or sequence being read: its value so far and what it still waits for."""

    __slots__ = ("anchor", "key", "key_line", "line", "lines", "merges", "size", "value")

    def __init__(self, value: Any, lines: Any, anchor: str | None, line: int) -> None:
        self.value = value
        self.lines = lines
        self.anchor = anchor
        self.line = line
        self.size = 1
        self.key: Any = _NO_KEY
        self.key_line = line
        self.merges: list[tuple[dict[Any, Any], int]] | None = None


class _Reader:
    def __init__(self, loader: Any, filename: str) -> None:
        self.loader = loader
        self.filename = filename
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.tables: dict[int, tuple[Any, Any]] = {}
        self.scalars: dict[str, Any] = {}
        self.written = 0
        self.aliased = 0
        self.stack: list[_Frame] = []

    def fail(self, message: str, line: int | None) -> PlanError:
        return PlanError(message, file=self.filename, line=line)

    def document(self) -> tuple[Any, LineMap]:
        get = self.loader.get_event
        get()  # StreamStartEvent
        event = get()
        if type(event) is StreamEndEvent:
            raise self.fail("plan file is empty", 1)
        assert type(event) is DocumentStartEvent
        root, root_line = self.node()
        get()  # DocumentEndEvent
        event = get()
        if type(event) is not StreamEndEvent:
            raise self.fail("a plan file holds one YAML document; found another", event.start_mark.line + 1)
        return root, LineMap(root, root_line, self.tables)

    def node(self) -> tuple[Any, int]:
        """Read one whole node (the document's root) and return it with its line."""
        get = self.loader.get_event
        stack = self.stack
        while True:
            event = get()
            kind = type(event)
            line = event.start_mark.line + 1
            if kind is ScalarEvent:
                value, size = self.scalar(event, line), 1
                self.written += 1
                if event.anchor is not None:
                    self.anchors[event.anchor] = (value, 1)
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                if event.tag not in _COLLECTION_TAGS:
                    raise self.fail(f"YAML tag {event.tag!r} is not supported in a plan", line)
                if len(stack) >= MAX_DEPTH:
                    raise too_deep(self.filename, line)
                self.written += 1
                if kind is MappingStartEvent:
                    stack.append(_Frame({}, {}, event.anchor, line))
                else:
                    stack.append(_Frame([], [], event.anchor, line))
                continue
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                frame = stack.pop()
                value, size, line = self.close(frame), frame.size, frame.line
                if frame.anchor is not None:
                    self.anchors[frame.anchor] = (value, size)
            elif kind is AliasEvent:
                value, size = self.alias(event, line)
            else:  # pragma: no cover - the parser gives no other event inside a document
                raise self.fail(f"unexpected YAML event {kind.__name__}", line)
            if not stack:
                return value, line
            self.add(stack[-1], value, size, line)

    def scalar(self, event: ScalarEvent, line: int) -> Any:
        tag, text = event.tag, event.value
        if tag is None or tag == "!":
            if not event.implicit[0]:
                return text  # quoted or block text: a string
            try:
                return self.scalars[text]
            except KeyError:
                pass
            tag = self.resolve(text)
            if tag == _STR:
                value: Any = text
            elif tag == _MERGE:
                value = _MERGE_KEY
            elif tag == _VALUE:
                value = text
            else:
                value = self.construct(tag, event)
            self.scalars[text] = value
            return value
        if tag == _STR:
            return text
        return self.construct(tag, event)

    @staticmethod
    def resolve(text: str) -> str:
        """The tag of a plain scalar, as the safe loader's resolver gives it."""
        for tag, regexp in _RESOLVERS.get(text[:1], []) + _WILDCARD:
            if regexp.match(text):
                return str(tag)
        return _STR

    def construct(self, tag: str, event: ScalarEvent) -> Any:
        constructors = self.loader.yaml_constructors
        fn = constructors.get(tag) or constructors[None]
        return fn(self.loader, ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style))

    def alias(self, event: AliasEvent, line: int) -> tuple[Any, int]:
        try:
            value, size = self.anchors[event.anchor]
        except KeyError:
            raise self.fail(f"YAML alias *{event.anchor} names no anchor defined before it "
                            "(an alias may not refer to a node it is inside)", line) from None
        self.aliased += size
        budget = alias_budget(self.written)
        if self.aliased > budget:
            raise PlanError(f"YAML aliases expand the plan too far at *{event.anchor}", file=self.filename, line=line,
                            expected=f"aliases adding at most {budget} values ({self.written} written out)",
                            got=f"{self.aliased} values so far")
        return value, size

    def add(self, frame: _Frame, value: Any, size: int, line: int) -> None:
        """Put a finished ``value`` into the mapping or sequence being read."""
        frame.size += size
        container = frame.value
        if type(container) is list:
            container.append(value)
            frame.lines.append(line)
            return
        key = frame.key
        if key is _NO_KEY:
            if type(value) is list or type(value) is dict:
                raise self.fail("a key must be a string", line)
            frame.key, frame.key_line = value, line
            return
        frame.key = _NO_KEY
        if key is _MERGE_KEY:
            self.merge(frame, value, frame.key_line)
            return
        if value is _MERGE_KEY:
            raise self.fail("'<<' merges a mapping into this one; it is not a value", line)
        if key in container:
            raise PlanError(f"duplicate key {key!r} (first at line {frame.lines[key]})", file=self.filename,
                            line=frame.key_line, path=format_path(self.path(key)))
        container[key] = value
        frame.lines[key] = frame.key_line

    def path(self, key: Any) -> tuple[Any, ...]:
        """The key path of ``key`` in the innermost mapping being read."""
        parts = [f.key if type(f.value) is dict else len(f.value) for f in self.stack[:-1]]
        return (*parts, key)

    def merge(self, frame: _Frame, value: Any, line: int) -> None:
        merged = value if type(value) is list else [value]
        for item in merged:
            if type(item) is not dict:
                raise self.fail("'<<' takes a mapping or a list of mappings (usually aliases)", line)
        if frame.merges is None:
            frame.merges = []
        frame.merges.extend((item, line) for item in merged)

    def close(self, frame: _Frame) -> Any:
        """The finished container, with merge keys applied (the first merged mapping wins,
        keys written in the mapping itself win over all of them)."""
        value, lines = frame.value, frame.lines
        if frame.key is not _NO_KEY:  # pragma: no cover - the parser always pairs keys
            raise self.fail("a mapping key has no value", frame.key_line)
        if frame.merges:
            out: dict[Any, Any] = {}
            out_lines: dict[Any, int] = {}
            for item, line in reversed(frame.merges):
                out.update(item)
                out_lines.update(dict.fromkeys(item, line))
            out.update(value)
            out_lines.update(lines)
            value, lines = out, out_lines
        if value:
            self.tables[id(value)] = (value, lines)
        return value
