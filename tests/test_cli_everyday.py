"""The command line as people use it every day: help that reads well, mistakes answered in
one line that says what was expected, run ids as short as they can be, no colour when asked.

In-process (Typer's ``CliRunner``); the commands are enumerated from the app, so a command
added later is held to the same rules. Colour is checked against a real pseudo-terminal.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import typer
from cli_helpers import GATE, of, running, wait_for
from cli_helpers import invoke as run_in_process
from test_cli_runs import dead_run
from typer.core import TyperArgument
from typer.testing import CliRunner

from agentctl.cli.errors import color
from agentctl.cli.main import app

COMMAND = typer.main.get_command(app)
COMMANDS = sorted(COMMAND.commands)  # type: ignore[attr-defined]
#: Typer's own labels of a value's type (``<str>``, ``<path>``, ``<int range>``, ``<list[str]>``).
TYPE_LABEL = re.compile(r"<(str|path|int|float|list|bool)\b[^>]*>")


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def one_line_error(result: Any, *parts: str) -> str:
    """The one stderr line of a refusal (exit 2), checked to hold each of ``parts``."""
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    for part in parts:
        assert part in lines[0], lines[0]
    return str(lines[0])


def test_the_command_list_gives_every_command_a_whole_sentence() -> None:
    """Click cuts a first sentence too long for the list with "..."; each one must fit."""
    listing = invoke("-h").stdout
    rows = listing[listing.index("Commands:"):].splitlines()[1:]
    assert sorted(row.split()[0] for row in rows) == COMMANDS
    for row in rows:
        assert not row.endswith("..."), row
        assert row.rstrip().endswith((".", ")")), row


@pytest.mark.parametrize("name", COMMANDS)
def test_help_names_values_by_meaning_not_by_python_type(name: str) -> None:
    command = COMMAND.commands[name]  # type: ignore[attr-defined]
    ctx = command.make_context(name, ["-h"], resilient_parsing=True)
    shown = invoke(name, "-h").stdout
    for param in command.params:
        record = param.get_help_record(ctx)
        if record is None:
            continue
        if not isinstance(param, TyperArgument):
            assert not TYPE_LABEL.search(record[0]), (name, record[0])
        else:
            label = str(param.metavar)
            assert label == label.upper() and label in shown.splitlines()[0], (name, label)
            assert re.search(rf"^  {re.escape(label)}  ", shown, re.M), (name, label)
    assert not TYPE_LABEL.search(shown), shown


def test_a_missing_argument_is_named_as_the_usage_line_names_it() -> None:
    one_line_error(invoke("validate"), "Missing argument 'PLAN'", "(see 'agentctl validate -h')")
    one_line_error(invoke("export"), "Missing argument 'FORMAT'")


@pytest.mark.parametrize(("args", "expected"), [
    (["ps", "-o", "yaml"], "-o/--output: expected one of text, json, got 'yaml' (see 'agentctl ps -h')"),
    (["batch", "p.yaml", "-o", "xml"], "-o/--output: expected one of text, plain, json, got 'xml'"),
    (["replay", "--speed", "-1"], "--speed: expected a number >= 0, got '-1'"),
    (["replay", "--at", "x"], "--at: expected an integer, got 'x'"),
    (["prune", "--keep", "-3"], "--keep: expected a number >= 0, got '-3'"),
    (["stop", "--timeout", "soon"], "--timeout: expected a number, got 'soon'"),
])
def test_a_bad_flag_value_says_what_was_expected_and_what_came(args: list[str], expected: str) -> None:
    one_line_error(invoke(*args), expected)


def test_the_error_label_is_coloured_on_a_terminal_unless_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    main, other = os.openpty()
    with open(other, "w") as terminal:
        monkeypatch.delenv("NO_COLOR", raising=False)
        monkeypatch.setenv("TERM", "xterm")
        assert color(terminal)
        monkeypatch.setenv("NO_COLOR", "1")
        assert not color(terminal)
        monkeypatch.delenv("NO_COLOR")
        monkeypatch.setenv("TERM", "dumb")
        assert not color(terminal)
    os.close(main)
    with open(os.devnull, "w") as pipe:
        monkeypatch.setenv("TERM", "xterm")
        assert not color(pipe)


def _finished_run(runs: Path, run_id: str, agents: tuple[str, ...] = ("plan",)) -> Path:
    """A run directory whose log is a run that started, spawned ``agents`` and finished ok."""
    run_dir = runs / run_id
    run_dir.mkdir(parents=True)
    t = 1_700_000_000_000
    events: list[dict[str, Any]] = [{"type": "run/started", "agent_id": None, "pid": 1, "version": "0", "durability": "batch",
                                     "workspace": None, "plan": None, "control": "x", "executor": "local"}]
    events += [{"type": "agent/spawned", "agent_id": a, "parent_id": None if a == "plan" else "plan", "depth": int(a != "plan"),
                "kind": "script", "restart": "temporary", "model": None, "tools": [], "budget": {}, "approve": []} for a in agents]
    events.append({"type": "run/finished", "agent_id": None, "reason": "completed", "status": "ok", "events": len(events) + 1})
    lines = [json.dumps({"seq": n, "t": t + n, "run_id": run_id, **e}) for n, e in enumerate(events, 1)]
    (run_dir / "events.jsonl").write_text("\n".join(lines) + "\n")
    return run_dir


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project (the cwd) with three finished runs, two of them started the same minute."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / ".agentctl" / "runs"
    for run_id in ("20261201-100000-aaaaaa", "20261202-120000-bbbbbb", "20261202-120055-bcdef0"):
        _finished_run(root, run_id, ("plan", "worker"))
    return root


@pytest.mark.parametrize("ref", ["20261201", "20261201-1000", "aaa", "bbbb", "20261202-120055"])
def test_a_run_id_may_be_shortened_to_any_unique_start_of_it_or_of_its_tail(ref: str, runs: Path) -> None:
    wanted = {"20261201": "aaaaaa", "20261201-1000": "aaaaaa", "aaa": "aaaaaa", "bbbb": "bbbbbb",
              "20261202-120055": "bcdef0"}[ref]
    result = invoke("logs", ref)
    assert result.exit_code == 0, result.output
    assert f"run_id={next(runs.glob(f'*-{wanted}')).name}" in result.stdout
    described = invoke("describe", ref, "worker", "-o", "json")
    assert json.loads(described.stdout)["run_id"].endswith(wanted)


def test_an_ambiguous_run_id_lists_the_runs_it_could_be(runs: Path) -> None:
    line = one_line_error(invoke("logs", "20261202"), "run id '20261202' is ambiguous", "could be 2 runs")
    assert "20261202-120055-bcdef0, 20261202-120000-bbbbbb" in line  # newest first
    one_line_error(invoke("replay", "--summary", "b"), "ambiguous")
    one_line_error(invoke("logs", "zzz"), "no such run directory, events file or run id: zzz")


def test_an_ambiguous_list_is_cut_short(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for n in range(12):
        _finished_run(tmp_path / ".agentctl" / "runs", f"20261203-0000{n:02d}-cccc{n:02d}")
    line = one_line_error(invoke("logs", "2026"), "could be 12 runs", "and 7 more")
    assert "20261203-000011-cccc11" in line and "20261203-000000-cccc00" not in line


def test_run_resume_takes_a_shortened_run_id(runs: Path) -> None:
    """``--resume`` finds the run by the start of its id (and says it has finished)."""
    result = invoke("run", "--resume", "bcd", "--no-ui")
    assert "20261202-120055-bcdef0" in result.output, result.output
    assert "no such" not in result.output


def test_send_and_stop_reach_the_newest_live_run_past_a_newer_finished_one(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A run started in another terminal is still going; a quick run finished since. ``send``
    and ``stop`` without RUN go to the one still going, not to the newest."""
    (tmp_path / "gate.yaml").write_text(GATE)
    monkeypatch.chdir(tmp_path)
    with running("run", "gate.yaml", "--no-ui", "--no-watch-plan", "--run-dir", ".agentctl/runs/20260101-000000-1ive00",
                 cwd=tmp_path) as proc:
        live = tmp_path / ".agentctl" / "runs" / "20260101-000000-1ive00"
        run_id = wait_for(live, lambda evs: of(evs, "agent/spawned", "gate"))[0]["run_id"]
        _finished_run(tmp_path / ".agentctl" / "runs", "20991231-235959-newest", ("plan", "gate"))
        sent = invoke("send", "--to", "gate", "--kind", "ping", "hello")
        assert sent.exit_code == 0 and f"in run {run_id}" in sent.stdout, sent.output
        stopped = invoke("stop")
        assert stopped.exit_code == 0 and f"stopped run {run_id}" in stopped.stdout, stopped.output
        assert proc.wait(20) == 130
    one_line_error(invoke("stop"), "no running run under .agentctl/runs; the newest, 20991231-235959-newest, has finished (completed)")
    one_line_error(invoke("send", "--to", "gate", "x", "--run", "newest"), "run 20991231-235959-newest has finished")


