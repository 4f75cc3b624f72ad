"""The live view as a person sees it: time that runs on while agents are idle, ``wait`` shown
as waiting, a table that fits 80 columns without cutting ids or statuses, and an SVG that
keeps the tree. Rendered into Rich consoles and compared as text; the run is a real one."""

from __future__ import annotations

import html
import io
import re
from pathlib import Path
from typing import Any

import anyio
import pytest
from rich.console import Console
from test_views import T0, Events, small_run, text_of
from typer.testing import CliRunner

from agentctl.cli.main import app
from agentctl.events.fold import fold
from agentctl.events.reader import read_events
from agentctl.views.live import LiveView, events_per_second, render_run

TREE = """\
name: tree
defaults: {budget: {max_steps: 50, max_seconds: 30}}
tasks:
  - id: coordinator-with-a-long-name
    agent: script
    steps:
      - spawn: {id: researcher-alpha-0001, agent: script, steps: [{sleep: 0.01}, {done: found}]}
      - spawn: {id: researcher-beta-0002, agent: script, steps: [{done: found}]}
      - wait: {kind: done, timeout: 10}
      - wait: {kind: done, timeout: 10}
      - done: all-found
"""


def console80() -> Console:
    return Console(width=80, force_terminal=True, color_system=None, record=True, file=io.StringIO())


