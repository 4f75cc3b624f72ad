"""The views: live rendering, plain lines, summary, replay and watch, from events only."""

from __future__ import annotations

import io
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from rich.console import Console

from agentctl.events.fold import fold
from agentctl.events.outcomes import Finished
from agentctl.views.live import LiveView, render_run
from agentctl.views.plain import PlainPrinter, format_event, format_time
from agentctl.views.replay import gap_seconds, replay
from agentctl.views.summary import Failure, render_summary, summarize
from agentctl.views.watch import newest_run, watch

T0 = 1_700_000_000_000


class Events:
    """Builds events numbered like the real log."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, type: str, agent_id: str | None = None, **fields: Any) -> dict[str, Any]:
        seq = len(self.events) + 1
        event = {"seq": seq, "t": T0 + 50 * seq, "run_id": "r1", "type": type, "agent_id": agent_id, **fields}
        self.events.append(event)
        return event

    def spawned(self, agent_id: str, parent: str | None, depth: int, max_steps: int | None = 20) -> None:
        self("agent/spawned", agent_id, parent_id=parent, depth=depth, model="qwen3", kind="script",
             tools=["fs/write"], budget={"max_steps": max_steps, "max_tool_calls": None, "max_tokens": None},
             restart="transient")


def small_run() -> list[dict[str, Any]]:
    e = Events()
    e("run/started", pid=1, version="0.1.0", durability="batch", workspace=None, plan=None)  # 1
    e("plan/loaded", file="p.yaml", name="demo", version=1, tasks=2, copy=None)  # 2
    e.spawned("boss", None, 0)  # 3
    e.spawned("greeter", "boss", 1)  # 4
    e.spawned("scribe", "boss", 1)  # 5
    e("agent/status", "boss", status="waiting", reason="idle", steps=1)  # 6
    e("agent/status", "greeter", status="running", reason="start", steps=0)  # 7
    e("tool/requested", "scribe", call_id="c1", tool="fs/write", arguments={})  # 8
    e("agent/status", "scribe", status="running", reason="start", steps=2)  # 9
    e("lock/acquired", "scribe", path="out/", mode="write", count=1)  # 10
    e("agent/done", "greeter", status="ok", result="hi", reason=None, steps=3)  # 11
    e("tool/result", "scribe", call_id="c1", tool="fs/write", ok=False, error="disk full", result=None,
      duration_ms=3.0)  # 12
    e("agent/error", "scribe", error="disk full", error_type="ToolError", where="step")  # 13
    e("agent/done", "boss", status="ok", result=None, reason=None, steps=4)  # 14
    e("run/finished", reason="completed", status="ok", events=15)  # 15
    return e.events


def recording_console(width: int = 140) -> Console:
    return Console(width=width, force_terminal=True, color_system=None, record=True, file=io.StringIO())


def text_of(renderable: Any, width: int = 140) -> str:
    console = recording_console(width)
    console.print(renderable)
    return console.export_text()


def write_log(path: Path, events: list[dict[str, Any]]) -> None:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))


# --- live rendering ------------------------------------------------------------------------


def test_render_run_shows_header_counts_tree_and_latest_events() -> None:
    state = fold(small_run(), until_seq=10)
    text = text_of(render_run(state))
    lines = text.splitlines()

    assert "run r1" in text and "plan demo v1" in text
    assert "agents 3:" in text and "waiting 1" in text and "running 2" in text
    assert "queue depth: tool 1  llm 0" in text
    tree = {name: next(line for line in lines if f" {name} " in f" {line} ") for name in ("boss", "greeter", "scribe")}
    assert tree["boss"].startswith("boss ")
    assert tree["greeter"].startswith("├─ greeter ") and tree["scribe"].startswith("└─ scribe "), "tree guides"
    assert lines.index(tree["boss"]) < lines.index(tree["greeter"]) < lines.index(tree["scribe"])
    assert "tool fs/write" in tree["scribe"] and "out/(w)" in tree["scribe"]
    assert "steps 2/20  tools 0/-  tok 0/-" in tree["scribe"]
    assert "waiting" in tree["boss"]
    assert "spawned  parent=boss" in text, "latest notable events are listed"


def test_render_run_shows_final_statuses_and_plan_invalid_banner() -> None:
    events = small_run()
    events.insert(14, {"seq": 15, "t": T0 + 750, "run_id": "r1", "type": "plan/invalid", "agent_id": None,
                       "file": "p.yaml", "error": {"message": "expected a list", "file": "p.yaml", "line": 7,
                                                   "path": "tasks", "expected": "list", "got": "str"}})
    text = text_of(render_run(fold(events)))
    assert "PLAN INVALID: p.yaml:7 at tasks: expected a list (still running v1)" in text
    assert "finished: completed ok" in text
    assert "done 2" in text and "failed 1" in text


def test_render_run_caps_rows_for_a_thousand_agents() -> None:
    e = Events()
    e.spawned("root", None, 0)
    for i in range(999):
        e.spawned(f"w{i:03d}", "root", 1)
    text = text_of(render_run(fold(e.events), max_agents=50))
    assert "agents 1000:" in text and "spawned 1000" in text
    assert "w048" in text and "w049" not in text
    assert "… 950 more" in text


@pytest.mark.anyio
async def test_live_view_draws_fed_events_and_stops_with_a_final_frame() -> None:
    console = Console(width=140, record=True, file=io.StringIO(), color_system=None)
    view = LiveView(console)
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: view.run(fps=50, stop=stop))
        for event in small_run():
            view.feed(event)
            await anyio.sleep(0)
        stop.set()
    text = console.export_text()
    assert "greeter" in text and "finished: completed ok" in text
    stats = view.statistics()
    assert stats.events == 15 and stats.agents == 3 and stats.renders >= 1


# --- plain lines ---------------------------------------------------------------------------


def shown(event: dict[str, Any]) -> str:
    """The plain line of a notable event (failing the test if it has none)."""
    line = format_event(event)
    assert line is not None, event
    return line


def test_plain_lines_for_notable_events_and_none_for_noise() -> None:
    events = {e["seq"]: e for e in small_run()}
    done = format_event(events[11])
    assert done == f"{format_time(T0 + 550)} #11 greeter  done ok  result='hi'"
    assert "tool fs/write FAILED" in shown(events[12]) and "disk full" in shown(events[12])
    assert "error (step) ToolError: disk full" in shown(events[13])
    assert "run finished completed ok" in shown(events[15])
    assert "plan loaded demo v1" in shown(events[2])
    for noise in (6, 8, 10):  # status, tool requested, lock acquired
        assert format_event(events[noise]) is None
    delivered = {"seq": 1, "t": T0, "type": "agent/message", "agent_id": "a", "from": "b", "to": "a",
                 "kind": "chat", "delivered": True}
    assert format_event(delivered) is None
    assert "UNDELIVERED" in shown({**delivered, "delivered": False})
    assert format_event({"seq": 1, "t": T0, "type": "future/thing", "agent_id": None}) is None
    damaged = format_event({**events[11], "steps": "many"})  # a notable type that does not decode
    assert damaged is not None and "agent/done (unreadable)" in damaged and "'steps': 'many'" in damaged


def test_plain_times_are_local_to_the_millisecond_across_seconds() -> None:
    # The hours, minutes and seconds are cached per second; the milliseconds never are.
    for t in (0, 999, 1000, T0, T0 + 1, T0 + 999, T0 + 1000, T0 + 86_399_999, 1_796_156_647_024):
        assert format_time(t) == datetime.fromtimestamp(t / 1000).strftime("%H:%M:%S.%f")[:-3], t
    assert format_time(None) == "--:--:--.---"


def test_plain_printer_prints_only_notable_lines() -> None:
    out = io.StringIO()
    printer = PlainPrinter(out)
    for event in small_run():
        printer.feed(event)
    lines = out.getvalue().splitlines()
    assert len(lines) == printer.printed == 10  # 15 events, 5 of them noise
    assert lines[0].endswith("run started  run_id=r1  pid=1") and "#15" in lines[-1]


# --- summary -------------------------------------------------------------------------------


def test_summary_counts_outcomes_calls_and_errors() -> None:
    summary = summarize(fold(small_run()))
    assert summary.by_status == {"done": 2, "failed": 1}
    assert (summary.reason, summary.status) == ("completed", "ok")
    assert (summary.tool_calls, summary.tool_failures, summary.llm_calls) == (1, 1, 0)
    greeter = next(a for a in summary.agents if a.id == "greeter")
    assert greeter.duration_ms == 550 - 200 and greeter.steps == 3
    assert summary.failures == (Failure(12, "scribe", "tool fs/write", None, "disk full"),
                                Failure(13, "scribe", "step", "ToolError", "disk full"))
    assert summary.duration_ms == 700

    text = text_of(render_summary(summary))
    assert "greeter" in text and "failed" in text
    assert "failures (2)" in text
    rows = [line for line in text.splitlines() if "#12" in line or "#13" in line]
    assert "scribe" in rows[0] and "tool fs/write" in rows[0] and "disk full" in rows[0]
    assert "step (ToolError)" in rows[1] and "disk full" in rows[1]


def test_summary_failures_keep_the_whole_cause_at_80_columns() -> None:
    events = small_run()
    cause = "permission denied writing out/report.txt: " + " ".join(f"word{i}" for i in range(40)) + " THE-END"
    events[11] = {**events[11], "error": cause}
    text = text_of(render_summary(summarize(fold(events))), width=80)
    assert all(len(line) <= 80 for line in text.splitlines())
    flat = "".join(text.replace("│", "").split())
    assert "".join(cause.split()) in flat, "the cause is wrapped in its column, never cut"


# --- replay and watch ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_replay_at_renders_the_prefix_state(tmp_path: Path) -> None:
    write_log(tmp_path / "events.jsonl", small_run())
    console = recording_console()
    state = await replay(tmp_path, console, at=10)
    assert state == fold(small_run(), until_seq=10, journals=False)
    text = console.export_text()
    assert "scribe" in text and "finished" not in text and "seq 10" in text


@pytest.mark.anyio
async def test_replay_plays_the_log_and_writes_an_svg_despite_a_torn_line(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    write_log(log, small_run())
    with log.open("ab") as f:
        f.write(b'{"seq":16,"t":')
    console = Console(width=120, record=True, file=io.StringIO(), color_system=None)
    svg = tmp_path / "final.svg"
    state = await replay(log, console, speed=0, svg=svg)
    assert state == fold(small_run(), journals=False)
    text = console.export_text()
    # The warning names the file, whose path length varies: read it with wrapping undone.
    assert "line 16 is a torn final line" in " ".join(text.split())
    assert "finished: completed ok" in text
    assert svg.is_file() and "greeter" in svg.read_text()


def test_replay_gaps_follow_event_times_scaled_and_capped() -> None:
    assert gap_seconds(T0, T0 + 500, 1.0) == pytest.approx(0.5)
    assert gap_seconds(T0, T0 + 500, 2.0) == pytest.approx(0.25)
    assert gap_seconds(T0, T0 + 60_000, 1.0) == pytest.approx(2.0), "a long idle gap is capped"
    assert gap_seconds(T0, T0 + 60_000, 4.0) == pytest.approx(0.5)
    assert gap_seconds(T0, T0 + 500, 0) == 0 and gap_seconds(T0 + 5, T0, 1.0) == 0
    assert gap_seconds(None, T0, 1.0) == 0


@pytest.mark.anyio
async def test_watch_follows_a_growing_file_until_run_finished(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    log = run_dir / "events.jsonl"
    log.touch()
    events = small_run()
    console = Console(width=140, record=True, file=io.StringIO(), color_system=None)

    async def writer() -> None:
        for event in events:
            with open(log, "a") as f:  # plain appends, as another process would
                f.write(orjson.dumps(event).decode() + "\n")
            await anyio.sleep(0.001)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            state = (await watch(run_dir, console, fps=100, poll_interval=0.01)).state
    assert state.finished == Finished("completed", "ok")
    assert state == fold(events)
    assert "greeter" in console.export_text()


@pytest.mark.anyio
async def test_watch_returns_when_stopped_before_the_run_finishes(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    write_log(log, small_run()[:5])
    stop = anyio.Event()
    console = Console(width=140, record=True, file=io.StringIO(), color_system=None)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            async def stop_soon() -> None:
                await anyio.sleep(0.05)
                stop.set()

            tg.start_soon(stop_soon)
            state = (await watch(log, console, stop=stop, poll_interval=0.01)).state
    assert state.finished is None and list(state.agents) == ["boss", "greeter", "scribe"]


def test_newest_run_picks_the_latest_dir_with_events(tmp_path: Path) -> None:
    assert newest_run(tmp_path / "missing") is None
    for name, mtime in (("old", 1_000), ("new", 3_000), ("empty", 5_000)):
        d = tmp_path / name
        d.mkdir()
        if name != "empty":
            (d / "events.jsonl").write_text("")
        os.utime(d, (mtime, mtime))
    assert newest_run(tmp_path) == tmp_path / "new"


def test_live_view_on_a_terminal_renders_only_the_rows_that_fit() -> None:
    e = Events()
    e.spawned("root", None, 0)
    for i in range(999):
        e.spawned(f"w{i:03d}", "root", 1)
    console = Console(width=140, height=30, force_terminal=True, color_system=None, record=True, file=io.StringIO())
    view = LiveView(console)
    for event in e.events:
        view.feed(event)
    console.print(view.render())
    lines = console.export_text().splitlines()
    assert len(lines) <= 30
    assert any(line.strip().startswith("… ") and line.strip().endswith(" more") for line in lines)


def test_a_view_sharing_its_owners_state_draws_it_without_folding_again() -> None:
    import io

    from rich.console import Console as _Console

    from agentctl.events.fold import RunState as _RunState
    from agentctl.events.fold import apply
    from agentctl.views.live import LiveView as _LiveView

    shared = _RunState()
    view = _LiveView(_Console(file=io.StringIO(), width=120), state=shared)
    spawned = {"seq": 1, "t": 0, "run_id": "r", "type": "agent/spawned", "agent_id": "solo", "parent_id": None,
               "depth": 0, "model": None, "kind": "script", "tools": [], "budget": {}, "restart": "transient"}
    apply(shared, spawned)
    view.noted(spawned)
    assert list(view.state.agents) == ["solo"] and view.state.last_seq == 1
    assert view.statistics().events == 1
