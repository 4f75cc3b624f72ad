"""A run whose Ray cluster dies mid-call (``pytest -m ray``; needs agentctl[ray]).

The cluster here is a head node of its own (not the two-node cluster of the other modules,
which it would take down): its GCS and raylet are killed while a ``shell/run`` call runs on
it. The run must end at once with one line naming the lost cluster, exit 1, its log whole;
``agentctl run --resume`` against a fresh cluster then finishes it to the workspace an
uncrashed run leaves, the cut-short call handled as after a crash (``docs/durability.md``).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cli_helpers import AGENTCTL, events, wait_for
from ray_cluster import LOOPBACK, loopback

pytestmark = pytest.mark.ray


@contextmanager
def head_node(cpus: int = 1) -> Iterator[object]:
    """A one-node cluster on 127.0.0.1 (a head node: GCS and raylet, processes of their own)."""
    from ray.cluster_utils import Cluster

    with loopback():
        c = Cluster(initialize_head=True, head_node_args={
            "num_cpus": cpus, "object_store_memory": 80 * 1024 * 1024, "include_dashboard": False})
        try:
            yield c
        finally:
            try:
                c.shutdown()
            except Exception:  # noqa: BLE001 - the test killed it already
                pass


def plan(address: str, marks: Path) -> str:
    # on_interrupted: retry: the cut-short call may run again on resume (it is idempotent in effect).
    return f"""\
name: lost
settings:
  shell: true
  executor: {{kind: ray, address: '{address}', shared_workspace: true}}
defaults: {{tools: [shell/run], on_interrupted: retry}}
tasks:
  - id: first
    agent: script
    steps:
      - call: {{tool: shell/run, args: {{command: 'echo 1 > first.txt'}}}}
  - id: slow
    agent: script
    depends_on: [first]
    steps:
      - call: {{tool: shell/run, args: {{command: 'touch {marks}/started; sleep 3; echo 2 > slow.txt'}}}}
  - id: last
    agent: script
    depends_on: [slow]
    steps:
      - call: {{tool: shell/run, args: {{command: 'echo 3 > last.txt'}}}}
"""


def agentctl(tmp: Path, *args: str) -> list[str]:
    return [AGENTCTL, *args, "--no-ui", "--no-watch-plan", "--workspace", str(tmp / "ws")]


def files(workspace: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(workspace.iterdir()) if p.is_file()}


def test_a_run_whose_cluster_dies_ends_in_one_line_and_resumes_on_a_fresh_cluster(tmp_path: Path) -> None:
    env = {**os.environ, **LOOPBACK}
    crashed, clean = tmp_path / "crashed", tmp_path / "clean"
    for d in (crashed, clean):
        (d / "ws").mkdir(parents=True)
        (d / "marks").mkdir()
    run_dir = crashed / "run"
    with head_node() as doomed:
        address = doomed.address  # type: ignore[attr-defined]
        (crashed / "plan.yaml").write_text(plan(address, crashed / "marks"))
        proc = subprocess.Popen([*agentctl(crashed, "run", str(crashed / "plan.yaml")), "--run-dir", str(run_dir)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=crashed)
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not (crashed / "marks" / "started").exists():
                time.sleep(0.05)
            assert (crashed / "marks" / "started").exists(), "the slow call never started"
            doomed.head_node.kill_all_processes(check_alive=False, allow_graceful=False)  # type: ignore[attr-defined]
            _, stderr = proc.communicate(timeout=60)  # not the minute Ray's driver would wait for its GCS
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        f"error: lost the Ray cluster at '{address}': its head (GCS at {address}) does not answer; "
        f"the run is resumable: agentctl run --resume {run_dir} --ray ADDRESS")
    evs = events(run_dir)
    assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))  # whole: no gap, nothing torn
    assert (evs[-1]["type"], evs[-1]["reason"], evs[-1]["status"]) == ("run/finished", "cluster_lost", "failed")
    (cut,) = [e for e in evs if e["type"] == "tool/result" and e["agent_id"] == "slow"]
    assert cut["error_type"] == "cancelled"  # as a signal's shutdown leaves it: interrupted to a resume
    assert files(crashed / "ws") == {"first.txt": "1\n"}

    with head_node(cpus=2) as fresh:  # the resume and an uncrashed run of the plan, side by side
        address = fresh.address  # type: ignore[attr-defined]
        (clean / "plan.yaml").write_text(plan(address, clean / "marks"))
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
                 for cmd, cwd in (([*agentctl(crashed, "run", "--resume", str(run_dir)), "--ray", address], crashed),
                                  ([*agentctl(clean, "run", str(clean / "plan.yaml")), "--run-dir", str(clean / "run")],
                                   clean))]
        try:
            resumed, uncrashed = [(p.communicate(timeout=120)[1], p.returncode) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
    assert uncrashed[1] == 0, uncrashed[0]
    assert resumed[1] == 0, resumed[0]
    assert files(crashed / "ws") == files(clean / "ws") == {"first.txt": "1\n", "slow.txt": "2\n", "last.txt": "3\n"}
    evs = events(run_dir)
    assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))
    # The first call's result was kept (not run again); the cut-short one ran again under its own id.
    first = [e for e in evs if e["type"] == "tool/requested" and e["agent_id"] == "first"]
    slow = [e for e in evs if e["type"] == "tool/result" and e["agent_id"] == "slow"]
    assert len(first) == 1
    assert [(e["call_id"], e["ok"]) for e in slow] == [(cut["call_id"], False), (cut["call_id"], True)]


def test_a_cluster_lost_between_calls_ends_the_run_too(tmp_path: Path) -> None:
    # No call in flight: the run's watcher notices (Ray's driver would abort the process after a minute).
    (tmp_path / "ws").mkdir()
    run_dir = tmp_path / "run"
    with head_node() as doomed:
        address = doomed.address  # type: ignore[attr-defined]
        (tmp_path / "plan.yaml").write_text(
            f"name: idle\nsettings:\n  shell: true\n  executor: {{kind: ray, address: '{address}'}}\n"
            "defaults: {tools: [shell/run]}\ntasks:\n  - id: a\n    agent: script\n    steps:\n"
            "      - call: {tool: shell/run, args: {command: 'echo hi'}}\n      - sleep: 600\n      - done: ok\n")
        proc = subprocess.Popen([*agentctl(tmp_path, "run", str(tmp_path / "plan.yaml")), "--run-dir", str(run_dir)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **LOOPBACK},
                                cwd=tmp_path)
        try:
            wait_for(run_dir, lambda evs: [e for e in evs if e["type"] == "agent/status" and e.get("reason") == "sleep"],
                     timeout=90)
            doomed.head_node.kill_all_processes(check_alive=False, allow_graceful=False)  # type: ignore[attr-defined]
            _, stderr = proc.communicate(timeout=50)  # well before the sleep's 600 s, and Ray's own minute
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 1 and "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1].startswith(f"error: lost the Ray cluster at '{address}'")
    evs = events(run_dir)
    assert (evs[-1]["type"], evs[-1]["reason"]) == ("run/finished", "cluster_lost")
    assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))
