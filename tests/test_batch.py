"""``agentctl batch`` on this machine: each run a real ``agentctl run`` process with its own
run directory and workspace; the summary, ``-o json``, exit codes and bad input."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import anyio
import pytest
from cli_helpers import cli, invoke
from rich.console import Console
from test_approval_keys import seen, terminal

from agentctl.events.reader import read_events
from agentctl.views.batch import BatchProgress

WRITER = """\
name: writer
tasks:
  - id: a
    agent: script
    steps:
      - write: {path: out/n.txt, content: "n=${n}\\n"}
      - done: ok
"""

FAILING = """\
name: failing
tasks:
  - id: a
    agent: script
    restart: temporary
    steps:
      - fail: "broke on ${n}"
"""


def plans(tmp_path: Path) -> None:
    (tmp_path / "writer.yaml").write_text(WRITER)
    (tmp_path / "failing.yaml").write_text(FAILING)


def test_a_batch_over_params_runs_each_as_a_run_of_its_own_and_sums_them_up(tmp_path: Path) -> None:
    plans(tmp_path)
    result = invoke("batch", "writer.yaml", "failing.yaml", "--param", "n=1,2", "--parallel", "4", "-o", "json",
                    cwd=tmp_path)
    assert result.returncode == 1  # a run failed
    out = json.loads(result.stdout)
    runs = out["runs"]
    assert [(r["name"], r["status"], r["exit_code"]) for r in runs] == [
        ("01-writer[n=1]", "ok", 0), ("02-writer[n=2]", "ok", 0),
        ("03-failing[n=1]", "failed", 1), ("04-failing[n=2]", "failed", 1)]
    assert (out["ok"], out["not_ok"]) == (2, 2)
    assert [r["error"] for r in runs[2:]] == ["broke on 1", "broke on 2"]
    assert [r["failures"] for r in runs] == [0, 0, 1, 1] and [r["tool_calls"] for r in runs[:2]] == [1, 1]
    for r, n in zip(runs[:2], (1, 2), strict=True):
        # Its own run directory (with a complete log) and its own workspace.
        evs = list(read_events(Path(r["run_dir"]) / "events.jsonl"))
        assert evs[0]["type"] == "run/started" and evs[-1]["type"] == "run/finished"
        assert Path(evs[0]["workspace"], "out", "n.txt").read_text() == f"n={n}\n"
    assert len({r["run_dir"] for r in runs}) == 4
    # Progress: one plain line per run, on stderr.
    assert sum(line.startswith("[") for line in result.stderr.splitlines()) == 4


def test_an_all_ok_batch_exits_0_with_a_table(tmp_path: Path) -> None:
    plans(tmp_path)
    result = invoke("batch", "writer.yaml", "--param", "n=7", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "01-writer[n=7]" in result.stdout and "1/1 runs ok" in result.stdout


def test_bad_input_is_one_line_and_exit_2_before_any_run(tmp_path: Path) -> None:
    plans(tmp_path)
    (tmp_path / "broken.yaml").write_text("name: x\ntasks:\n  - id: a\n    agent: nope\n")
    cases = [
        (["missing.yaml"], "plan file not found: missing.yaml"),
        (["."], ".: cannot read plan file: is a directory"),
        (["writer.yaml", "--param", "n"], "--param: expected NAME=V1,V2,..."),
        (["writer.yaml", "--param", "m=1"], "writer.yaml: --param m is given, but the plan has no ${m} to fill in"),
        (["writer.yaml", "--param", "n=1", "--param", "n=2"], "--param: n given twice"),
        (["writer.yaml", "--parallel", "0", "--param", "n=1"], "--parallel: expected an integer >= 1, got 0"),
        (["broken.yaml"], "broken.yaml:4"),
    ]
    for args, said in cases:
        result = invoke("batch", *args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert said in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
    assert not (tmp_path / ".agentctl" / "runs").exists()


HELD = """\
name: held
settings: {shell: true}
tasks:
  - id: a
    agent: script
    steps:
      - call: {tool: shell/run, args: {command: "while [ ! -e ${n} ]; do sleep 0.05; done"}}
      - done: ok
