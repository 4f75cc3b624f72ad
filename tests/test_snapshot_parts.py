"""The in-process parts of snapshots taken mid-action: ``keeps_state`` (how a ``python`` plugin
step declares its state may be kept), the journal's rebase onto a snapshot, and the lock
grant a waiting agent counts as it is logged."""

from __future__ import annotations

from typing import Any, TypedDict

import anyio
import msgspec
import pytest

from agentctl import UsageError, keeps_state
from agentctl.agents.plugin import state_codec
from agentctl.runtime.snapshots import SnapshotError, restored
from agentctl.runtime.spec import AgentSpec


class Tally(msgspec.Struct):
    n: int
    seen: list[str] = []


class State(TypedDict):
    tally: Tally


def step(ctx: Any) -> None:
    return None


def test_a_typed_state_round_trips_and_a_snapshot_of_the_wrong_shape_is_refused() -> None:
    fn = keeps_state("7", state=State)(step)
    codec = state_codec(fn)
    assert codec is not None and codec.tag == f"python/7:{__name__}.step"
    kept = codec.encode({"tally": Tally(2, ["a"])})
    assert kept == {"tally": {"n": 2, "seen": ["a"]}}
    assert codec.decode(kept) == {"tally": Tally(2, ["a"])}
    spec = AgentSpec("p", fn, kind="python", state_codec=codec)
    snapshot = {"version": 2, "tag": codec.tag, "state": {"tally": {"n": "two"}}, "actions": [], "logged": [],
                "since": 0, "turns": 1, "steps": 1, "tool_calls": 0, "tokens": 0, "spawned_children": 0, "t": 1}
    with pytest.raises(SnapshotError, match="does not decode"):
        restored(spec, snapshot)
    with pytest.raises(SnapshotError, match=r"another step function \('python/6"):
        restored(spec, {**snapshot, "tag": f"python/6:{__name__}.step"})


def test_a_step_without_keeps_state_has_no_codec_and_half_a_codec_is_refused() -> None:
    def other(ctx: Any) -> None:
        return None

    assert state_codec(other) is None
    with pytest.raises(UsageError, match="together"):
        keeps_state("1", encode=lambda s: s)
    with pytest.raises(UsageError, match="together"):
        keeps_state("1", state=State, encode=lambda s: s, decode=dict)
    codec = state_codec(keeps_state("1", encode=lambda s: {"x": s["x"] * 2}, decode=lambda d: {"x": d["x"] // 2})(other))
    assert codec is not None and codec.decode(codec.encode({"x": 3})) == {"x": 3}


def _journal(*effects: dict[str, Any]) -> Any:
    from agentctl.events.journal import Journal

    return Journal.from_dict({"effects": [dict(e) for e in effects], "inbox": []})


DONE: dict[str, Any] = {"op": "tool", "call_id": "t1", "done": True, "ok": True, "value": 1}
LOCK: dict[str, Any] = {"op": "lock", "path": "p", "mode": "write"}
OPEN: dict[str, Any] = {"op": "tool", "call_id": "t2", "done": False}


def test_a_snapshot_mid_action_keeps_exactly_the_outcomes_its_actions_logged() -> None:
    journal = _journal(LOCK, DONE, OPEN)
    snapshot: dict[str, Any] = {"logged": ["tool", "tool"], "turns": 2}
    assert journal.rebase(snapshot)
    assert [e.get("call_id") for e in journal.effects] == ["t1", "t2"] and set(journal.calls) == {"t1", "t2"}
    assert snapshot["locks"] == {"p": ["write", 1]}  # taken by an earlier step: given back, not replayed
    # A lock its batch took is replayed from the journal, so the snapshot does not count it.
    journal = _journal(DONE, LOCK)
    snapshot = {"logged": ["lock"], "turns": 2}
    assert journal.rebase(snapshot) and snapshot["locks"] == {} and journal.effects == [LOCK]
    assert journal.held_locks() == {"p": ("write", 1)}


def test_a_snapshot_the_log_disagrees_with_leaves_the_journal_whole() -> None:
    llm_done: dict[str, Any] = {"op": "llm", "call_id": "l1", "done": True, "ok": True, "tokens": 5}
    cases: list[tuple[tuple[dict[str, Any], ...], list[str]]] = [((DONE, LOCK), ["tool"]),  # its last outcomes are not those its actions counted
                            ((OPEN, DONE), ["tool"]),  # a call of an earlier step still open
                            ((llm_done,), ["llm"]),  # an answered LLM call: its tokens would count twice
                            ((DONE,), ["tool", "tool"])]
    for effects, logged in cases:
        journal = _journal(*effects)
        assert not journal.rebase({"logged": logged, "turns": 1}), (effects, logged)
        assert journal.effects == list(effects) and journal.snapshot is None


async def _granted_before_the_wait_ends() -> None:
    from agentctl.services.locks import LockService

    log: list[str] = []

    def emit(type: Any, agent_id: str | None = None, fields: dict[str, Any] | None = None, /, **more: Any) -> dict[str, Any]:
        log.append(f"{type} {agent_id}")
        return {}

    locks = LockService(emit)
    locks.try_acquire("holder", "p")
    seen: list[list[str]] = []
    async with anyio.create_task_group() as tg:
        async def wait() -> None:
            await locks.acquire("waiter", "p", timeout=10, on_granted=lambda: seen.append(list(log)))
            seen.append(["waited"])

        tg.start_soon(wait)
        await anyio.sleep(0.01)
        locks.release("holder", "p")
        # Called by the release itself, with the grant's lock/acquired logged, before the
        # waiter's task runs again.
        assert seen == [[*log]] and log[-1] == "lock/acquired waiter"
    assert seen[-1] == ["waited"]


def test_a_waiter_hears_of_its_grant_as_it_is_logged_not_when_its_wait_ends() -> None:
    anyio.run(_granted_before_the_wait_ends)
