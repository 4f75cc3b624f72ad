"""The command line as people use it every day: help that reads well, mistakes answered in
one line that says what was expected, run ids as short as they can be, no colour when asked.

In-process (Typer's ``CliRunner``); the commands are enumerated from the app, so a command
added later is held to the same rules. Colour is checked against a real pseudo-terminal.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import typer
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
