"""The CLI end to end: example plans, exit codes, live edits, send, watch and replay (in this
process through Typer's CliRunner, and in real subprocesses where signals or a second process matter)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from cli_helpers import (
    FAILING,
    PLANS,
    ROOT,
    agent_row,
    cli,
    ends,
    events,
    interrupt,
    invoke,
    of,
    running,
    save,
    wait_for,
)

from agentctl.events.fold import state_at

BAD = Path(__file__).parent / "bad_plans"

SLOW_TASK = """\
  - id: {id}
    agent: script
    steps:
      - sleep: {sleep}
      - write: {{path: out/{id}.txt, content: "{content}"}}
      - wait: {{kind: never}}
"""


@pytest.mark.parametrize("plan", ["hello.yaml", "hello.edn", "locks.yaml"])
def test_example_plans_run_to_completion(plan: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = invoke("run", str(PLANS / plan), "--no-ui", "--no-watch-plan", "--run-dir", str(run_dir), "--workspace", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    evs = events(run_dir)
    assert evs[0]["type"] == "run/started" and evs[-1]["type"] == "run/finished"
    assert (evs[-1]["reason"], evs[-1]["status"]) == ("completed", "ok")
    assert of(evs, "plan/loaded")[0]["version"] == 1
    tasks = [e for e in of(evs, "agent/spawned") if e["parent_id"] == "plan"]
    assert tasks and all(e["depth"] == 1 for e in tasks)
    assert {e["agent_id"] for e in tasks} == {e["agent_id"] for e in of(evs, "agent/done") if e["agent_id"] in {t["agent_id"] for t in tasks}}
    assert (run_dir / f"plan.v1{Path(plan).suffix}").exists()
    assert list((tmp_path / "out").iterdir())
    if plan == "locks.yaml":
        types = [e["type"] for e in evs]
        assert types.index("lock/conflict") < types.index("conflict/resolved")
        assert of(evs, "lock/acquired", "contender")


def test_hello_plan_writes_its_files(tmp_path: Path) -> None:
    assert invoke("run", str(PLANS / "hello.yaml"), "--no-ui", "--no-watch-plan", "--run-dir", str(tmp_path / "run"), cwd=tmp_path).returncode == 0
    assert (tmp_path / "out" / "hello.txt").read_text().splitlines() == [
        "hello from greeter", "hello from greeter-helper", "greeter saw its helper finish"]
    assert (tmp_path / "out" / "report.txt").exists()


def test_a_failing_task_fails_the_run_and_blocks_its_dependants(tmp_path: Path) -> None:
    plan = tmp_path / "fail.yaml"
    plan.write_text(FAILING)
    run_dir = tmp_path / "run"
    proc = invoke("run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", str(run_dir), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    evs = events(run_dir)
    assert "on purpose" in of(evs, "agent/error", "breaks")[0]["error"]
    assert not of(evs, "agent/spawned", "after")
    assert of(evs, "agent/done", "fine")
    assert (evs[-1]["reason"], evs[-1]["status"]) == ("failed", "failed")


@pytest.mark.parametrize("bad", sorted(p.name for p in BAD.iterdir()))
def test_bad_plans_are_refused_with_where_and_what(bad: str, tmp_path: Path) -> None:
    for command in ("validate", "run"):
        proc = invoke(command, str(BAD / bad), cwd=tmp_path)
        assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
        assert bad in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / ".agentctl").exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["run", "plans/hello.yaml", "--durability", "sometimes"], "--durability"),
        (["run", "no/such/plan.yaml"], "not found"),
        (["run", "plans/hello.yaml", "--workspace", "README.md"], "--workspace"),
        (["run", "plans/hello.yaml", "--resume", "no/such/run"], "--resume"),
        (["replay", "no/such/events.jsonl"], "no"),
        (["send", "--to", "x", "--run", "no/such/run", "hi"], "no such run"),
    ],
)
def test_bad_flags_get_a_clear_error(args: list[str], fragment: str) -> None:
    proc = invoke(*args, cwd=ROOT)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert fragment in proc.stderr and "Traceback" not in proc.stderr


def test_help_and_schema(tmp_path: Path) -> None:
    for command in ([], ["run"], ["watch"], ["replay"], ["send"], ["diff"], ["validate"], ["schema"]):
        assert invoke(*command, "--help", cwd=tmp_path).returncode == 0
    import json

    schema = json.loads(invoke("schema", cwd=tmp_path).stdout)
    assert "tasks" in schema["properties"]


def test_live_edits_are_reconciled_and_an_invalid_save_disturbs_nothing(tmp_path: Path) -> None:
    plan = tmp_path / "live.yaml"
    head = "name: live\ntasks:\n"
    save(plan, head + SLOW_TASK.format(id="keep", sleep=0, content="k") + SLOW_TASK.format(id="gone", sleep=0, content="g"))
    run_dir = tmp_path / "run"
    with running("run", str(plan), "--no-ui", "--keep-running", "--run-dir", str(run_dir), cwd=tmp_path) as proc:
        wait_for(run_dir, lambda e: len(of(e, "tool/result")) == 2)
        # add a task, remove one, change one
        save(plan, head + SLOW_TASK.format(id="keep", sleep=0, content="k2") + SLOW_TASK.format(id="new", sleep=0, content="n"))
        evs = wait_for(run_dir, lambda e: of(e, "agent/spawned", "new") and of(e, "agent/stopped", "gone")
                       and len(of(e, "agent/spawned", "keep")) == 2)
        diff = of(evs, "plan/diff")[-1]
        assert (diff["added"], diff["removed"], diff["changed"]) == (["new"], ["gone"], ["keep"])
        assert of(evs, "agent/stopped", "keep")[0]["reason"] == "requested"
        before = len(evs)
        # an invalid save: logged, nothing stopped or spawned
        save(plan, "name: live\ntasks: [{id: keep, agent: scrip}]\n")
        evs = wait_for(run_dir, lambda e: of(e, "plan/invalid"))
        time.sleep(0.3)
        evs = events(run_dir)
        later = evs[before:]
        assert not of(later, "agent/stopped") and not of(later, "agent/spawned")
        invalid = of(evs, "plan/invalid")[0]["error"]
        assert invalid["line"] == 2 and "scrip" in invalid["message"]
        # a fix is applied again
        save(plan, head + SLOW_TASK.format(id="keep", sleep=0, content="k2") + SLOW_TASK.format(id="new", sleep=0, content="n")
             + SLOW_TASK.format(id="third", sleep=0, content="t"))
        evs = wait_for(run_dir, lambda e: of(e, "agent/spawned", "third"))
        assert [e["version"] for e in of(evs, "plan/loaded")] == [1, 2, 3]
        # saving the same plan again changes nothing
        n_diffs = len(of(evs, "plan/diff"))
        save(plan, plan.read_text())
        time.sleep(0.5)
        assert len(of(events(run_dir), "plan/diff")) == n_diffs
        evs = interrupt(proc, run_dir)
    stopped = {e["agent_id"] for e in of(evs, "agent/stopped") if e["reason"] == "shutdown"}
    assert stopped == {"plan", "keep", "new", "third"}
    assert (tmp_path / "out" / "keep.txt").read_text() == "k2"


def test_sigterm_shuts_down_cleanly(tmp_path: Path) -> None:
    plan = tmp_path / "p.yaml"
    plan.write_text("name: p\ntasks:\n" + SLOW_TASK.format(id="w", sleep=0, content="x"))
    run_dir = tmp_path / "run"
    with running("run", str(plan), "--no-ui", "--run-dir", str(run_dir), cwd=tmp_path) as proc:
        wait_for(run_dir, lambda e: of(e, "tool/result", "w"))
        ends(proc, 130, signal.SIGTERM)
    evs = events(run_dir)
    assert evs[-1]["reason"] == "interrupted" and of(evs, "agent/stopped", "w")[0]["reason"] == "shutdown"


def test_send_reaches_a_running_agent(tmp_path: Path) -> None:
    plan = tmp_path / "p.yaml"
    plan.write_text("name: p\ntasks:\n  - id: listener\n    agent: script\n    steps: [{wait: goal}, {done: heard}]\n")
    run_dir = tmp_path / "run"
    with running("run", str(plan), "--no-ui", "--run-dir", str(run_dir), cwd=tmp_path) as proc:
        wait_for(run_dir, lambda e: of(e, "agent/status", "listener"))
        sent = invoke("send", "--run", str(run_dir), "--to", "listener", "--kind", "goal", '{"x": 1}', cwd=tmp_path)
        assert sent.returncode == 0, sent.stderr
        ends(proc, 0)
    evs = events(run_dir)
    msg = [e for e in of(evs, "agent/message", "listener") if e["kind"] == "goal"][0]
    assert (msg["from"], msg["body"], msg["delivered"]) == ("user", {"x": 1}, True)
    assert of(evs, "agent/done", "listener")[0]["result"] == "heard"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("finished")
    assert invoke("run", str(PLANS / "hello.yaml"), "--no-ui", "--no-watch-plan", "--run-dir", str(tmp / "run"), cwd=tmp).returncode == 0
    return tmp / "run"


def test_replay_at_shows_the_state_at_that_event(finished_run: Path, tmp_path: Path) -> None:
    evs = events(finished_run)
    seq = next(e["seq"] for e in evs if e["type"] == "agent/done" and e["agent_id"] == "greeter-helper")
    proc = invoke("replay", str(finished_run / "events.jsonl"), "--at", str(seq), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    state = state_at(finished_run / "events.jsonl", seq)
    for agent in state.agents.values():
        line = next(line for line in proc.stdout.splitlines() if agent_row(line).startswith(agent.id + " "))
        assert agent.status in line
    # reporter was not spawned yet at that point: no row for it
    assert not any(agent_row(line).startswith("reporter ") for line in proc.stdout.splitlines())


def test_replay_summary_svg_and_fast_playback(finished_run: Path, tmp_path: Path) -> None:
    summary = invoke("replay", str(finished_run), "--summary", cwd=tmp_path)
    assert summary.returncode == 0 and "greeter" in summary.stdout
    svg = tmp_path / "view.svg"
    assert invoke("replay", str(finished_run), "--svg", str(svg), "--speed", "0", cwd=tmp_path).returncode == 0
    assert "greeter" in svg.read_text()
    assert invoke("replay", str(finished_run), "--speed", "0", cwd=tmp_path).returncode == 0


def test_replay_without_a_run_plays_the_newest_and_says_so_when_there_is_none(finished_run: Path, tmp_path: Path) -> None:
    empty = invoke("replay", "--summary", cwd=tmp_path)
    assert empty.returncode == 2 and "no runs under .agentctl/runs" in empty.stderr and "Traceback" not in empty.stderr
    runs = tmp_path / ".agentctl" / "runs"
    shutil.copytree(finished_run, runs / "20260101-000000-aaaaaa")
    newest = runs / "20260101-000001-bbbbbb"
    shutil.copytree(finished_run, newest)
    lines = (finished_run / "events.jsonl").read_text().splitlines(keepends=True)
    spawned = next(i for i, line in enumerate(lines) if '"agent/spawned"' in line and '"reporter"' in line)
    (newest / "events.jsonl").write_text("".join(lines[:spawned]))  # killed before reporter started
    os.utime(newest, (time.time() + 5, time.time() + 5))
    summary = invoke("replay", "--summary", "-o", "json", cwd=tmp_path)
    assert summary.returncode == 0, summary.stderr
    agents = json.loads(summary.stdout)["agents"]
    assert "greeter" in str(agents) and "reporter" not in str(agents)  # the newest run, not the other


def test_watch_follows_a_run_of_another_process(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with running("run", str(PLANS / "hello.yaml"), "--no-ui", "--no-watch-plan", "--run-dir", str(run_dir), cwd=tmp_path) as runner:
        wait_for(run_dir, lambda e: len(e) > 0)
        watch = cli("watch", str(run_dir), cwd=tmp_path, timeout=30)
        ends(runner, 0)
    assert watch.returncode == 0, watch.stderr
    assert "reporter" in watch.stdout and "done" in watch.stdout


def test_diff_is_a_dry_run_of_the_reconciler(finished_run: Path, tmp_path: Path) -> None:
    fresh = invoke("diff", str(PLANS / "hello.yaml"), cwd=tmp_path)
    assert fresh.returncode == 1 and "greeter" in fresh.stdout and "reporter" in fresh.stdout
    edited = tmp_path / "hello.yaml"
    edited.write_text((PLANS / "hello.yaml").read_text().replace("greeter finished; see out/hello.txt", "edited report"))
    changed = invoke("diff", str(edited), "--run", str(finished_run), cwd=tmp_path)
    assert changed.returncode == 1, changed.stderr
    rows = [line for line in changed.stdout.splitlines() if "│" in line]
    assert any("reporter" in r and "rerun" in r for r in rows)
    assert not any("greeter" in r for r in rows)


def test_a_task_the_policy_refuses_fails_the_run_instead_of_hanging(tmp_path: Path) -> None:
    plan = tmp_path / "refused.yaml"
    plan.write_text("""\
name: refused
policy:
  depth: {1: {models: [small]}}
tasks:
  - id: big
    agent: script
    model: large
    steps: [{done: never}]
  - id: ok
    agent: script
    steps: [{done: fine}]
""")
    run_dir = tmp_path / "run"
    proc = cli("run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", str(run_dir), cwd=tmp_path, timeout=30)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    evs = events(run_dir)
    refused = of(evs, "policy/refused")[0]
    assert (refused["child_id"], refused["rule"]) == ("big", "model")
    assert of(evs, "agent/done", "plan")[0]["result"] == {"big": "failed", "ok": "ok"}