def test_without_a_live_run_a_dead_one_says_how_to_resume_it(runs: Path) -> None:
    dead_run(runs, "20261205-000000-dead00")
    line = one_line_error(invoke("approve", "c1"), "run 20261205-000000-dead00: its process", "is gone")
    assert "agentctl run --resume .agentctl/runs/20261205-000000-dead00" in line


def test_ps_keeps_run_ids_whole_and_shows_only_what_tells_something(runs: Path) -> None:
    from rich.console import Console

    from agentctl.views.ps import render_ps

    dead_run(runs, "20261205-000000-dead00")
    rows = json.loads(invoke("ps", "-a", "-o", "json").stdout)["runs"]
    narrow = Console(width=50, file=io.StringIO(), color_system=None)
    narrow.print(render_ps(rows))
    shown = narrow.file.getvalue()  # type: ignore[attr-defined]
    for row in rows:
        assert row["id"] in shown, shown
    table = invoke("ps", "-a").stdout
    assert "APPROVAL" not in table  # no run holds a call
    lines = {line.split()[0]: line for line in table.splitlines()[1:]}
    dead = next(r for r in rows if r["id"] == "20261205-000000-dead00")
    assert lines[dead["id"]].split()[-2:] == [str(dead["pid"]), "(gone)"]
    assert lines["20261201-100000-aaaaaa"].split()[-1] == "-"  # a finished run's pid is history


