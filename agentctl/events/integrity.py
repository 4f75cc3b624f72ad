"""Is this log whole? Sequence, order, run and call checks over a stream of events.

Used by crash resume (:mod:`agentctl.cli.resume`), which refuses a damaged log (unless
told ``--force``), and by ``agentctl replay`` / ``watch``, which warn and go on. A log
agentctl wrote is gap-free: seqs count up by one from 1, every event carries the run's
``run_id``, and a call's result follows its request in the same process (a resume logs
``run/resumed`` and asks again). Anything else means lines were lost, duplicated,
reordered or mixed in from another log, and a resume built on it could repeat or drop
work, so it is named with its line number.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from ..errors import CorruptLogError

__all__ = ["OnDamage", "check_events", "line_of_event", "raise_damage", "scan_log"]

_REQUESTS = {"tool/requested": "tool", "llm/requested": "llm"}
_RESULTS = {"tool/result": "tool", "llm/result": "llm"}

#: Called with (event index in the stream, 1-based; what is wrong) when a check fails.
OnDamage = Callable[[int, str], None]


def check_events(
    events: Iterable[dict[str, Any]],
    on_damage: OnDamage,
    *,
    run_id: str | None = None,
    after_seq: int = 0,
    pending: Iterable[str] = (),
) -> Iterator[dict[str, Any]]:
    """Yield ``events`` unchanged, calling ``on_damage`` for each one that breaks the log's rules.

    Args:
        events: events in file order.
        on_damage: told the event's index and what is wrong; it may raise to stop.
        run_id: the run the events must belong to (default: the first event's).
        after_seq: the seq just before the first event (a checkpoint's, when resuming from one).
        pending: call ids requested before the first event and still without a result.
    """
    expected = after_seq + 1
    open_calls: set[str | None] = set(pending)
    for index, event in enumerate(events, 1):
        seq, kind = event.get("seq"), event.get("type")
        if type(kind) is not str:
            kind = None  # not an event's type (a damaged line): no call to pair
        if seq != expected:
            on_damage(index, _seq_problem(seq, expected))
        if isinstance(seq, int):
            expected = max(expected, seq) + 1
        if run_id is None:
            run_id = event.get("run_id")
        elif event.get("run_id") != run_id:
            on_damage(index, f"event {seq} belongs to run {event.get('run_id')!r}, not {run_id!r}")
        if kind in _REQUESTS:
            open_calls.add(_call_id(event))
        elif kind in _RESULTS:
            call = _call_id(event)
            if call in open_calls:
                open_calls.discard(call)
            else:
                on_damage(index, f"event {seq}: a {kind} for call {call!r}, which has no open request "
                                 "(its request is missing, or it has a result already)")
        elif kind == "run/resumed":
            open_calls.clear()  # the dead process's calls are answered by resume, not by results
        yield event


def _call_id(event: dict[str, Any]) -> str | None:
    call = event.get("call_id")
    return call if type(call) is str else None  # a damaged id (a list, say) pairs with nothing


def _seq_problem(seq: Any, expected: int) -> str:
    if not isinstance(seq, int):
        return f"no integer seq (got {seq!r}; expected {expected})"
    if seq > expected:
        missing = f"{expected}" if seq == expected + 1 else f"{expected}-{seq - 1}"
        return f"seq {seq} where {expected} was expected: event(s) {missing} are missing"
    return f"seq {seq} where {expected} was expected: a duplicate or out-of-order event"


def line_of_event(path: Path, index: int, *, start_seq: int = 0) -> int:
    """The file's line number of the ``index``-th event a stream from ``start_seq`` yields."""
    seen = 0
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(event, dict) and (not start_seq or event.get("seq", start_seq) >= start_seq):
                seen += 1
                if seen == index:
                    return number
    return 0


def raise_damage(path: Path, *, start_seq: int = 0) -> OnDamage:
    """An ``on_damage`` that raises :class:`CorruptLogError` naming the file and line."""

    def fail(index: int, what: str) -> None:
        raise CorruptLogError(str(path), line_of_event(path, index, start_seq=start_seq), what)

    return fail


def scan_log(path: Path, *, limit: int = 5) -> list[str]:
    """The first ``limit`` problems of a whole log, one line each (``FILE:LINE: what``), for
    views that warn and go on (``replay``, ``watch``)."""
    from .reader import read_events

    found: list[tuple[int, str]] = []

    def note(index: int, what: str) -> None:
        found.append((index, what))

    try:
        for _ in check_events(read_events(path), note):
            if len(found) >= limit:
                break
    except CorruptLogError:
        pass  # a line that is not an event: the view itself stops there and names it
    return [f"{path}:{line_of_event(path, i)}: {what}" for i, what in found]
