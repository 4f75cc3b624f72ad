"""A sweep of hostile input: every mutation must end in one line on stderr and exit 2, or be read.

Mutations of a valid plan (YAML and EDN), of a real run's ``events.jsonl`` (through the
views, and ``watch``, which follows a log until its run ends: it must end, or wait only while
the log may go on), of its run directory, and bad values for every option of every command. Each answer must be a
documented exit code, never a traceback; exit 2 comes with exactly one line for the error.
Other lines on stderr may only be the warnings and notes the views print before it
(``warning: …`` for a log a resume would refuse) and ``run``'s closing ``run ID …`` line.

The default suite walks a deterministic sample of each family (every key path is hit, with
one wrong value each); ``-m slow`` walks all of them (every wrong value, every byte cut).
In-process through Typer's ``CliRunner``.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from cli_helpers import PLANS
from typer.testing import CliRunner

from agentctl.cli.main import app
from agentctl.cli.views import blame_the_log
from agentctl.errors import AgentctlError
from agentctl.events.reader import read_events
from agentctl.views.otel import trace_of
from agentctl.views.runs import process_alive

#: A run with a tool call that fails, a spawned child, a message, a lock: many event types.
PLAN = """\
name: sweep
defaults: {restart: temporary, tools: [fs/read, fs/write, fs/append]}
tasks:
  - id: a
    agent: script
    steps:
      - write: {path: out/a.txt, content: "a\\n"}
      - spawn: {id: c, agent: script, steps: [{append: {path: out/a.txt, content: "c\\n"}}, {send: {to: a, kind: hi}}]}
      - wait: {kind: hi, timeout: 10}
      - lock: {path: out/a.txt, mode: write}
      - unlock: out/a.txt
      - done: ok
  - id: b
    agent: script
    steps: [{call: {tool: fs/read, args: {path: nope.txt}}}, {fail: on purpose}]
