"""Tests of the event log writer (agentctl.events.log) against real files."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from agentctl.errors import LogError
from agentctl.events import EventLog, open_event_log, read_events

pytestmark = pytest.mark.anyio


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


async def test_seq_is_gap_free_and_monotonic_across_many_batches(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, "run-1", durability="batch", max_batch=7)
    async with anyio.create_task_group() as tg:
        await tg.start(log.run)
        for burst in range(50):
            for i in range(40):
                log.emit("agent/status", f"a{i}", status="running", reason=None, steps=burst)
            await anyio.sleep(0)  # let the writer take a batch
        await log.aclose()
    seqs = [e["seq"] for e in lines_of(path)]
    assert seqs == list(range(1, 2001))
    stats = log.statistics()
    assert stats.batches > 1
    assert (stats.emitted, stats.written, stats.pending, stats.last_seq) == (2000, 2000, 0, 2000)


async def test_every_event_has_the_common_fields(tmp_path: Path) -> None:
    path = tmp_path / "run" / "events.jsonl"  # parent created on open
    before = time.time_ns() // 1_000_000
    async with open_event_log(path, "run-7") as log:
        returned = log.emit("run/started", None, pid=os.getpid())
        log.emit("agent/done", "root", status="ok", result=3, reason=None, steps=1)
    after = time.time_ns() // 1_000_000
    events = lines_of(path)
    assert events[0] == returned
    for event in events:
        assert list(event)[:5] == ["seq", "t", "run_id", "type", "agent_id"]
        assert event["run_id"] == "run-7"
        assert isinstance(event["t"], int) and before <= event["t"] <= after
    assert [e["agent_id"] for e in events] == [None, "root"]
    assert events[1]["result"] == 3


@pytest.mark.parametrize("durability", ["none", "batch", "always"])
async def test_each_durability_writes_everything_with_its_own_fsync_count(
    tmp_path: Path, durability: str
) -> None:
    path = tmp_path / "events.jsonl"
    async with open_event_log(path, "r", durability=durability) as log:  # type: ignore[arg-type]
        for round_ in range(5):
            for i in range(10):
                log.emit("tick", None, i=i, round=round_)
            await log.flushed()
        stats = log.statistics()
    assert [e["seq"] for e in lines_of(path)] == list(range(1, 51))
    assert stats.written == 50
    if durability == "none":
        assert stats.fsyncs == 0
    elif durability == "batch":
        assert 1 <= stats.fsyncs <= 5  # one per group commit, not one per event
        assert stats.fsyncs == stats.batches
    else:
        assert stats.fsyncs == 50


async def test_flushed_returns_only_once_the_line_is_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    async with open_event_log(path, "r", durability="batch") as log:
        for i in range(1, 30):
            event = log.emit("tool/requested", "a", call_id=f"c{i}")
            await log.flushed(event["seq"])
            on_disk = lines_of(path)
            assert on_disk[-1]["seq"] >= event["seq"]
            assert on_disk[event["seq"] - 1] == event
            assert log.statistics().written >= event["seq"]


async def test_many_flushed_waiters_share_one_fsync(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    released: list[int] = []
    async with open_event_log(path, "r", durability="batch") as log:

        async def wait_for(seq: int) -> None:
            await log.flushed(seq)
            released.append(seq)

        async with anyio.create_task_group() as tg:
            for i in range(20):
                event = log.emit("tool/requested", "a", n=i)
                tg.start_soon(wait_for, event["seq"])
        assert log.statistics().fsyncs == 1
    assert sorted(released) == list(range(1, 21))


async def test_open_event_log_flushes_on_exception_and_reraises_it(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with pytest.raises(KeyError, match="boom"):
        async with open_event_log(path, "r") as log:
            for i in range(1000):
                log.emit("e", None, i=i)
            raise KeyError("boom")
    assert [e["i"] for e in lines_of(path)] == list(range(1000))


async def test_open_event_log_flushes_on_cancellation(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with anyio.CancelScope() as scope:
        async with open_event_log(path, "r") as log:
            for i in range(1000):
                log.emit("e", None, i=i)
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert [e["i"] for e in lines_of(path)] == list(range(1000))


async def test_writer_cancelled_mid_batch_loses_and_repeats_nothing(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, "r", durability="none", max_batch=10)
    async with anyio.create_task_group() as tg:
        await tg.start(log.run)
        for i in range(100):
            log.emit("e", None, i=i)
        while log.statistics().written == 0:
            await anyio.sleep(0)
        assert 0 < log.statistics().written < 100  # the writer is between two chunks
        tg.cancel_scope.cancel()
    await log.aclose()
    assert [e["i"] for e in lines_of(path)] == list(range(100))


async def test_emit_after_close_raises_and_flushed_returns(tmp_path: Path) -> None:
    async with open_event_log(tmp_path / "events.jsonl", "r") as log:
        log.emit("e")
    with pytest.raises(LogError, match="closed"):
        log.emit("late")
    await log.flushed(1)  # closed: everything is flushed, must not hang
    await log.aclose()  # idempotent


@dataclass(frozen=True, slots=True)
class Point:
    x: int
    y: int


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque thing>"


async def test_odd_values_are_written_not_crashing_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    async with open_event_log(path, "r") as log:
        log.emit(
            "odd",
            None,
            a_set={3, 1, 2},
            frozen=frozenset({"x"}),
            a_tuple=(1, "two"),
            obj=Opaque(),
            point=Point(1, 2),
            where=tmp_path,
            raw=b"bytes",
            int_keys={1: "one"},
        )
        log.emit("huge", None, n=2**70, ok=1)
        log.emit("cycle", None, c=cyclic)
        log.emit("after", None)
    odd, huge, cycle, after = lines_of(path)
    assert odd["a_set"] == [1, 2, 3]
    assert odd["frozen"] == ["x"]
    assert odd["a_tuple"] == [1, "two"]
    assert odd["obj"] == "<Opaque thing>"
    assert odd["point"] == {"x": 1, "y": 2}
    assert odd["where"] == str(tmp_path)
    assert odd["raw"] == "bytes"
    assert odd["int_keys"] == {"1": "one"}
    assert huge["n"] == repr(2**70) and huge["ok"] == 1 and huge["seq"] == 2
    assert isinstance(cycle["c"], str) and cycle["seq"] == 3
    assert after["seq"] == 4


async def test_subscribers_see_every_event_until_they_unsubscribe(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    other: list[int] = []
    async with open_event_log(tmp_path / "events.jsonl", "r") as log:
        unsubscribe = log.subscribe(seen.append)
        log.subscribe(lambda e: other.append(e["seq"]))
        emitted = [log.emit("e", None, i=i) for i in range(100)]
        unsubscribe()
        unsubscribe()  # harmless twice
        log.emit("after")
    assert seen == emitted
    assert other == list(range(1, 102))


async def test_a_failing_subscriber_does_not_hide_the_event_from_others(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    seen: list[int] = []

    def broken(event: dict[str, Any]) -> None:
        raise RuntimeError("view bug")

    async with open_event_log(path, "r") as log:
        log.subscribe(broken)
        log.subscribe(lambda e: seen.append(e["seq"]))
        with pytest.raises(RuntimeError, match="view bug"):
            log.emit("e")
    assert seen == [1]
    assert [e["seq"] for e in lines_of(path)] == [1]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
async def test_write_failure_reaches_flushed_emit_and_close() -> None:
    with pytest.raises(LogError, match="cannot write"):  # raised by closing, on a clean exit
        async with open_event_log("/dev/full", "r") as log:
            event = log.emit("e")
            with pytest.raises(LogError, match="No space"):
                await log.flushed(event["seq"])
            with pytest.raises(LogError):
                log.emit("more")


async def test_memory_only_log_feeds_subscribers_and_flushes() -> None:
    seen: list[str] = []
    async with open_event_log(None, "r") as log:
        log.subscribe(lambda e: seen.append(e["type"]))
        log.emit("a")
        event = log.emit("b")
        await log.flushed(event["seq"])
        assert log.path is None
        assert log.statistics().written == 2
    assert seen == ["a", "b"]
    assert log.statistics().fsyncs == 0


async def test_flushed_drains_inline_when_no_writer_loop_runs(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, "r")
    event = log.emit("e")
    await log.flushed(event["seq"])
    assert lines_of(path) == [event]
    await log.aclose()


async def test_resumed_log_continues_seq_and_repairs_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    async with open_event_log(path, "r") as log:
        log.emit("a")
        log.emit("b")
    with path.open("ab") as f:
        f.write(b'{"seq":3,"t":1,"run_id"')  # a crash mid-write
    async with open_event_log(path, "r", start_seq=3) as log:
        log.emit("c")
    stream = read_events(path)
    assert [(e["seq"], e["type"]) for e in stream] == [(1, "a"), (2, "b"), (3, "c")]
    assert stream.torn_line is None


async def test_a_complete_tail_without_newline_is_kept_on_resume(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"seq":1,"t":1,"run_id":"r","type":"a","agent_id":null}')
    async with open_event_log(path, "r", start_seq=2) as log:
        log.emit("b")
    assert [e["type"] for e in lines_of(path)] == ["a", "b"]


async def test_fields_may_not_override_common_fields_and_unknown_seq_is_refused() -> None:
    log = EventLog(None, "r")
    with pytest.raises(ValueError):
        log.emit("e", None, seq=99)
    with pytest.raises(ValueError):
        await log.flushed(5)
    assert log.emit("ok")["seq"] == 1
    await log.aclose()
