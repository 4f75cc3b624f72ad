"""``-o json`` for the commands that have it: one documented object on stdout (docs/cli.md)."""

from __future__ import annotations

import sys
from enum import Enum
from typing import Any

import typer


class Output(str, Enum):
    """What a command prints: a human-readable rendering or one JSON object."""

    text = "text"
    json = "json"


def output_option() -> Any:
    """The ``-o/--output`` option (a fresh one per command)."""
    return typer.Option(Output.text, "-o", "--output", metavar="text|json", help="Output format: text or json (one object, keys in docs/cli.md).")


def print_json(value: Any) -> None:
    """Write ``value`` as one JSON document (sorted keys, indented) and a newline."""
    import orjson

    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS, default=repr).decode() + "\n")
    sys.stdout.flush()