"""

#: Wrong values put at every key path (of a plan, of an event).
WRONG: list[Any] = [1, -1, 10**30, 1.5, "x", "", [], {}, None, True, "\x00", [[[[1]]]], {"zz": [1]}]
EXIT_CODES = (0, 1, 2)


def _invoke(args: list[str], codes: tuple[int, ...] = EXIT_CODES) -> Any:
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert "Traceback" not in result.output, (args, result.output)
    assert result.exit_code in codes, (args, result.exit_code, result.output)
    if result.exit_code == 2:
        errors = [line for line in result.stderr.splitlines()
                  if line.strip() and not line.startswith(("warning: ", "note: ", "run "))]
        # One line for the error; a plan gets one per problem (validate lists them all at once).
        assert errors and all(line.startswith("invalid plan: ") for line in errors) or len(errors) == 1, \
            (args, result.stderr)
        assert all(line.startswith(("error: ", "invalid plan: ")) for line in errors), (args, result.stderr)
    return result


class _StillFollowing(BaseException):
    """``watch`` was still following when :func:`_watch` stopped waiting for it (not an
    ``Exception``: the CLI's handlers must not take it for a failure of the view)."""


def _watch(run_dir: Path, seconds: float = 3.0) -> None:
    """``agentctl watch run_dir`` as :func:`_invoke` checks it, or still following after ``seconds``,
    which is right only while the log may yet go on (:func:`_may_go_on`)."""
    def expire(_signum: int, _frame: Any) -> None:
        raise _StillFollowing

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        _invoke(["watch", str(run_dir)])
    except BaseException as exc:
        # Raised in whichever task the signal found: alone, or in the task group's exception group.
        if not isinstance(exc, _StillFollowing) and not (
                isinstance(exc, BaseExceptionGroup) and exc.subgroup(_StillFollowing) is not None):
            raise
        log = run_dir / "events.jsonl"
        assert _may_go_on(log.read_bytes() if log.is_file() else b""), f"watch waits on a log that has ended: {log}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _may_go_on(log: bytes) -> bool:
    """Whether a run could still be writing ``log``: no ``run/finished`` among its complete
    lines, each of them an event, and the process it names (if any) alive, or none named yet."""
    pid: Any = 0
    for line in log.split(b"\n")[:-1]:
        try:
            event = json.loads(line)
        except ValueError:
            return False
        if not isinstance(event, dict) or event.get("type") == "run/finished":
            return False
        if event.get("type") in ("run/started", "run/resumed"):
            pid = event.get("pid")
    return type(pid) is int and (pid == 0 or process_alive(pid))


#: A sweep's extent: a spread sample in the default suite, everything under ``-m slow``.
EXTENT = pytest.mark.parametrize("full", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["sample", "full"])


def _sample(items: list[Any], full: bool, every: int) -> list[Any]:
    """All of ``items`` if ``full``, else every ``every``-th (a fixed, spread sample)."""
    return items if full else items[::every]


def _paths(obj: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if at:
        yield at
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for key, value in items:
        yield from _paths(value, (*at, key))


def _with(obj: Any, at: tuple[Any, ...], value: Any) -> Any:
    changed = copy.deepcopy(obj)
    node = changed
    for key in at[:-1]:
        node = node[key]
    node[at[-1]] = value
    return changed


# --- plans ----------------------------------------------------------------------------------


def _plan_mutations() -> list[tuple[str, str, bytes]]:
    """(label, suffix, bytes) for every plan mutation."""
    text = (PLANS / "hello.yaml").read_bytes()
    edn = (PLANS / "hello.edn").read_bytes()
    plan = yaml.safe_load(text)
    found: list[tuple[str, str, bytes]] = []
    for i, at in enumerate(_paths(plan)):
        for j, value in enumerate(WRONG):
            found.append((f"{at} = {value!r}", ".yaml", yaml.safe_dump(_with(plan, at, value)).encode()))
            if (i + j) % 3 == 0:  # the EDN twin, for a third of them
                found.append((f"edn {at} = {value!r}", ".edn", _edn(_with(plan, at, value))))
    for at in [(), *_paths(plan)]:
        node = plan
        for key in at:
            node = node[key]
        if isinstance(node, dict):
            found.append((f"unknown key at {at}", ".yaml", yaml.safe_dump(_with(plan, at, {**node, "zz": 1})
                                                                         if at else {**plan, "zz": 1}).encode()))
    for name, raw, suffix in (("yaml", text, ".yaml"), ("edn", edn, ".edn")):
        found += [(f"{name} cut at {n}", suffix, raw[:n]) for n in range(len(raw))]
        found += [(f"{name} NUL at {n}", suffix, raw[:n] + b"\x00" + raw[n:]) for n in range(0, len(raw), 5)]
        found += [(f"{name} bad UTF-8 at {n}", suffix, raw[:n] + b"\xff\xfe" + raw[n:]) for n in range(0, len(raw), 5)]
    for depth in (99, 101, 5000):
        found.append((f"yaml nested {depth}", ".yaml", b"name: " + b"[" * depth + b"]" * depth))
        found.append((f"edn nested {depth}", ".edn", b"{:name " + b"{:a " * depth + b"1" + b"}" * depth + b"}"))
    found += [
        ("huge int", ".yaml", b"name: x\ntasks: [{id: a, agent: script, budget: {max_steps: " + b"9" * 400 + b"}}]\n"),
        ("inf", ".yaml", b"name: x\ntasks: [{id: a, agent: script, steps: [{sleep: 1e999}]}]\n"),
        ("edn huge int", ".edn", b'{:name "x" :tasks [{:id "a" :agent :script :budget {:max-steps 9' + b"9" * 400 + b"}}]}"),
        ("edn vector key", ".edn", b'{:name "x" [1 2] 3}'),
        ("edn map key", ".edn", b'{{:a 1} 3 :name "x"}'),
        ("edn set key", ".edn", b'{#{1} 3 :name "x"}'),
        ("edn tags", ".edn", b'{:name #inst "2020-01-01T00:00:00Z" :tasks #{1 2}}'),
        ("edn unknown tag", ".edn", b"{:name #foo 1}"),
        ("yaml complex key", ".yaml", b"? [1, 2]\n: 3\nname: x\n"),
        ("yaml python tag", ".yaml", b"name: !!python/object:os.system x\n"),
        ("yaml binary", ".yaml", b"name: !!binary aGVsbG8=\ntasks: []\n"),
        ("yaml alias bomb", ".yaml", b"a: &a [1,1,1,1,1,1,1,1,1]\n" + b"".join(
            b"%c: &%c [*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c]\n" % ((98 + i,) * 2 + (97 + i,) * 9) for i in range(9))),
    ]
    return found


def _edn(value: Any) -> bytes:
    """``value`` written as EDN (keys as keywords)."""
    import edn_format

    def convert(v: Any) -> Any:
        if isinstance(v, dict):
            return {edn_format.Keyword(str(k)) if isinstance(k, str) else k: convert(x) for k, x in v.items()}
        return [convert(x) for x in v] if isinstance(v, list) else v

    return edn_format.dumps(convert(value)).encode()


PLAN_MUTATIONS = _plan_mutations()
NAMED = 16  # the hand-written ones at the end: walked by the default suite too


@EXTENT
def test_every_mutation_of_a_plan_is_refused_in_one_line_or_read(tmp_path: Path, full: bool,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    refused = 0
    for label, suffix, data in _sample(PLAN_MUTATIONS[:-NAMED], full, every=503) + PLAN_MUTATIONS[-NAMED:]:
        plan = tmp_path / f"plan{suffix}"
        plan.write_bytes(data)
        result = _invoke(["validate", str(plan)], codes=(0, 2))
        refused += result.exit_code == 2
        if result.exit_code == 2:
            assert str(plan) in result.stderr, (label, result.stderr)  # it says which file
    assert refused > 5  # the sample is not all harmless


@pytest.mark.parametrize("command", [["validate"], ["diff"], ["run", "--no-ui", "--no-watch-plan"]])
@pytest.mark.parametrize("kind", ["directory", "symlink loop", "dangling symlink", "edn map key"])
def test_a_plan_that_is_no_file_is_refused_by_every_command_that_reads_one(command: list[str], kind: str,
                                                                          tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    plan = tmp_path / ("plan.edn" if kind == "edn map key" else "plan.yaml")
    if kind == "directory":
        plan.mkdir()
    elif kind == "symlink loop":
        plan.symlink_to(plan.name)
    elif kind == "dangling symlink":
        plan.symlink_to("elsewhere.yaml")
    else:
        plan.write_text('{:name "x" [1 2] 3}')
    args = [command[0], str(plan), *command[1:]]
    result = _invoke(args, codes=(2,))
    assert str(plan) in result.stderr, result.stderr
    expected = {"directory": "is a directory", "symlink loop": "not found", "dangling symlink": "not found",
                "edn map key": "wrong map key (expected a keyword, string or number, got vector [1 2])"}[kind]
    assert expected in result.stderr, result.stderr


def test_a_fifo_in_the_plans_place_is_refused_at_once_not_waited_on(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fifo = tmp_path / "plan.yaml"
    os.mkfifo(fifo)
    waited: list[bool] = []

    def unblock() -> None:
        """Were the open to wait for a writer, be that writer (after a while), so that the
        test fails instead of hanging."""
        if not done.wait(20):
            waited.append(True)
            with open(fifo, "wb") as f:
                f.write(PLAN.encode())

    for args in (["validate", str(fifo)], ["run", str(fifo), "--no-ui", "--no-watch-plan"]):
        done = threading.Event()
        watchdog = threading.Thread(target=unblock)
        watchdog.start()
        try:
            result = _invoke(args, codes=(2,))
        finally:
            done.set()
            watchdog.join()
        assert not waited, "the plan's FIFO was opened and waited on"
        assert f"{fifo}: cannot read plan file: not a regular file but a FIFO" in result.stderr


# --- event logs ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real finished run of :data:`PLAN` (task ``b`` failed on purpose)."""
    home = tmp_path_factory.mktemp("sweep")
    (home / "plan.yaml").write_text(PLAN)
    previous = os.getcwd()
    os.chdir(home)
    try:
        _invoke(["run", "plan.yaml", "--no-ui", "--no-watch-plan", "--run-dir", "run"], codes=(1,))
    finally:
        os.chdir(previous)
    return home / "run"


#: The views of a log, as (args after the file) each mutation is shown through in turn.
VIEWS: list[Callable[[Path], list[str]]] = [
    lambda d: ["replay", str(d / "events.jsonl"), "--summary"],
    lambda d: ["describe", str(d), "a"],
    lambda d: ["replay", str(d / "events.jsonl"), "--speed", "0"],
    lambda d: ["logs", str(d)],
    lambda d: ["describe", str(d), "b", "-o", "json"],
    lambda d: ["replay", str(d / "events.jsonl"), "--at", "12"],
    lambda d: ["replay", str(d / "events.jsonl"), "--summary", "-o", "json"],
    lambda d: ["describe", str(d), "c"],
]


def _log_mutations(lines: list[bytes]) -> list[tuple[str, bytes]]:
    raw = b"".join(lines)
    found: list[tuple[str, bytes]] = []
    for i, line in enumerate(lines):
        event = json.loads(line)

        def swap(changed: dict[str, Any], index: int = i) -> bytes:
            return b"".join([*lines[:index], json.dumps(changed).encode() + b"\n", *lines[index + 1:]])

        for k, at in enumerate(_paths(event)):
            for j, value in enumerate(WRONG):
                if (k + j) % 2 == 0 or at[0] in ("seq", "t", "run_id", "type", "agent_id"):
                    found.append((f"line {i + 1}: {at} = {value!r}", swap(_with(event, at, value))))
        for key in event:
            found.append((f"line {i + 1}: no {key}", swap({k: v for k, v in event.items() if k != key})))
    found += [(f"cut at {n}", raw[:n]) for n in range(0, len(raw), 37)]
    found += [(f"NUL at {n}", raw[:n] + b"\x00" + raw[n:]) for n in range(0, len(raw), 97)]
    found += [(f"bad UTF-8 at {n}", raw[:n] + b"\xff\xfe" + raw[n:]) for n in range(0, len(raw), 97)]
    found += [("doubled", raw + raw), ("reversed", b"".join(reversed(lines))), ("a gap", lines[0] + b"".join(lines[5:])),
              ("deep", lines[0] + b'{"seq":2,"t":1,"run_id":"x","type":"x","agent_id":"a","v":'
               + b"[" * 100_000 + b"]" * 100_000 + b"}\n"),
              ("huge", lines[0] + b'{"seq":' + b"9" * 400 + b',"t":1e400,"run_id":"x","type":"x","agent_id":"a"}\n')]
    return found


@EXTENT
def test_every_mutation_of_an_event_log_is_refused_in_one_line_or_shown(run_dir: Path, tmp_path: Path, full: bool,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    lines = (run_dir / "events.jsonl").read_bytes().splitlines(keepends=True)
    copy_dir = tmp_path / "run"
    copy_dir.mkdir()
    for n, (_label, data) in enumerate(_sample(_log_mutations(lines), full, every=457)):
        (copy_dir / "events.jsonl").write_bytes(data)
        _invoke(VIEWS[n % len(VIEWS)](copy_dir), codes=(0, 2))
        _export(copy_dir / "events.jsonl")


@EXTENT
def test_watch_follows_every_mutation_of_an_event_log_to_one_line_or_waits_only_for_a_live_run(
        run_dir: Path, tmp_path: Path, full: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    lines = (run_dir / "events.jsonl").read_bytes().splitlines(keepends=True)
    lines[0] = _started_by_a_dead_process(lines[0])  # a cut log then ends, not a live run's
    copy_dir = tmp_path / "run"
    copy_dir.mkdir()
    # -m slow: every fifth (about 950), not all: each log cut before run/finished costs the half
    # second watch takes to find its process gone, a log that may go on the bound's 3 s.
    for _label, data in _log_mutations(lines)[::5 if full else 397]:
        (copy_dir / "events.jsonl").write_bytes(data)
        _watch(copy_dir)


def _started_by_a_dead_process(line: bytes) -> bytes:
    """``run/started`` (the first line of a log) as if another process, now gone, had logged it."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    return json.dumps({**json.loads(line), "pid": gone.pid}).encode() + b"\n"


def _export(log: Path) -> None:
    """What ``agentctl export otel`` does with a log before it sends anything (the command
    itself needs the otel extra first): build the trace, or fail with an error the CLI turns
    into its one line."""
    try:
        with blame_the_log(log):
            trace_of(read_events(log))
    except AgentctlError:
        pass


@pytest.mark.parametrize(("field", "value", "view", "said"), [
    ("tools", [1], ["describe", "{dir}", "a"], "tools[0]: expected str, got int"),
    ("budget", "x", ["replay", "{log}", "--speed", "0"], "budget: expected object, got str"),
    ("agent_id", None, ["replay", "{log}", "--speed", "0"], "agent_id: expected str, got null"),
])
def test_a_view_that_trips_on_a_bad_event_names_its_line_key_expected_and_got(
        run_dir: Path, tmp_path: Path, field: str, value: Any, view: list[str], said: str) -> None:
    lines = (run_dir / "events.jsonl").read_bytes().splitlines(keepends=True)
    i = next(i for i, line in enumerate(lines) if b'"agent/spawned"' in line and b'"agent_id":"a"' in line)
    event = {**json.loads(lines[i]), field: value}
    log = tmp_path / "events.jsonl"
    log.write_bytes(b"".join([*lines[:i], json.dumps(event).encode() + b"\n", *lines[i + 1:]]))
    result = _invoke([arg.format(dir=tmp_path, log=log) for arg in view], codes=(2,))
    assert f"{log}:{i + 1}: corrupt event line: event {event['seq']} ('agent/spawned') does not fit its " \
           f"definition: {said}" in result.stderr, result.stderr


# --- run directories -------------------------------------------------------------------------


def _damages() -> dict[str, Callable[[Path], None]]:
    def replace(path: Path, make: Callable[[Path], None]) -> None:
        path.unlink()
        make(path)

    return {
        "no events.jsonl": lambda d: (d / "events.jsonl").unlink(),
        "events.jsonl a directory": lambda d: replace(d / "events.jsonl", Path.mkdir),
        "events.jsonl a FIFO": lambda d: replace(d / "events.jsonl", os.mkfifo),
        "events.jsonl a symlink loop": lambda d: replace(d / "events.jsonl", lambda p: p.symlink_to(p.name)),
        "events.jsonl binary": lambda d: (d / "events.jsonl").write_bytes(bytes(range(256)) * 8),
        "no plan copy": lambda d: [p.unlink() for p in d.glob("plan.v*")] and None,
        "plan copy garbled": lambda d: [p.write_bytes(b"\xff\x00{{") for p in d.glob("plan.v*")] and None,
        "junk beside": lambda d: ((d / "checkpoint.json").write_bytes(b"\x00junk"), (d / "snapshots").mkdir()) and None,
        "control.sock a plain file": lambda d: (d / "control.sock").write_text("x"),
        "run/started with t a string": lambda d: _retype(d, "run/started", "t", "soon"),
        "agent/spawned with tools an int": lambda d: _retype(d, "agent/spawned", "tools", 1),
        "run/finished with status an int": lambda d: _retype(d, "run/finished", "status", 5),
        "run/started with pid -1": lambda d: _retype(d, "run/started", "pid", -1),
        "run/started with pid past kill's range": lambda d: _retype(d, "run/started", "pid", 2**31),
    }


def _retype(d: Path, kind: str, field: str, value: Any) -> None:
    """Give ``field`` of the first ``kind`` event in ``d``'s log a value of the wrong type."""
    lines = (d / "events.jsonl").read_bytes().splitlines(keepends=True)
    i = next((i for i, line in enumerate(lines) if json.loads(line)["type"] == kind), None)
    if i is None:
        return  # a dead run's log that ended before it
    lines[i] = json.dumps({**json.loads(lines[i]), field: value}).encode() + b"\n"
    (d / "events.jsonl").write_bytes(b"".join(lines))


def _kill(d: Path) -> None:
    """Make the run in ``d`` one whose process died before ``run/finished``: what resume is for."""
    first, *rest = (d / "events.jsonl").read_bytes().splitlines(keepends=True)
    # It ran in this process: make it another, dead one.
    (d / "events.jsonl").write_bytes(_started_by_a_dead_process(first) + b"".join(rest[:11]))


def _dir_commands(d: Path) -> list[list[str]]:
    return [["ps", "--all"], ["ps", "-o", "json"], ["logs", str(d)], ["describe", str(d), "a"],
            ["replay", str(d), "--summary"], ["diff", "plan.yaml", "--run", str(d)], ["stop", str(d)],
            ["send", "--run", str(d), "--to", "a", "x"], ["approve", str(d), "a1"], ["deny", str(d), "a1", "--reason", "no"],
            ["prune", "--keep", "0", "--dry-run"], ["gc", "--run", str(d)]]


#: The damages the default suite tries (on a dead run); -m slow tries every one on both.
QUICK = ("control.sock a plain file", "events.jsonl a FIFO", "plan copy garbled", "run/started with t a string",
         "run/started with pid past kill's range")


@pytest.mark.parametrize(("damage", "dead"), [
    pytest.param(damage, dead, id=f"{damage}-{'dead' if dead else 'finished'}",
                 marks=() if dead and damage in QUICK else pytest.mark.slow)
    for damage in sorted(_damages()) for dead in (False, True)])
def test_every_command_on_a_damaged_run_directory_answers_in_one_line(run_dir: Path, tmp_path: Path, damage: str,
                                                                      dead: bool,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plan.yaml").write_text(PLAN)
    d = tmp_path / ".agentctl" / "runs" / "20260101-000000-aaaaaa"
    shutil.copytree(run_dir, d)
    if dead:
        _kill(d)
    _damages()[damage](d)
    for args in _dir_commands(d) if damage not in QUICK else _dir_commands(d)[::4]:
        _invoke(args)
    _watch(d)
    if dead and damage in ("control.sock a plain file", "no plan copy", "plan copy garbled", "junk beside"):
        _invoke(["run", "--resume", str(d), "--no-ui", "--no-watch-plan"])


def test_a_resume_that_cannot_serve_its_control_channel_says_so_in_one_line(run_dir: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain file where the socket goes: the error arrives wrapped in nested task groups."""
    with tempfile.TemporaryDirectory(prefix="ac") as short:  # short enough for the socket to be in the run dir
        monkeypatch.chdir(short)
        d = Path(short) / "run"
        shutil.copytree(run_dir, d)
        _kill(d)
        (d / "control.sock").write_text("not a socket")
        result = _invoke(["run", "--resume", str(d), "--no-ui", "--no-watch-plan", "--force"], codes=(2,))
        assert f"error: cannot serve the control channel at {d / 'control.sock'}: Address already in use" \
               in result.stderr.splitlines()


# --- options ---------------------------------------------------------------------------------

BAD_VALUES = ["", "-1", "nan", "inf", "1e999", "abc", "9" * 30, "0", "../../../etc/passwd", "%s%n{}"]
COMMAND = typer.main.get_command(app)


def _options() -> list[tuple[str, str]]:
    return [(name, opt.opts[0]) for name, command in sorted(COMMAND.commands.items())  # type: ignore[attr-defined]
            for opt in command.params if opt.param_type_name == "option" and not opt.is_flag]


#: The arguments each command needs besides the option under test (a small plan, a finished run).
def _needed(name: str, run: Path) -> list[str]:
    return {"run": ["tiny.yaml", "--no-ui", "--no-watch-plan"], "batch": ["tiny.yaml"], "logs": [str(run)],
            "describe": [str(run), "a"], "replay": [str(run), "--speed", "0"], "send": ["--to", "a", "hi"],
            "approve": [str(run), "a1"], "deny": [str(run), "a1", "--reason", "no"], "stop": [str(run)],
            "diff": ["tiny.yaml"], "validate": ["tiny.yaml"], "export": ["otel", str(run)], "watch": [str(run)]
            }.get(name, [])


@EXTENT
def test_every_option_of_every_command_refuses_bad_values_in_one_line(run_dir: Path, tmp_path: Path, full: bool,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text("name: tiny\ntasks: [{id: a, agent: script, steps: [{done: ok}]}]\n")
    cases = [(name, opt, value) for name, opt in _options() for value in BAD_VALUES]
    for name, opt, value in _sample(cases, full, every=37):
        if (name, opt) == ("send", "--to"):
            continue  # given by _needed
        _invoke([name, *_needed(name, run_dir), opt, value])


def test_ps_names_a_run_whose_log_does_not_fit_and_lists_the_others(run_dir: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / ".agentctl" / "runs"
    bad, good = runs / "20260101-000000-aaaaaa", runs / "20260101-000001-bbbbbb"
    shutil.copytree(run_dir, bad)
    shutil.copytree(run_dir, good)
    _retype(bad, "run/started", "t", "soon")
    result = _invoke(["ps", "--all", "-o", "json"], codes=(0,))
    where = bad.relative_to(tmp_path)
    assert result.stderr.splitlines() == [
        f"error: skipped {where}: {where / 'events.jsonl'}:1: corrupt event line: event 1 ('run/started') does not "
        "fit its definition: t: expected int, got str 'soon'"]
    assert [row["dir"] for row in json.loads(result.stdout)["runs"]] == [str(good.relative_to(tmp_path))]


# --- NUL bytes -------------------------------------------------------------------------------


def _nul_cases(run: Path) -> list[list[str]]:
    """Every command with a NUL byte in each of its arguments, in turn, and in each option's value."""
    cases: list[list[str]] = [["r\x00un"], ["--ver\x00sion"]]
    for name, command in sorted(COMMAND.commands.items()):  # type: ignore[attr-defined]
        needed = _needed(name, run)
        cases.append([name, "a\x00b"])
        cases += [[name, *needed[:i], needed[i] + "\x00", *needed[i + 1:]] for i in range(len(needed))]
        cases += [[name, *needed, opt, "a\x00b"] for name_, opt in _options() if name_ == name]
        cases += [[name, *needed, opt.opts[0] + "\x00"] for opt in command.params if opt.param_type_name == "option"]
    return cases


def test_a_nul_byte_in_any_argument_of_any_command_is_refused_in_one_line(run_dir: Path, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # No process gets one from a shell (argv is C strings); a program that calls the app can pass one.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text("name: tiny\ntasks: [{id: a, agent: script, steps: [{done: ok}]}]\n")
    for args in _nul_cases(run_dir):
        result = _invoke(args, codes=(2,))
        number, arg = next((n, a) for n, a in enumerate(args, 1) if "\x00" in a)
        assert result.stderr == (f"error: command-line argument {number} holds a NUL byte (expected none): {arg!r} "
                                 "(see 'agentctl -h')\n"), (args, result.stderr)
