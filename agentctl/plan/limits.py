"""How big a plan file may be: bytes, nesting depth and YAML alias expansion.

Plan files are trusted, but they are also edited by hand and saved over live runs, and
a few hundred bytes can ask for gigabytes (a YAML "billion laughs" alias bomb) or for
a recursion deeper than Python's stack. :mod:`agentctl.plan.load` and
:mod:`agentctl.plan.yaml_reader` check these limits while reading, before any such work
is done, and fail with a :class:`~agentctl.errors.PlanError` naming the file and line.
"""

from __future__ import annotations

import re

from ..errors import PlanError

#: Largest plan file read (a 10,000-task plan is about 1 MiB).
MAX_BYTES = 16 * 1024 * 1024
#: Deepest nesting of mappings and lists (a plan needs about ten; nested spawns a few more each).
MAX_DEPTH = 100
#: Values that YAML aliases may add beyond those written out, at least ...
ALIAS_FLOOR = 100_000
#: ... or this many times the values written out, whichever is more.
ALIAS_RATIO = 10


def check_size(size: int, filename: str) -> None:
    """Refuse a plan of more than :data:`MAX_BYTES` bytes (or characters)."""
    if size > MAX_BYTES:
        raise PlanError(f"plan file too large: more than {MAX_BYTES // (1024 * 1024)} MiB",
                        file=filename, expected=f"at most {MAX_BYTES} bytes", got=f"{size} bytes")


def too_deep(filename: str, line: int | None) -> PlanError:
    """The error for nesting past :data:`MAX_DEPTH` at ``line``."""
    return PlanError(f"nested too deeply: more than {MAX_DEPTH} levels of mappings and lists", file=filename,
                     line=line, expected=f"at most {MAX_DEPTH} levels", got=f"level {MAX_DEPTH + 1}")


def alias_budget(written: int) -> int:
    """How many values aliases may add when ``written`` values were written out."""
    return max(ALIAS_FLOOR, ALIAS_RATIO * written)


# EDN tokens that matter for nesting: strings, comments and characters are skipped whole
# (a character literal such as \( or a "(" in a string opens nothing).
_EDN_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"?|;[^\n]*|\\(?:\S[a-z]*)|[(\[{]|[)\]}]', re.S)


def check_edn_depth(text: str, filename: str) -> None:
    """Refuse EDN nested past :data:`MAX_DEPTH` before the recursive EDN reader sees it."""
    depth = 0
    for match in _EDN_TOKEN.finditer(text):
        ch = match.group()[0]
        if ch in "([{":
            depth += 1
            if depth > MAX_DEPTH:
                raise too_deep(filename, text.count("\n", 0, match.start()) + 1)
        elif ch in ")]}":
            depth -= 1