def test_ps_shows_how_long_a_running_run_has_run_not_its_last_event() -> None:
    from datetime import datetime, timezone

    from rich.console import Console

    from agentctl.views.ps import render_ps, span

    row: dict[str, Any] = {"id": "r", "dir": "r", "plan": "p", "status": "running", "reason": None, "started": "2026-12-01T10:00:00+00:00",
           "duration_s": 0.1, "agents": {}, "pid": 7, "alive": True, "approvals": []}
    console = io.StringIO()
    Console(file=console, width=120, color_system=None).print(
        render_ps([row], now=datetime(2026, 12, 1, 11, 2, 5, tzinfo=timezone.utc)))
    assert "1h02m" in console.getvalue()
    assert [span(s) for s in (4.25, 65, 3 * 3600 + 7 * 60, 2 * 86400 + 4 * 3600)] == ["4.2s", "1m05s", "3h07m", "2d04h"]


def test_logs_refuses_a_file_that_is_not_an_event_log_as_replay_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blob").mkdir()
    (tmp_path / "blob" / "events.jsonl").write_bytes(b"\xff\xfe\x00binary" * 50)
    one_line_error(invoke("logs", "blob"), "blob/events.jsonl:1: not an agentctl event log (not JSON)")


def test_an_unknown_agent_is_answered_with_the_nearest_ids(runs: Path) -> None:
    one_line_error(invoke("describe", "aaa", "worker2"), "no agent 'worker2'", "did you mean 'worker'?")
    one_line_error(invoke("logs", "aaa", "--agent", "zz"), "no agent 'zz'", "its agents: plan, worker")


def test_replay_piped_prints_the_final_frame_at_once_ending_its_line(runs: Path) -> None:
    result = invoke("replay", "aaa")
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("\n") and "run finished completed ok" in result.stdout


def test_replay_refuses_an_svg_it_could_not_write_before_playing(runs: Path, tmp_path: Path) -> None:
    result = invoke("replay", "aaa", "--svg", str(tmp_path / "no-dir" / "x.svg"))
    one_line_error(result, f"--svg: no such directory: {tmp_path / 'no-dir'}")
    assert result.stdout == ""  # nothing was played
    one_line_error(invoke("replay", "aaa", "--svg", str(tmp_path)), "is a directory")


def test_a_failed_run_names_an_agent_that_gave_up_itself(tmp_path: Path) -> None:
    """An LLM agent that stops after its calls failed ends with ``done`` status failed, no
    ``agent/error``: the end of the run still says which agent and why."""
    (tmp_path / "plan.yaml").write_text("name: gives-up\ntasks:\n  - id: quitter\n    agent: python\n    step: everyday_gives_up:quit\n")
    (tmp_path / "everyday_gives_up.py").write_text(
        "from agentctl import actions as act\n\n\ndef quit(ctx):\n    return [act.done('failed', 'model unreachable 3 times')]\n")
    proc = run_in_process("run", "plan.yaml", "--no-ui", "--no-watch-plan", "--run-dir", "run", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: agent quitter: ended failed: model unreachable 3 times"]
    closing = proc.stderr.splitlines()[-1]
    assert closing.startswith("run ") and " failed; events: " in closing, closing  # not "failed (failed)"