@pytest.fixture
def tree_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """A real run of a three-level tree, in this process."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tree.yaml").write_text(TREE)
    result = CliRunner().invoke(app, ["run", "tree.yaml", "--no-ui", "--no-watch-plan", "--run-dir", "run"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return list(read_events(tmp_path / "run" / "events.jsonl"))


# --- time runs on ---------------------------------------------------------------------------


def test_elapsed_time_and_rate_run_on_while_no_event_comes() -> None:
    live = fold(small_run()[:10])  # not finished
    last = live.last_t
    assert last is not None and live.started_t is not None
    at_last = text_of(render_run(live, now_ms=last))
    later = text_of(render_run(live, now_ms=last + 42_000))
    assert f"elapsed {(last - live.started_t) / 1000:.1f}s" in at_last
    assert "elapsed 42.5s" in later
    assert events_per_second(live, now_ms=last) > 0
    assert events_per_second(live, now_ms=last + 42_000) == 0.0, "nothing in the last 5 s"
    assert "events/s 0.0" in later


def test_a_finished_run_shows_its_own_duration_whatever_the_clock() -> None:
    done = fold(small_run())
    assert text_of(render_run(done, now_ms=T0 + 3_600_000)) == text_of(render_run(done))
    assert "elapsed 0.7s" in text_of(render_run(done))


def test_the_rate_counts_only_the_window_before_now() -> None:
    e = Events()
    for _ in range(100):
        e("agent/status", "a", status="running", reason="act", steps=1)  # 50 ms apart: 20/s
    state = fold(e.events)
    last = state.last_t
    assert last is not None
    assert events_per_second(state) == pytest.approx(20.0)
    assert events_per_second(state, now_ms=last) == pytest.approx(20.0, rel=0.02)
    assert events_per_second(state, now_ms=last + 2_500) == pytest.approx(10.0, rel=0.05), "half the window idle"


@pytest.mark.anyio
async def test_a_live_view_with_a_clock_redraws_while_idle() -> None:
    now = [T0]
    console = Console(width=140, record=True, file=io.StringIO(), color_system=None)
    view = LiveView(console, clock=lambda: now[0], tick=0.01)
    for event in small_run()[:10]:
        view.feed(event)
    stop = anyio.Event()
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: view.run(fps=100, stop=stop))
            first = view.statistics().renders
            now[0] = T0 + 90_050  # 90 s after the run started, and no event since
            while view.statistics().renders < first + 3:
                await anyio.sleep(0.01)
            stop.set()
    assert view.statistics().events == 10
    assert "elapsed 1m30s" in console.export_text()


# --- wait is waiting ------------------------------------------------------------------------


def test_an_agent_in_a_wait_step_is_shown_waiting(tree_run: list[dict[str, Any]]) -> None:
    waits = [e for e in tree_run if e["type"] == "agent/status" and e["agent_id"] == "coordinator-with-a-long-name"
             and e["status"] == "waiting" and e["reason"] == "wait"]
    assert waits, "the wait step is logged as waiting"
    assert not [e for e in tree_run if e["type"] == "agent/status" and e["agent_id"] == "coordinator-with-a-long-name"
                and e["status"] == "sleeping"]
    state = fold(tree_run, until_seq=waits[0]["seq"])
    row = next(line for line in text_of(render_run(state)).splitlines() if "coordinator-with-a-long-name" in line)
    assert "waiting" in row and "wait for a message" in row and "sleeping" not in row


# --- 80 columns -----------------------------------------------------------------------------


def _deep_state() -> Any:
    e = Events()
    e("run/started", pid=1, version="0", durability="batch", workspace=None, plan=None)
    e("agent/spawned", "plan", parent_id=None, depth=0, model=None, kind="plan", tools=[], budget={}, restart=None)
    for depth, (agent, parent) in enumerate([("coordinator-with-a-long-name", "plan"),
                                             ("researcher-alpha-0001", "coordinator-with-a-long-name"),
                                             ("summarizer-of-findings", "researcher-alpha-0001")], start=1):
        e("agent/spawned", agent, parent_id=parent, depth=depth, model="qwen2.5:14b-instruct", kind="llm",
          tools=["fs/write"], budget={"max_steps": 500, "max_tool_calls": 200, "max_tokens": 200000}, restart=None)
    e("agent/status", "summarizer-of-findings", status="blocked", reason="lock", steps=12)
    e("lock/acquired", "researcher-alpha-0001", path="out/findings.md", mode="write", count=1)
    e("tool/requested", "researcher-alpha-0001", call_id="c1", tool="fs/write", arguments={})
    e("agent/done", "coordinator-with-a-long-name", status="failed", result=None, reason=None, steps=7)
    return fold(e.events)


def test_at_80_columns_ids_and_statuses_are_whole_and_the_budget_gives_way() -> None:
    state = _deep_state()
    wide = text_of(render_run(state), width=200)
    narrow = console80()
    narrow.print(render_run(state))
    text = narrow.export_text()
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert any(line.startswith("queue depth: ") and line.rstrip().endswith("tokens 0+0") for line in text.splitlines())
    assert any(line.startswith("messages 0 (") and "llm 0 (failed 0)" in line for line in text.splitlines()), \
        "the header's counts are not broken mid-phrase"
    for guide_and_id, status in (("plan", "spawned"), ("└─ coordinator-with-a-long-name", "failed (failed)"),
                                 ("   └─ researcher-alpha-0001", "spawned"),
                                 ("      └─ summarizer-of-findings", "blocked")):
        row = next(line for line in text.splitlines() if line.startswith(guide_and_id + " "))
        assert re.search(rf"\s{re.escape(status)}\s", row), (status, row)
    assert "steps 12/500  tools 0/200  tok 0/200000" in wide, "whole at full width"
    assert "steps 12/500  tools 0/200  tok 0/200000" not in text and "…" in text, "the budget column is cut"


def test_columns_give_way_in_order_as_the_console_narrows() -> None:
    state = _deep_state()
    headers = {}
    for width in (200, 120, 100, 80):
        header = next(line for line in text_of(render_run(state), width=width).splitlines() if line.startswith("id "))
        headers[width] = header.split()
    assert {"depth", "model", "locks"} <= set(headers[200])
    assert "depth" not in headers[80] and {"id", "status", "steps", "budget"} <= set(headers[80])
    assert [len(h) for h in headers.values()] == sorted((len(h) for h in headers.values()), reverse=True)


# --- SVG ------------------------------------------------------------------------------------


def _svg_lines(svg: str) -> list[str]:
    """The text of each line of a Rich SVG export, by its y position."""
    rows: dict[float, list[tuple[float, str]]] = {}
    for x, y, text in re.findall(r'<text [^>]*?x="([\d.]+)" y="([\d.]+)"[^>]*>([^<]*)</text>', svg):
        rows.setdefault(float(y), []).append((float(x), html.unescape(text).replace("\xa0", " ")))
    lines = []
    for _, parts in sorted(rows.items()):
        line = ""
        for x, text in sorted(parts):
            line = line.ljust(round(x / 12.2)) + text
        lines.append(line.rstrip("\n"))
    return lines


def test_replay_svg_keeps_the_tree_indentation(tree_run: list[dict[str, Any]], tmp_path: Path) -> None:
    svg = tmp_path / "tree.svg"
    result = CliRunner().invoke(app, ["replay", "run", "--speed", "0", "--svg", str(svg)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = _svg_lines(svg.read_text())
    expected = [("plan", ""), ("coordinator-with-a-long-name", "└─ "), ("researcher-alpha-0001", "   ├─ "),
                ("researcher-beta-0002", "   └─ ")]
    for agent, guide in expected:
        assert any(line.startswith(f"{guide}{agent} ") for line in lines), (agent, guide, lines)
