"""Is a log to blame for a view that failed? The diagnosis of a damaged or hostile log.

The readers check only that each line is a JSON object (the hot path of replay and resume
stays one parse per line); the fold and the views then trust every event's fields. A log
edited by hand, damaged, or written by something else can break that trust deep inside a
view. When one fails, ``agentctl.cli.views.blame_the_log`` reads the log again with
:func:`first_misfit`, which names the first event that does not fit its definition
(:func:`~agentctl.events.types.misfit`): file, line, event, key path, expected and got.
:func:`blame_the_log` does both: run a view, and on its failure name the event to blame.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from ..errors import AgentctlError, CorruptLogError, leaves
from .types import misfit

__all__ = ["blame_the_log", "first_misfit"]


def first_misfit(path: Path) -> CorruptLogError | None:
    """The first event of the log at ``path`` that does not fit its definition, as an error.

    Wrong types are looked for first, over the whole log; only then missing fields, which an
    older log may lack harmlessly.
    """
    for missing in (False, True):
        with open(path, "rb") as f:
            for number, line in enumerate(f, 1):
                try:
                    event = orjson.loads(line) if line.strip() else None
                except orjson.JSONDecodeError:
                    continue  # the reader names a line that is not JSON
                if isinstance(event, dict):
                    problem = misfit(event, missing=missing)
                    if problem is not None:
                        what = f"event {event.get('seq')!r} ({event.get('type')!r:.40})"
                        return CorruptLogError(str(path), number, f"{what} does not fit its definition: {problem}")
    return None



@contextmanager
def blame_the_log(path: Path, *, named: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Run a view of the log at ``path``; if it fails, and not only with errors that name
    their cause themselves (:class:`~agentctl.errors.AgentctlError`, ``OSError``, ``named``),
    raise the :class:`~agentctl.errors.CorruptLogError` of the first event that does not fit
    its definition instead. A failure on a log that fits is a bug and keeps its traceback."""
    try:
        yield
    except Exception as exc:
        if all(isinstance(leaf, (AgentctlError, OSError, *named)) for leaf in leaves(exc)):
            raise
        found = first_misfit(path) if path.is_file() else None
        if found is None:
            raise
        raise found from exc
