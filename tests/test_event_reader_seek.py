"""Reading from a seq bisects the file, and still names real line numbers."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from agentctl.errors import CorruptLogError
from agentctl.events.reader import read_events


def write_log(path: Path, n: int) -> list[bytes]:
    lines = [orjson.dumps({"seq": i, "t": 0, "run_id": "r", "type": "x", "agent_id": None, "pad": "y" * (i % 97)})
             for i in range(1, n + 1)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return lines


@pytest.mark.parametrize("start", [2, 3, 5_000, 99_999, 100_000, 100_001])
def test_start_seq_yields_exactly_the_tail(tmp_path: Path, start: int) -> None:
    path = tmp_path / "events.jsonl"
    write_log(path, 100_000)
    assert [e["seq"] for e in read_events(path, start_seq=start)] == list(range(start, 100_001))


def test_a_corrupt_line_after_the_seek_point_is_named_by_its_real_number(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lines = write_log(path, 100_000)
    lines[80_000] = b"not json"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(CorruptLogError) as info:
        list(read_events(path, start_seq=70_000))
    assert info.value.line == 80_001


def test_a_torn_last_line_after_the_seek_point_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_log(path, 100_000)
    with open(path, "ab") as f:
        f.write(b'{"seq": 100001, "t"')
    stream = read_events(path, start_seq=99_000)
    assert [e["seq"] for e in stream][-1] == 100_000
    assert stream.torn_line == 100_001
