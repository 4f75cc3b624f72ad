"""Where each value of a parsed plan file was written: a key path -> 1-based line table.

Built by :mod:`agentctl.plan.yaml_reader` while it reads a YAML plan and read by
:mod:`agentctl.plan.validate` to put a line on every error. The table is kept per
container (one small dict or list for each mapping and sequence of the data) rather than
per full key path, so that recording it costs one store per value; a path is looked up
by walking the data from the root.
"""

from __future__ import annotations

from typing import Any

Path = tuple[str | int, ...]


def format_path(path: Path) -> str:
    """``("tasks", 2, "budget")`` -> ``tasks[2].budget``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class LineMap:
    """The 1-based line of each key path of one parsed document.

    Args:
        root: the document's data (the mappings and lists the tables describe).
        root_line: the line the document starts on.
        tables: ``id(container)`` -> (the container, its key -> line table): a dict for a
            mapping, a list for a sequence. The container is held so that its id stays its own.
    """

    __slots__ = ("_root", "_root_line", "_tables")

    def __init__(self, root: Any, root_line: int, tables: dict[int, tuple[Any, Any]]) -> None:
        self._root = root
        self._root_line = root_line
        self._tables = tables

    def _walk(self, path: Path) -> tuple[int, int]:
        """(how many parts of ``path`` have a line, the line of the last of them)."""
        node, line = self._root, self._root_line
        for n, part in enumerate(path):
            entry = self._tables.get(id(node))
            if entry is None:
                return n, line
            table = entry[1]
            try:
                found = table[part]
                node = node[part]
            except (KeyError, IndexError, TypeError):
                return n, line
            if found is None:
                return n, line
            line = found
        return len(path), line

    def nearest(self, path: Path) -> int:
        """The line of ``path``, else of its nearest ancestor that has one."""
        return self._walk(path)[1]

    def items(self, sequence: list[Any]) -> list[int] | None:
        """The lines of the items of ``sequence``, a list of the document, if recorded (one
        lookup, where a path would be walked from the root: a plan reads every task's steps)."""
        entry = self._tables.get(id(sequence))
        return entry[1] if entry is not None and entry[0] is sequence and isinstance(entry[1], list) else None

    def get(self, path: Path) -> int | None:
        """The line of exactly ``path``, or None if it was not recorded."""
        found, line = self._walk(path)
        return line if found == len(path) else None
