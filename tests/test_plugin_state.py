"""``keeps_state``: how a ``python`` plugin step declares that snapshots may keep its state."""

from __future__ import annotations

from typing import Any, TypedDict

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
