"""The live children a parent's snapshot names, made ready to start again on resume.

A snapshot (:mod:`agentctl.runtime.snapshots`) keeps each live child of its agent by id,
spec (as the agent's step function made it, :class:`~agentctl.runtime.spec.ChildCodec`)
and grant. When a resume restores the parent from it, the tree
(:mod:`agentctl.runtime.tree`) starts these children again, each from its own journal
(and its own snapshot, if it has one: grandchildren follow the same way), instead of
replaying the parent's steps that spawned them. This module checks such a list against
what the resume knows, before anything is restored:

- a child gets exactly the grant it had, and only if the parent may still give it (the
  policy's check of a spawn, against the parent's grant): never more than the parent;
- a child with no journal ended after the snapshot (the log has it, under that parent):
  it stays ended, and its report, if the parent had not read it, is in the parent's journal;
  its budget is set aside again until the charge of its end (``budget/charged``, after the
  snapshot) gives it back;
- a child that ended and was spawned again after the snapshot is started by the replay
  of that spawn, not here (the one that ended is set aside for, as above);
- a child the log does not have under that parent (never knew, or another agent's), an
  entry that does not decode, a grant the parent may not give: :class:`~agentctl.runtime.snapshots.SnapshotError` (the parent is then replayed
  from its start, as without a snapshot).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from ..errors import PolicyError
from ..events.journal import Journal, Journals
from ..policy import DEFAULT_SUPERVISION, Budget, Grant, Policy, Supervision, grant_child
from .snapshots import SnapshotError
from .spec import AgentSpec, Strategy


@dataclass(frozen=True, slots=True)
class LiveChild:
    """A child its restored parent's snapshot names: its spec, grant and journal, to start it
    again; no journal: it ended after the snapshot (its grant is set aside until its charge)."""

    spec: AgentSpec
    grant: Grant
    journal: Journal | None


class _SuperviseData(msgspec.Struct, forbid_unknown_fields=True):
    strategy: Strategy
    max_restarts: Annotated[int, msgspec.Meta(ge=0)]
    restart_period: Annotated[float, msgspec.Meta(gt=0)]


class _GrantData(msgspec.Struct, forbid_unknown_fields=True):
    model: str | None
    tools: list[str]
    budget: dict[str, int | float | None]
    approve: list[str]
    # Absent from snapshots written before grants carried it: those children had the default.
    supervise: _SuperviseData | None = None


def live_children(
    spec: AgentSpec, journal: Journal, *, grant: Grant, depth: int, policy: Policy, journals: Journals,
    parents: Mapping[str, str | None],
) -> tuple[LiveChild, ...]:
    """The children that ``journal``'s snapshot names, in their start order, for the agent
    of ``spec`` granted ``grant`` at ``depth``: those to start again with their journals,
    those that ended since without.

    Args:
        journals: the live agents' journals; parents: every agent's parent, as the log has it.

    Raises:
        SnapshotError: the list cannot be used (see the module doc).
    """
    entries = (journal.snapshot or {}).get("children") or []
    if not isinstance(entries, list):
        raise SnapshotError("its children are not a list")
    codec = spec.state_codec.children if spec.state_codec is not None else None
    if entries and codec is None:
        raise SnapshotError(f"it names live children, and agent {spec.id!r} ({spec.kind}) keeps none")
    spawned_since = {e.get("child_id") for e in journal.effects if e["op"] == "spawn" and e.get("ok")}
    children: list[LiveChild] = []
    seen: set[str] = set()
    for entry in entries:
        child_id = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(child_id, str) or child_id in seen:
            raise SnapshotError(f"its child entry {entry!r} has no id of its own")
        seen.add(child_id)
        assert codec is not None
        try:
            child = codec.decode(entry.get("spec"))
        except SnapshotError:
            raise
        except Exception as exc:  # a step function's own decoding: any error means the same
            raise SnapshotError(f"its child {child_id!r} does not decode ({type(exc).__name__}: {exc})") from exc
        if child.id != child_id:
            raise SnapshotError(f"its child {child_id!r} decodes to a spec of {child.id!r}")
        granted = _grant(child_id, entry.get("grant"), grant, depth + 1, policy)
        if parents.get(child_id) != spec.id:
            raise SnapshotError(f"it names a live child {child_id!r} that the log does not have as its child")
        # Ended after the snapshot (and maybe spawned again since: the replay of that spawn
        # starts it), or live, with its journal.
        child_journal = None if child_id in spawned_since else journals.get(child_id)
        children.append(LiveChild(child, granted, child_journal))
    return tuple(children)


def _grant(child_id: str, data: Any, parent: Grant, depth: int, policy: Policy) -> Grant:
    """The grant the snapshot recorded for a child, if the parent may give it now."""
    try:
        g = msgspec.convert(data, _GrantData)
        flags = DEFAULT_SUPERVISION if g.supervise is None else Supervision(
            g.supervise.strategy, g.supervise.max_restarts, g.supervise.restart_period)
        recorded = Grant(g.model, frozenset(g.tools), Budget.from_mapping(g.budget), frozenset(g.approve), flags)
    except (msgspec.ValidationError, TypeError) as exc:
        raise SnapshotError(f"its child {child_id!r} has no grant that decodes ({exc})") from None
    try:
        # The policy's check of a spawn asking for exactly that, against the parent's whole
        # grant: what it gives differs if the record asks for more than the parent has.
        again = grant_child(policy=policy, depth=depth, parent=parent, parent_remaining=parent.budget,
                            model=recorded.model, tools=recorded.tools, budget=recorded.budget,
                            approve=recorded.approve, supervise=recorded.supervise)
    except PolicyError as exc:
        raise SnapshotError(f"its child {child_id!r} has a grant its parent may not give ({exc})") from None
    if again != recorded:
        raise SnapshotError(f"its child {child_id!r} has a grant its parent may not give")
    return parent if recorded == parent else recorded
