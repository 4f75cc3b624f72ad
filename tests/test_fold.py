"""The state fold: a realistic hand-built run folded event by event."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from agentctl.events.fold import RECENT_EVENTS, RunState, apply, fold, state_at
from agentctl.events.outcomes import Finished

T0 = 1_700_000_000_000


def run_events() -> list[dict[str, Any]]:
    """A small run: a root with two children, messages, locks, a conflict, calls,
    a crash and restart, done, stopped, an invalid plan edit, run finished."""
    events: list[dict[str, Any]] = []

    def e(type: str, agent_id: str | None = None, **fields: Any) -> None:
        seq = len(events) + 1
        events.append({"seq": seq, "t": T0 + 100 * seq, "run_id": "r1", "type": type, "agent_id": agent_id, **fields})

    def spawned(agent_id: str, parent: str | None, depth: int) -> None:
        e(
            "agent/spawned", agent_id, parent_id=parent, depth=depth, model="qwen3", kind="script",
            tools=["fs/read", "fs/write"], budget={"max_steps": 20, "max_tool_calls": None, "max_tokens": 1000},
            restart="transient",
        )

    e("run/started", pid=1, version="0.1.0", durability="batch", workspace="/w", plan="plan.yaml")  # 1
    e("plan/loaded", file="plan.yaml", name="demo", version=1, tasks=3, copy=None)  # 2
    spawned("root", None, 0)  # 3
    spawned("writer", "root", 1)  # 4
    spawned("reader", "root", 1)  # 5
    e("agent/status", "root", status="running", reason="start", steps=0)  # 6
    msg = {"from": "root", "kind": "goal", "thread_id": None, "body": "go", "via": None}
    e("agent/message", "writer", msg_id="m1", to="writer", delivered=True, **msg)  # 7
    e("agent/message", "reader", msg_id="m2", to="reader", delivered=False, **msg)  # 8
    e("bus/denied", "writer", **{"from": "writer"}, to="reader", kind="chat", reason="topology")  # 9
    e("policy/refused", "root", child_id="extra", rule="depth", error="too deep")  # 10
    e("lock/acquired", "writer", path="src/", mode="write", count=1)  # 11
    e("lock/conflict", "reader", conflict_id="k1", path="src/a.txt", mode="read",
      holder="writer", holder_path="src/", holder_mode="write")  # 12
    e("agent/status", "reader", status="blocked", reason="lock", steps=1)  # 13
    e("tool/requested", "writer", call_id="c1", tool="fs/write", arguments={"path": "src/a.txt"})  # 14
    e("llm/requested", "root", call_id="c2", provider="scripted", model="qwen3", messages=2, tools=[])  # 15
    e("tool/result", "writer", call_id="c1", tool="fs/write", ok=True, error=None, result=5, duration_ms=1.5)  # 16
    e("llm/result", "root", call_id="c2", ok=True, error=None, reply={"content": "ok", "tool_calls": []},
      prompt_tokens=100, completion_tokens=20, duration_ms=9.0)  # 17
    e("lock/released", "writer", path="src/", reason="release")  # 18
    e("lock/acquired", "reader", path="src/a.txt", mode="read", count=1)  # 19
    e("agent/error", "writer", error="boom", error_type="ValueError", where="step")  # 20
    e("agent/restarted", "writer", parent_id="root", strategy="one_for_one", restarts=1, offender="writer")  # 21
    e("agent/done", "writer", status="ok", result="hi", reason=None, steps=3)  # 22
    e("lock/released", "reader", path="src/a.txt", reason="holder_ended")  # 23
    e("agent/stopped", "reader", reason="requested")  # 24
    e("tool/requested", "root", call_id="c3", tool="fs/read", arguments={"path": "x"})  # 25
    e("plan/invalid", file="plan.yaml", error={"message": "bad", "file": "plan.yaml", "line": 3,
                                              "path": "tasks[0]", "expected": "int", "got": "str"})  # 26
    e("agent/done", "root", status="failed", result=None, reason=None, steps=5)  # 27
    e("run/finished", reason="completed", status="failed", events=28)  # 28
    return events


def test_fold_builds_the_tree_statuses_and_outcomes() -> None:
    state = fold(run_events())

    assert state.run_id == "r1"
    assert (state.plan_name, state.plan_version, state.plan_file) == ("demo", 1, "plan.yaml")
    assert state.started_t == T0 + 100 and state.last_seq == 28 and state.last_t == T0 + 2800
    assert list(state.agents) == ["root", "writer", "reader"]
    assert state.roots() == ["root"]
    root, writer, reader = state.agents["root"], state.agents["writer"], state.agents["reader"]
    assert root.children == ["writer", "reader"] and writer.depth == 1
    assert writer.tools == ("fs/read", "fs/write") and writer.budget["max_steps"] == 20
    assert (writer.status, writer.done_status, writer.result, writer.restarts) == ("done", "ok", "hi", 1)
    assert writer.error is None, "a restart clears the error of the crash it recovered from"
    assert writer.steps == 3 and writer.ended_t == T0 + 2200
    assert (root.status, root.done_status) == ("failed", "failed")
    assert reader.status == "stopped" and reader.activity is None
    assert state.finished == Finished("completed", "failed")
    assert state.status_counts() == {
        "spawned": 0, "running": 0, "waiting": 0, "sleeping": 0, "blocked": 0, "done": 1, "failed": 1, "stopped": 1,
    }


def test_fold_counts_messages_calls_tokens_and_errors() -> None:
    state = fold(run_events())

    c = state.counts
    assert (c["messages"], c["delivered"], c["undelivered"]) == (2, 1, 1)
    assert (c["denied"], c["refused"], c["failures"]) == (1, 1, 1)
    assert (c["tool_calls"], c["tool_failures"], c["llm_calls"]) == (1, 0, 1)
    assert (c["prompt_tokens"], c["completion_tokens"]) == (100, 20)
    assert state.agents["root"].tokens == 120 and state.agents["root"].llm_calls == 1
    assert state.agents["writer"].tool_calls == 1
    assert list(state.pending_calls) == ["c3"]
    assert state.pending_calls["c3"]["kind"] == "tool" and state.pending_calls["c3"]["agent_id"] == "root"
    assert [e.error_type for e in state.errors] == ["ValueError"]
    assert state.plan_invalid is not None and state.plan_invalid["line"] == 3


def test_locks_and_conflicts_open_and_close() -> None:
    events = run_events()
    at_conflict = fold(events, until_seq=13)
    assert at_conflict.locks == {"src/": {"writer": "write"}}
    assert at_conflict.agents["writer"].locks == {"src/": "write"}
    assert list(at_conflict.open_conflicts) == ["k1"]
    assert at_conflict.open_conflicts["k1"]["holder"] == "writer"
    reader = at_conflict.agents["reader"]
    assert reader.status == "blocked" and reader.activity == "lock src/a.txt (blocked)"

    at_acquire = fold(events, until_seq=19)
    assert at_acquire.open_conflicts == {}
    assert at_acquire.locks == {"src/a.txt": {"reader": "read"}}
    assert at_acquire.agents["reader"].activity is None
    assert at_acquire.agents["writer"].locks == {}

    assert fold(events).locks == {}


def test_activity_follows_calls_and_errors_fail_agents_until_restarted() -> None:
    events = run_events()
    mid = fold(events, until_seq=15)
    assert mid.agents["writer"].activity == "tool fs/write"
    assert mid.agents["root"].activity == "llm scripted/qwen3"
    assert set(mid.pending_calls) == {"c1", "c2"}

    crashed = fold(events, until_seq=20)
    assert crashed.agents["writer"].status == "failed"
    assert crashed.agents["writer"].error == "boom"
    restarted = fold(events, until_seq=21)
    assert restarted.agents["writer"].status == "running"


def test_a_valid_plan_load_clears_the_invalid_banner() -> None:
    events = run_events()
    events.append({"seq": 29, "t": T0 + 2900, "run_id": "r1", "type": "plan/loaded", "agent_id": None,
                   "file": "plan.yaml", "name": "demo", "version": 2, "tasks": 4, "copy": None})
    state = fold(events)
    assert state.plan_invalid is None and state.plan_version == 2


def test_unknown_types_are_ignored_and_recent_is_bounded() -> None:
    events = [{"seq": i, "t": T0 + i, "run_id": "r1", "type": "future/thing", "agent_id": None} for i in range(1, 501)]
    state = fold(events)
    assert state.last_seq == 500 and state.agents == {}
    assert len(state.recent) == RECENT_EVENTS and state.recent[0]["seq"] == 301


def test_apply_event_by_event_equals_the_bulk_fold() -> None:
    state = RunState()
    for event in run_events():
        apply(state, event)
    assert state == fold(run_events())


def test_state_at_equals_the_fold_of_the_prefix_without_journals(tmp_path: Path) -> None:
    events = run_events()
    for seq in (0, 5, 13, 21, 28):
        assert state_at(events, seq) == fold(events[:seq], journals=False)

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "events.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    assert state_at(run_dir, 13) == fold(events[:13], journals=False)
    assert state_at(run_dir / "events.jsonl") == fold(events, journals=False)


def test_a_fold_without_journals_differs_from_one_with_them_only_in_the_journals() -> None:
    events = run_events()
    full, light = fold(events[:13]), fold(events[:13], journals=False)
    assert full.journals.by_agent and not light.journals.by_agent
    light.journals = full.journals
    assert light == full


def test_snapshot_round_trips_through_json() -> None:
    events = run_events()
    for seq in (13, 28):
        state = fold(events, until_seq=seq)
        restored = RunState.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
        assert restored == state
        # Folding on from a restored snapshot gives what folding straight through gives.
        assert fold(events[seq:], state=restored) == fold(events)


def test_the_executors_of_every_process_are_kept_and_an_older_checkpoint_says_it_cannot_tell() -> None:
    started = {"seq": 1, "t": T0, "run_id": "r1", "type": "run/started", "pid": 1, "executor": "local"}
    resumed = [{"seq": seq, "t": T0 + seq, "run_id": "r1", "type": "run/resumed", "pid": seq, "executor": ex}
               for seq, ex in ((2, "ray"), (3, "ray"), (4, None))]
    state = fold([started, *resumed])
    assert state.executors == ["local", "ray", ""]  # each once; "" a process that did not say
    assert RunState.from_dict(orjson.loads(orjson.dumps(state.to_dict()))).executors == ["local", "ray", ""]
    older = state.to_dict()
    del older["executors"]
    assert RunState.from_dict(older).executors == [""]


def test_the_ray_clusters_of_every_process_are_kept_with_whether_the_last_process_on_each_ended_there() -> None:
    def process(seq: int, executor: str, address: str | None = None) -> dict[str, Any]:
        return {"seq": seq, "t": T0 + seq, "run_id": "r1", "type": "run/resumed" if seq > 1 else "run/started",
                "pid": seq, "executor": executor, "address": address}

    def finished(seq: int, reason: str) -> dict[str, Any]:
        return {"seq": seq, "t": T0 + seq, "run_id": "r1", "type": "run/finished", "reason": reason,
                "status": "failed", "events": seq}

    died_on_a = [process(1, "ray", "10.0.0.1:6379")]
    state = fold(died_on_a)
    assert (state.address, state.clusters) == ("10.0.0.1:6379", {"10.0.0.1:6379": False})
    # Resumed here (and stopped), then on another cluster which it lost, then on one its event does not name.
    later = [process(2, "local"), finished(3, "stopped"), process(4, "ray", "ray://b:10001"), finished(5, "cluster_lost"),
             process(6, "ray")]
    state = fold([*died_on_a, *later])
    assert (state.address, state.clusters) == ("", {"10.0.0.1:6379": False, "ray://b:10001": False, "": False})
    # Back on the first cluster and stopped there: that process's end removed what the run had there.
    state = fold([*died_on_a, *later, process(7, "ray", "10.0.0.1:6379"), finished(8, "stopped")])
    assert (state.address, state.clusters) == ("10.0.0.1:6379", {"10.0.0.1:6379": True, "ray://b:10001": False, "": False})
    assert RunState.from_dict(orjson.loads(orjson.dumps(state.to_dict()))) == state
    # A checkpoint from before clusters were kept: a process on Ray was on a cluster it cannot name.
    older = state.to_dict()
    del older["clusters"], older["address"]
    assert RunState.from_dict(older).clusters == {"": False}
    assert RunState.from_dict({**older, "executors": ["local"]}).clusters == {}


def test_snapshot_is_a_copy_that_later_events_do_not_change() -> None:
    events = run_events()
    state = fold(events, until_seq=12)
    snapshot = state.to_dict()
    fold(events[12:], state=state)
    assert snapshot["locks"] == {"src/": {"writer": "write"}}
    assert [a["status"] for a in snapshot["agents"]] == ["running", "spawned", "spawned"]


def test_the_reducer_tables_are_read_only_views() -> None:
    """No importer can swap a reducer in (or out) of the fold every view and resume share."""
    from agentctl.events.fold import WITH_JOURNALS
    from agentctl.events.journal import HANDLERS
    from agentctl.events.reducers import REDUCERS

    for table in (REDUCERS, HANDLERS, WITH_JOURNALS):
        with pytest.raises(TypeError):
            table["agent/spawned"] = lambda *_: None  # type: ignore[index]
        assert "agent/spawned" in table
    state = fold([{"seq": 1, "t": 1, "run_id": "r", "type": "agent/spawned", "agent_id": "a", "parent_id": None}])
    assert "a" in state.agents and "a" in state.journals.by_agent
