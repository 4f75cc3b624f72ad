"""Every command, given bad input, answers with one line on stderr and exit 2, never a traceback.

The commands are enumerated from the Typer app, so a command added later is walked too.
In-process (Typer's ``CliRunner``); ``test_cli_entry_point`` checks the real executable.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from cli_helpers import AGENTCTL, ROOT, cli
from typer.testing import CliRunner

from agentctl.cli.main import app

COMMAND = typer.main.get_command(app)
COMMANDS = sorted(COMMAND.commands)  # type: ignore[attr-defined]
#: Names of parameters that take a file or a run even when typed ``str`` (a run id, say).
FILE_LIKE = ("plan", "run", "target", "events", "file", "dir", "workspace", "resume", "svg")


def invoke(args: list[str]) -> Any:
    return CliRunner().invoke(app, args, catch_exceptions=False)


def assert_one_line_exit_2(result: Any, args: list[str]) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.output, (args, result.output)
    assert result.exit_code == 2, (args, result.exit_code, result.output)
    assert len(lines) == 1, (args, result.stderr)


def _params(name: str) -> list[Any]:
    return list(COMMAND.commands[name].params)  # type: ignore[attr-defined]


def _takes_a_file(param: Any) -> bool:
    if getattr(param, "is_flag", False):
        return False
    return bool(param.type_descriptor.is_path) or (param.name or "") in FILE_LIKE


def _call(name: str, bad: str, param: Any | None) -> list[str]:
    """``agentctl NAME`` with every required parameter (and ``param``) given ``bad``."""
    args = [name]
    for p in _params(name):
        if p is not param and not p.required:
            continue
        value = bad if p.type_descriptor.annotation in (str, Path) or _takes_a_file(p) else "1"
        args += [value] if p.param_type_name == "argument" else [p.opts[0], value]
    return args


@pytest.fixture
def bad_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Files of every wrong kind, in an empty project directory (so there is no newest run)."""
    monkeypatch.chdir(tmp_path)
    text = tmp_path / "notes.md"
    shutil.copyfile(ROOT / "README.md", text)
    binary = tmp_path / "blob.bin"
    binary.write_bytes(bytes(range(256)) * 64 + b"\x00\xff\n" + os.urandom(512))
    empty_dir = tmp_path / "not-a-run"
    empty_dir.mkdir()
    return {
        "missing file": str(tmp_path / "no-such-file.yaml"),
        "unknown run": "20990101-000000-abcdef",
        "text file": str(text),
        "binary file": str(binary),
        "directory": str(empty_dir),
    }


def _cases() -> Iterator[tuple[str, str]]:
    for name in COMMANDS:
        params = [p for p in _params(name) if _takes_a_file(p)] or [None]
        for p in params:
            yield name, (p.name if p is not None else "")


@pytest.mark.parametrize(("name", "param_name"), list(_cases()))
def test_every_command_refuses_bad_files_in_one_line(name: str, param_name: str, bad_files: dict[str, str]) -> None:
    param = next((p for p in _params(name) if p.name == param_name), None)
    for bad in bad_files.values():
        args = _call(name, bad, param)
        if len(args) == 1:
            continue  # nothing of this command takes a file
        assert_one_line_exit_2(invoke(args), args)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_refuses_an_unknown_flag_in_one_line(name: str, bad_files: dict[str, str]) -> None:
    result = invoke([name, "--no-such-flag"])
    assert_one_line_exit_2(result, [name, "--no-such-flag"])
    assert "--no-such-flag" in result.stderr and f"agentctl {name} -h" in result.stderr


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_without_arguments_runs_or_says_what_is_missing(name: str, bad_files: dict[str, str]) -> None:
    result = invoke([name])
    if result.exit_code != 0:
        assert_one_line_exit_2(result, [name])


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_under_h_with_a_usage_line(name: str) -> None:
    result = invoke([name, "-h"])
    assert result.exit_code == 0, result.output
    usage = result.output.splitlines()[0]
    assert usage.startswith(f"Usage: agentctl {name} ")
    assert "{" not in usage, usage
    assert invoke([name, "--help"]).output == result.output


def test_help_shows_defaults_written_in_help_texts() -> None:
    """``[default: …]`` in a help text is printed, not eaten as markup."""
    for name in COMMANDS:
        for p in _params(name):
            help_text = getattr(p, "help", None) or ""
            if "[default:" in help_text:
                shown = " ".join(invoke([name, "-h"]).output.split())
                default = help_text[help_text.index("[default:"):]
                assert " ".join(default.split()) in shown, (name, p.name)
    assert "[default: 1.0" in " ".join(invoke(["replay", "-h"]).output.split())


def test_an_unknown_command_is_one_line_with_a_suggestion() -> None:
    result = invoke(["replya"])
    assert_one_line_exit_2(result, ["replya"])
    assert "'replay'" in result.stderr


def test_shell_completion_is_offered(tmp_path: Path) -> None:
    """``--show-completion`` is a flag: the shell is the nearest one among the process's
    ancestors (shellingham), never an argument. In-process that was whatever launched pytest
    (``sh -c`` gives 'Shell sh not supported'); here the parent is bash, as in a terminal."""
    proc = subprocess.run(["bash", "-c", f"{AGENTCTL} --show-completion; exit $?"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "_AGENTCTL_COMPLETE=complete_bash" in proc.stdout


def _event(seq: int, type: str) -> str:
    return f'{{"seq":{seq},"t":1700000000000,"run_id":"r1","type":"{type}","agent_id":null}}\n'


@pytest.mark.parametrize("extra", [["--speed", "0"], ["--at", "3"], ["--summary"], ["--svg", "out.svg"], None])
def test_replay_and_watch_name_a_corrupt_middle_line(extra: list[str] | None, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    log = tmp_path / "events.jsonl"
    log.write_text(_event(1, "run/started") + '{"seq":2,"t":17000\n' + _event(3, "run/finished"))
    args = ["watch", str(log)] if extra is None else ["replay", str(log), *extra]
    result = invoke(args)
    assert_one_line_exit_2(result, args)
    assert f"{log}:2: " in result.stderr


@pytest.mark.parametrize("kind", ["plan", "readme", "binary", "json", "blank first line"])
@pytest.mark.parametrize("command", ["replay", "watch"])
def test_replay_and_watch_refuse_a_file_that_is_not_an_event_log(command: str, kind: str, tmp_path: Path) -> None:
    path = tmp_path / "file"
    if kind == "plan":
        shutil.copyfile(ROOT / "plans" / "hello.yaml", path)
    elif kind == "readme":
        shutil.copyfile(ROOT / "README.md", path)
    elif kind == "binary":
        path.write_bytes(b"\n\x00" + random.Random(14).randbytes(4096))
    elif kind == "json":
        path.write_text('{"name": "not an event"}\n')
    else:
        path.write_text("\n  \nname: x\n")
    result = invoke([command, str(path)])
    assert_one_line_exit_2(result, [command, kind])
    line = {"binary": 2, "blank first line": 3}.get(kind, 1)
    assert f"{path}:{line}: not an agentctl event log" in result.stderr


def test_the_real_entry_point_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    for args in (["replay", str(ROOT / "README.md")], ["run", "--bogus", "x"], ["watch", str(tmp_path)]):
        proc = cli(*args, cwd=tmp_path)
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
