"""The state fold: turns a stream of events into the state of a run.

One pure fold, :func:`fold`, used by everything that reads a run's state back from its
events: ``agentctl replay`` (:mod:`agentctl.views.replay`), ``agentctl replay --at`` and
``agentctl inspect`` (:func:`state_at`), and crash resume (:mod:`agentctl.cli.resume`,
which continues from a checkpoint's state). The live view, ``agentctl watch`` and the
checkpointer fold event by event with :func:`apply`, which goes through the same
reducers (:mod:`agentctl.events.reducers`), so they all see the same state. A state's
:class:`~agentctl.events.journal.Journals` part keeps what live agents did, calls and their
outcomes included, for crash resume.

The state records are :mod:`agentctl.events.run_state` and :mod:`agentctl.events.agent_state`;
their public names are importable from here too. The fold is on the hot path of replaying
large logs, hence the inlined loop in :func:`fold`.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Mapping
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .agent_state import STATUSES, AgentView
from .journal import HANDLERS as JOURNAL_HANDLERS
from .journal import JournalHandler
from .reducers import REDUCERS, Reducer
from .run_state import RECENT_EVENTS, RunState

__all__ = ["AgentView", "RunState", "apply", "fold", "state_at", "RECENT_EVENTS", "STATUSES", "WITH_JOURNALS"]


def _and_journal(reducer: Reducer | None, journal: JournalHandler) -> Reducer:
    if reducer is None:

        def journal_only(state: RunState, e: dict[str, Any]) -> None:
            journal(state.journals.by_agent, e)

        return journal_only

    def both(state: RunState, e: dict[str, Any]) -> None:
        reducer(state, e)
        journal(state.journals.by_agent, e)

    return both


#: Per event type, the reducer that also keeps the live agents' journals (one call per
#: event, where the fold would otherwise look up and call two).
WITH_JOURNALS: Mapping[str | None, Reducer] = MappingProxyType({
    **REDUCERS,
    **{kind: _and_journal(REDUCERS.get(kind), journal) for kind, journal in JOURNAL_HANDLERS.items()},
})
# The fold's own lookups: a plain dict's get is a few tens of ns faster per event than a
# read-only view's, and the public tables above stay read-only.
_REDUCER = dict(REDUCERS).get
_REDUCER_WITH_JOURNAL = dict(WITH_JOURNALS).get


def apply(state: RunState, event: dict[str, Any]) -> None:
    """Fold one event into ``state``; unknown types only advance ``last_seq``/``recent``.

    Args:
        state: the state so far, changed in place.
        event: one event dict as written to ``events.jsonl``.
    """
    state.last_seq = event.get("seq", state.last_seq)
    state.last_t = event.get("t", state.last_t)
    state.recent.append(event)
    reducer = _REDUCER_WITH_JOURNAL(event.get("type"))
    if reducer is not None:
        reducer(state, event)


def fold(
    events: Iterable[dict[str, Any]],
    *,
    until_seq: int | None = None,
    state: RunState | None = None,
    journals: bool = True,
) -> RunState:
    """Fold events into a state.

    Args:
        events: events in log order.
        until_seq: stop after the event with this ``seq`` (events after it are not read).
        state: a state to continue from (e.g. a checkpoint); a new one when None.
        journals: keep live agents' journals (``state.journals``), which only crash resume
            reads; views pass False and fold about twice as fast.

    Returns:
        The state (``state`` itself when given).
    """
    if state is None:
        state = RunState()
    # The loop inlines apply: on a million-event replay the function call and
    # per-event attribute stores are a measurable share of the time.
    reducers = _REDUCER_WITH_JOURNAL if journals else _REDUCER
    remember = state.recent.append
    last: dict[str, Any] | None = None
    # The fold allocates long-lived containers (calls, agents) and no cycles; the cyclic
    # collector would repeatedly rescan them, which costs as much as the fold itself.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        if until_seq is not None:
            events = _until(events, until_seq)
        for last in events:
            remember(last)
            reducer = reducers(last.get("type"))
            if reducer is not None:
                reducer(state, last)
    finally:
        if gc_was_enabled:
            gc.enable()
        if last is not None:
            state.last_seq = last.get("seq", state.last_seq)
            state.last_t = last.get("t", state.last_t)
    return state


def _until(events: Iterable[dict[str, Any]], until_seq: int) -> Iterator[dict[str, Any]]:
    for event in events:
        if event.get("seq", 0) > until_seq:
            return
        yield event


def state_at(events_or_path: Iterable[dict[str, Any]] | str | PathLike[str], seq: int | None = None) -> RunState:
    """The state of a run as of event ``seq`` (the end when None), for views: no journals.

    Args:
        events_or_path: events, or a run directory / ``events.jsonl`` path to read.
        seq: the last event to fold.
    """
    if isinstance(events_or_path, (str, PathLike)):
        from agentctl.events.reader import read_events, read_run_events

        return fold(read_events(read_run_events(Path(events_or_path))), until_seq=seq, journals=False)
    return fold(events_or_path, until_seq=seq, journals=False)
