"""``agentctl batch`` on this machine: each run a real ``agentctl run`` process with its own
run directory and workspace; the summary, ``-o json``, exit codes and bad input."""

from __future__ import annotations

import json
from pathlib import Path

from agentctl.events.reader import read_events
from tests.cli_helpers import invoke

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
