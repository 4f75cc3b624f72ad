"""Tests of the event reader (agentctl.events.reader) against real files."""

from __future__ import annotations

from collections.abc import Callable, Generator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from agentctl.errors import CorruptLogError, LogError
from agentctl.events import follow_events, open_event_log, read_events, read_run_events


def line(seq: int, **fields: Any) -> bytes:
    event = {"seq": seq, "t": 1, "run_id": "r", "type": "e", "agent_id": None, **fields}
    return orjson.dumps(event) + b"\n"


@pytest.mark.anyio
async def test_round_trip_of_10k_events(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    emitted: list[dict[str, Any]] = []
    async with open_event_log(path, "r") as log:
        log.subscribe(emitted.append)
        for i in range(10_000):
            log.emit("agent/message", f"a{i % 7}", msg_id=f"m{i}", body={"n": i, "l": [i, "x"]}, delivered=True)
            if i % 500 == 0:
                await anyio.sleep(0)
    stream = read_events(path)
    assert list(stream) == emitted
    assert stream.lines_read == 10_000
    assert stream.torn_line is None


def test_torn_final_line_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(line(1) + line(2) + line(3) + b'{"seq":4,"t":1,"ru')
    stream = read_events(path)
    assert [e["seq"] for e in stream] == [1, 2, 3]
    assert stream.torn_line == 4
    assert stream.lines_read == 4


def test_final_line_without_newline_that_parses_is_an_event(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(line(1) + line(2).rstrip(b"\n"))
    stream = read_events(path)
    assert [e["seq"] for e in stream] == [1, 2]
    assert stream.torn_line is None


def test_corrupt_middle_line_raises_with_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(line(1) + line(2) + b"garbage{\n" + line(4))
    with pytest.raises(CorruptLogError) as info:
        list(read_events(path))
    assert info.value.line == 3
    assert info.value.file == str(path)
    assert f"{path}:3" in str(info.value)


def test_a_middle_line_that_is_json_but_not_an_object_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(line(1) + b"[1, 2]\n" + line(3))
    with pytest.raises(CorruptLogError) as info:
        list(read_events(path))
    assert info.value.line == 2


def test_blank_lines_are_skipped_and_start_seq_filters(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    reordered = orjson.dumps({"type": "e", "seq": 2, "t": 1}) + b"\n"  # not in writer key order
    path.write_bytes(line(1) + b"\n" + reordered + b"   \n" + line(3) + line(4))
    assert [e["seq"] for e in read_events(path)] == [1, 2, 3, 4]
    assert [e["seq"] for e in read_events(path, start_seq=2)] == [2, 3, 4]
    assert [e["seq"] for e in read_events(path, start_seq=4)] == [4]


def test_bad_lines_far_into_a_large_file_are_named_by_their_line_number(tmp_path: Path) -> None:
    # Lines are parsed many at a time; a failure must still name the exact line, in any block.
    path = tmp_path / "events.jsonl"
    good = b"".join(line(i, body="x" * 50) for i in range(1, 5001))
    for bad, why in ((b"garbage{\n", "not JSON"), (b"7\n", "not a JSON object"), (b'{"a": 1}, {"b": 2}\n', "not JSON")):
        path.write_bytes(good + bad + line(5002))
        stream = read_events(path)
        seen = []
        with pytest.raises(CorruptLogError, match=why) as info:
            for event in stream:
                seen.append(event["seq"])
        assert info.value.line == 5001
        assert seen == list(range(1, 5001))  # everything before the bad line came out first


def test_lines_longer_than_a_read_and_blank_lines_between_blocks(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    huge = line(2, body="y" * 200_000)
    path.write_bytes(line(1) + huge + b"\n\n" + b"".join(line(i) for i in range(3, 3000)) + b"  \n" + line(3000))
    stream = read_events(path)
    events = list(stream)
    assert [e["seq"] for e in events] == list(range(1, 3001))
    assert len(events[1]["body"]) == 200_000
    assert stream.lines_read == 3003 and stream.torn_line is None  # blank lines count as lines


def test_reading_is_lazy_line_by_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(line(1) + b"not json\n" + line(3))
    iterator = iter(read_events(path))
    assert isinstance(iterator, Generator)
    # The first event comes out before the corrupt second line is ever parsed.
    assert next(iterator)["seq"] == 1
    with pytest.raises(CorruptLogError):
        next(iterator)


def test_missing_files_raise_log_error_and_run_dirs_resolve(tmp_path: Path) -> None:
    with pytest.raises(LogError, match="no such events file"):
        read_events(tmp_path / "nope.jsonl")
    with pytest.raises(LogError, match="no events.jsonl"):
        read_run_events(tmp_path)
    with pytest.raises(LogError):
        read_run_events(tmp_path / "missing")
    events = tmp_path / "events.jsonl"
    events.write_bytes(line(1))
    assert read_run_events(tmp_path) == events
    assert read_run_events(events) == events
    assert read_run_events(str(events)) == events


@pytest.mark.anyio
async def test_follow_sees_events_from_a_concurrent_writer_started_later(tmp_path: Path) -> None:
    path = tmp_path / "run" / "events.jsonl"  # does not exist yet when following starts
    got: list[dict[str, Any]] = []
    emitted: list[dict[str, Any]] = []
    follower_started = anyio.Event()
    stop = anyio.Event()

    async def follow() -> None:
        follower_started.set()
        async with aclosing(follow_events(path, poll_interval=0.005, stop=stop)) as events:
            async for event in events:
                got.append(event)
                if len(got) == 300:
                    stop.set()

    async def write() -> None:
        await follower_started.wait()
        async with open_event_log(path, "r") as log:
            log.subscribe(emitted.append)
            for i in range(300):
                log.emit("e", None, i=i)
                if i % 50 == 0:
                    await log.flushed()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            tg.start_soon(write)
    assert got == emitted


@pytest.mark.anyio
async def test_follow_buffers_a_partial_line_until_its_newline_arrives(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    second = line(2, note="split across writes")
    path.write_bytes(line(1) + second[:15])
    send, receive = anyio.create_memory_object_stream[dict[str, Any]](10)
    stop = anyio.Event()

    async def follow() -> None:
        async with send, aclosing(follow_events(path, poll_interval=0.005, stop=stop)) as events:
            async for event in events:
                await send.send(event)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            first = await receive.receive()
            assert first["seq"] == 1
            # Give the follower several polls over the partial line; it must not yield it.
            for _ in range(5):
                await anyio.sleep(0.01)
            assert receive.statistics().current_buffer_used == 0
            with path.open("ab") as f:
                f.write(second[15:])
            assert await receive.receive() == orjson.loads(second)
            with path.open("ab") as f:
                f.write(line(3))
            stop.set()  # stop still delivers what the file already holds
            rest = [event async for event in receive]
    assert [e["seq"] for e in rest] == [3]


@pytest.mark.anyio
async def test_follow_raises_on_a_corrupt_complete_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(line(1) + b"oops\n")
    got: list[int] = []
    with pytest.raises(CorruptLogError) as info:
        async with aclosing(follow_events(path, poll_interval=0.005)) as events:
            async for event in events:
                got.append(event["seq"])
    assert got == [1]
    assert info.value.line == 2


@pytest.mark.anyio
async def test_follow_honours_start_seq_and_ends_when_stopped_before_the_file_exists(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    stop = anyio.Event()
    stop.set()
    assert [e async for e in follow_events(tmp_path / "never.jsonl", stop=stop)] == []
    path.write_bytes(line(1) + line(2) + line(3))
    got = [e["seq"] async for e in follow_events(path, start_seq=2, stop=stop)]
    assert got == [2, 3]


@pytest.mark.parametrize("text", [
    b"", b"\n\n", b'{"seq":1}\n', b'{"seq":1}\n{"seq":2}', b'{"seq":1}\n{"seq":2}\n\n  \n', b'{"seq":1}\n{"se',
    b'{"seq":1,"x":"' + b"a" * 50 + b'"}\n{"seq":2', b'{"seq":1}\nbad\n{"seq":3', b'{"seq":1}\n[1]\n', b'{"seq":1}\n[1]',
    b"torn", b'{"seq":1}\n\n\nnot json\n',
])
@pytest.mark.parametrize("chunk", [3, 7, 1 << 16])
def test_last_event_is_the_streams_last_read_from_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           text: bytes, chunk: int) -> None:
    """``last_event`` gives what iterating the file gives last, or the same error on the same
    line, whatever the size of the pieces it reads back from the end."""
    from agentctl.events import reader

    monkeypatch.setattr(reader, "_TAIL", chunk)
    path = tmp_path / "events.jsonl"
    path.write_bytes(text)

    def outcome(read: Callable[[], object]) -> object:
        try:
            return read()
        except CorruptLogError as exc:
            return ("corrupt", exc.line, exc.reason.partition(":")[0])

    streamed = outcome(lambda: next(reversed(list(read_events(path))), None))
    assert outcome(lambda: reader.last_event(path)) == streamed
