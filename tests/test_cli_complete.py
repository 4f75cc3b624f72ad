"""Shell completion of values (``agentctl/cli/complete.py``), asked of the real entry point as
bash asks it: ``_AGENTCTL_COMPLETE=complete_bash`` with ``COMP_WORDS`` and ``COMP_CWORD``.

The runs completed are real: one finished, one live (a real ``agentctl run`` holding a call
for approval), beside a run directory whose log is garbage and a directory with no log.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import AGENTCTL, PLANS, cli, of, running, wait_for
from test_approvals import GATED

#: Two real runs and some thirty processes of the real entry point: about 20 s idle.
pytestmark = pytest.mark.slow


class Project:
    """The directory the completions are asked in, and what is in it."""

    def __init__(self, root: Path, finished: str, live: str, call: str) -> None:
        self.root, self.finished, self.live, self.call = root, finished, live, call


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("complete")
    (root / "hello.yaml").write_text((PLANS / "hello.yaml").read_text())
    (root / "gated.yml").write_text(GATED)
    (root / "team.edn").write_text((PLANS / "hello.edn").read_text())
    (root / "notes.txt").write_text("not a plan\n")
    (root / "sub").mkdir()
    assert cli("run", "hello.yaml", "--no-ui", "--no-watch-plan", cwd=root).returncode == 0
    runs = root / ".agentctl" / "runs"
    (finished,) = [d.name for d in runs.iterdir()]
    with running("run", "gated.yml", "--no-ui", "--no-watch-plan", cwd=root):
        live = wait_for_run(runs, finished)
        evs = wait_for(runs / live, lambda e: of(e, "approval/requested") and of(e, "agent/done", "other"))
        call = of(evs, "approval/requested")[0]["call_id"]
        (runs / "zz-broken").mkdir()
        (runs / "zz-broken" / "events.jsonl").write_bytes(b"\x00garbage\n{not json\n")
        (runs / "zz-empty").mkdir()
        yield Project(root, finished, live, call)


def wait_for_run(runs: Path, other: str) -> str:
    """The id of the run under ``runs`` other than ``other``, once its directory has a log."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = [d.name for d in runs.iterdir() if d.name != other and (d / "events.jsonl").exists()]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no second run under {runs}")


def complete(project: Project, line: str) -> list[str]:
    """The candidates ``agentctl`` offers for the last word of ``line`` (a Tab after a space:
    for a new word), asked as bash's completion function asks; nothing may go to stderr."""
    words = line.split()
    cword = len(words) if line.endswith(" ") else len(words) - 1
    env = {**os.environ, "_AGENTCTL_COMPLETE": "complete_bash", "COMP_WORDS": line, "COMP_CWORD": str(cword)}
    done = subprocess.run([AGENTCTL], cwd=project.root, env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, ""), done
    return done.stdout.split()


def test_every_command_that_takes_run_completes_run_ids_newest_first(project: Project) -> None:
    ids = [project.live, project.finished]
    for line in ("agentctl logs ", "agentctl watch ", "agentctl replay --summary ", "agentctl stop ",
                 "agentctl export otel ", "agentctl run --resume ", "agentctl send hi --run ", "agentctl gc --run-id ",
                 "agentctl diff hello.yaml --run "):
        assert complete(project, line) == ["zz-broken", *ids], line
    assert complete(project, f"agentctl logs {project.live[:-3]}") == [project.live]
    # A RUN given by the start of its random tail (as RUN takes it) is the run whose agents complete.
    tail = project.finished.rpartition("-")[2][:4]
    assert complete(project, f"agentctl describe {tail} rep") == ["reporter"]


def test_a_path_completes_to_run_directories_and_directories_to_go_into(project: Project) -> None:
    found = complete(project, "agentctl replay .agentctl/runs/")
    runs = ".agentctl/runs/"
    assert found == [runs + project.finished, runs + project.live, runs + "zz-broken", runs + "zz-empty/"]
    assert complete(project, "agentctl gc --run .agentctl/r") == [".agentctl/runs/"]


def test_run_and_validate_complete_plan_files_only(project: Project) -> None:
    # out/ is where hello.yaml's run wrote; notes.txt is no plan.
    assert complete(project, "agentctl run ") == ["gated.yml", "hello.yaml", "out/", "sub/", "team.edn"]
    assert complete(project, "agentctl validate h") == ["hello.yaml"]
    assert complete(project, "agentctl batch hello.yaml g") == ["gated.yml"]


def test_describe_completes_agents_of_the_run_given_or_of_the_newest(project: Project) -> None:
    assert complete(project, f"agentctl describe {project.finished} ") == ["plan", "greeter", "greeter-helper", "reporter"]
    assert complete(project, f"agentctl describe {project.finished} gr") == ["greeter", "greeter-helper"]
    assert complete(project, f"agentctl logs {project.finished} --agent r") == ["reporter"]
    # Nothing after the agent.
    assert complete(project, f"agentctl describe {project.finished} plan ") == []


def test_send_and_stop_complete_the_live_runs_agents_that_have_not_ended(project: Project) -> None:
    # The newest running run is the live one: its writer waits for approval, its `other` is done.
    assert complete(project, "agentctl send hi --to ") == ["plan", "writer"]
    assert complete(project, f"agentctl stop {project.live} --agent w") == ["writer"]
    assert complete(project, f"agentctl send hi --run {project.finished} --to ") == []


def test_approve_and_deny_complete_the_calls_held_now(project: Project) -> None:
    first = complete(project, "agentctl approve ")
    assert first[0] == project.call and project.live in first
    assert complete(project, f"agentctl deny --reason no {project.live} ") == [project.call]
    assert complete(project, f"agentctl approve {project.finished} ") == []


def test_completion_of_a_damaged_run_offers_nothing_and_prints_nothing(project: Project) -> None:
    log = project.root / ".agentctl" / "runs" / project.finished / "events.jsonl"
    before = (log.read_bytes(), sorted(p.name for p in log.parent.iterdir()))
    for line in ("agentctl describe zz-broken ", "agentctl approve zz-broken ", "agentctl describe zz-empty ",
                 "agentctl logs zz-broken --agent ", "agentctl describe no-such-run ", "agentctl replay /no/such/dir/"):
        assert complete(project, line) == [], line  # exit 0, nothing on stderr: asserted there
    # Bad values earlier on the line do not stop it either.
    assert project.live in complete(project, "agentctl replay --speed nonsense --at -4 ")
    # Completion only reads: the finished run's directory is as it was.
    assert (log.read_bytes(), sorted(p.name for p in log.parent.iterdir())) == before
