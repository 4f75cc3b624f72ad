"""``replay`` and ``watch`` from the command line, checked against the fold of the same log."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import PLANS, agent_row, cli, ends, events, invoke, of, running, wait_for

from agentctl.events.fold import state_at


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("views")
    proc = invoke("run", str(PLANS / "locks.yaml"), "--no-ui", "--no-watch-plan", "--run-dir", str(tmp / "run"), cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    return tmp / "run"


def agent_rows(stdout: str, ids: set[str]) -> dict[str, str]:
    out = {}
    for line in stdout.splitlines():
        words = agent_row(line).split()
        if len(words) > 1 and words[0] in ids:
            out[words[0]] = words[1]
    return out


def test_replay_at_agrees_with_the_fold_at_every_tenth_event(finished_run: Path, tmp_path: Path) -> None:
    path = finished_run / "events.jsonl"
    evs = events(finished_run)
    ids = {e["agent_id"] for e in of(evs, "agent/spawned")}
    for seq in range(1, len(evs) + 1, 10):
        proc = invoke("replay", str(path), "--at", str(seq), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        expected = {a.id: a.status for a in state_at(path, seq).agents.values()}
        assert agent_rows(proc.stdout, ids) == expected, seq


def test_replay_svg_at_an_event_pictures_that_moment(finished_run: Path, tmp_path: Path) -> None:
    evs = events(finished_run)
    first_spawn = of(evs, "agent/spawned")[0]["seq"]
    svg = tmp_path / "early.svg"
    assert invoke("replay", str(finished_run), "--at", str(first_spawn), "--svg", str(svg), cwd=tmp_path).returncode == 0
    text = svg.read_text()
    assert text.startswith("<svg") and "plan" in text and "contender" not in text


def test_watch_without_a_target_follows_the_newest_run_in_this_directory(tmp_path: Path) -> None:
    with running("run", str(PLANS / "hello.edn"), "--no-ui", "--no-watch-plan", cwd=tmp_path) as runner:
        runs = tmp_path / ".agentctl" / "runs"
        wait_for(tmp_path, lambda _: runs.exists() and any((d / "events.jsonl").exists() for d in runs.iterdir()))
        watch = cli("watch", cwd=tmp_path, timeout=30)
        ends(runner, 0)
    assert watch.returncode == 0, watch.stderr
    assert "run finished completed ok" in watch.stdout and "greeter" in watch.stdout