"""


@pytest.mark.slow  # a real batch subprocess (~4 s); the terminal tests below stay in the default suite
def test_without_a_terminal_progress_is_a_plain_line_as_each_run_starts_and_ends(tmp_path: Path) -> None:
    plans(tmp_path)
    result = cli("batch", "writer.yaml", "failing.yaml", "--param", "n=1", "--parallel", "1", cwd=tmp_path)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("[")]
    runs = tmp_path / ".agentctl" / "runs"
    (batch_dir,) = {p.name.rsplit("-", 1)[0] for p in runs.iterdir()}
    # One run at a time: each starts, then ends, in order.
    assert lines == [
        f"[start] 01-writer[n=1]: run directory {runs.resolve() / batch_dir}-01",
        lines[1], f"[start] 02-failing[n=1]: run directory {runs.resolve() / batch_dir}-02", lines[3]]
    assert lines[1].startswith("[1/2] 01-writer[n=1] ok in ")
    assert lines[3].startswith("[2/2] 02-failing[n=1] failed in ") and lines[3].endswith(": broke on 1")
    assert "01-writer[n=1]" in result.stdout and "1/2 runs ok" in result.stdout  # then the table
    # -o json: the object on stdout, and (unchanged) only the end lines on stderr.
    result = cli("batch", "writer.yaml", "--param", "n=2", "-o", "json", cwd=tmp_path)
    assert json.loads(result.stdout)["ok"] == 1
    assert [line[:6] for line in result.stderr.splitlines() if line.startswith("[")] == ["[1/1] "]


def test_on_a_terminal_a_live_table_shows_every_run_from_its_own_log(tmp_path: Path) -> None:
    plans(tmp_path)
    (tmp_path / "held.yaml").write_text(HELD)
    # Relative to each run's workspace (.agentctl/batches/ID/NN-plan): .agentctl/go, a short name.
    gate = tmp_path / ".agentctl" / "go"
    with terminal(["batch", "held.yaml", "failing.yaml", "--param", "n=../../../go"], tmp_path) as (proc, screen, _):
        # The held run shows as running while the other has ended; then both have ended.
        seen(screen, "02-failing[n=../../../go]")
        seen(screen, "running")
        assert "last event" in shown(screen)
        seen(screen, "1/2 runs ended, 0 ok")
        gate.touch()
        assert proc.wait(60) == 1
        seen(screen, "2/2 runs ended, 1 ok")
    text = shown(screen)
    assert "run finished completed ok" in text and "run finished failed failed" in text
    assert "[start]" not in text and "[1/2]" not in text  # the table, not plain lines
    assert "1/2 runs ok" in text  # then the summary table


def test_with_o_plain_a_terminal_gets_plain_lines(tmp_path: Path) -> None:
    plans(tmp_path)
    with terminal(["batch", "writer.yaml", "--param", "n=3", "-o", "plain"], tmp_path) as (proc, screen, _):
        assert proc.wait(60) == 0
    text = shown(screen)  # all of it: the way out waits for the reader
    assert "1/1 runs ok" in text and "[start] 01-writer[n=3]" in text and "[1/1] 01-writer[n=3] ok in" in text
    assert "last event" not in text


def shown(screen: list[bytes]) -> str:
    """What the terminal showed, as text (colours and cursor moves taken out)."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(screen).decode(errors="replace"))


def test_the_live_table_reads_each_run_from_its_log_and_survives_a_damaged_one(tmp_path: Path) -> None:
    plans(tmp_path)
    result = invoke("batch", "writer.yaml", "--param", "n=4", "-o", "json", cwd=tmp_path)
    done = Path(json.loads(result.stdout)["runs"][0]["run_dir"]) / "events.jsonl"
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text(done.read_text().splitlines()[0] + "\nnot json\n")
    view = BatchProgress([("01-done", done), ("02-damaged", damaged), ("03-waiting", tmp_path / "none.jsonl"),
                          ("04-lost", tmp_path / "gone.jsonl")], clock=lambda: 0)
    view.ended("04-lost", "lost")
    stop = anyio.Event()
    stop.set()
    anyio.run(view.follow, stop)  # stopped already: what the files hold
    console = Console(width=240, record=True, file=io.StringIO(), color_system=None)
    console.print(view.render(240))
    lines = console.export_text().splitlines()
    rows = {line.split()[0]: line.split(None, 1)[1] for line in lines[1:-1]}
    assert rows["01-done"].startswith("ok") and "run finished completed ok" in rows["01-done"]
    assert rows["02-damaged"].startswith("running") and f"log unreadable: {damaged}:2: corrupt event" in rows["02-damaged"]
    assert rows["03-waiting"].split() == ["queued", "-", "0"]
    assert rows["04-lost"].split() == ["lost", "-", "0"]
    assert lines[-1].strip() == "1/4 runs ended, 0 ok"
