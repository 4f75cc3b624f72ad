"""Tool calls on a real two-node Ray cluster on 127.0.0.1 (``pytest -m ray``; needs agentctl[ray]).

One cluster for the module: a head node and a worker node, one CPU each, the worker with a
custom resource ``special``. Runs are real ``agentctl run`` processes that connect to it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import AGENTCTL, cli, events, running
from ray_cluster import LOOPBACK, TwoNodes, two_nodes

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def cluster() -> Iterator[TwoNodes]:
    yield from two_nodes()

PLUGINS = Path(__file__).parent / "plugins"


def run(tmp_path: Path, plan: str, *extra: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """``agentctl run`` of ``plan`` (text) in a process of its own; its result and events."""
    path = tmp_path / "plan.yaml"
    path.write_text(plan)
    run_dir = tmp_path / "run"
    env = {**os.environ, **LOOPBACK, "PYTHONPATH": str(PLUGINS)}
    proc = subprocess.run([AGENTCTL, "run", str(path), "--no-ui", "--no-watch-plan", "--run-dir", str(run_dir),
                           "--workspace", str(tmp_path), *extra], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=tmp_path)
    return proc, events(run_dir)


def results(evs: list[dict[str, Any]], tool: str) -> list[dict[str, Any]]:
    return [e for e in evs if e["type"] == "tool/result" and e["tool"] == tool]


def shell_plan(address: str, *commands: str, extra_settings: str = "", timeout: float | None = None,
               restart: str = "transient", defaults: str = "", tools: tuple[str, ...] = ("shell/run",)) -> str:
    tasks = "".join(
        f"  - id: t{i}\n    agent: script\n    restart: {restart}\n"
        + (f"    tool_timeout: {timeout}\n" if timeout else "")
        + f"    steps:\n      - call: {{tool: shell/run, args: {{command: {command!r}}}}}\n"
        for i, command in enumerate(commands)
    )
    docker = "  docker: true\n" if any(t.startswith("docker/") for t in tools) else ""
    return (f"name: remote\nsettings:\n  shell: true\n{docker}  executor: {{kind: ray, address: '{address}'{extra_settings}}}\n"
            f"defaults: {{tools: [{', '.join(tools)}]{defaults}}}\ntasks:\n{tasks}")


def test_shell_calls_run_on_the_cluster_and_report_their_node(cluster: TwoNodes, tmp_path: Path) -> None:
    plan = shell_plan(cluster.address, *["echo ran-$$ && pwd"] * 4)
    proc, evs = run(tmp_path, plan)
    assert proc.returncode == 0, proc.stderr
    done = results(evs, "shell/run")
    assert len(done) == 4 and all(e["ok"] for e in done)
    assert {e["node"] for e in done} <= {cluster.head, cluster.worker}
    for e in done:
        out = e["result"]["stdout"]
        assert out.startswith("ran-")
        # No shared workspace declared: each call ran in a scratch directory of its node.
        assert out.split()[1] != str(tmp_path) and "agentctl-call-" in out


def test_a_declared_shared_workspace_is_the_calls_working_directory(cluster: TwoNodes, tmp_path: Path) -> None:
    plan = shell_plan(cluster.address, "pwd && echo x > made.txt", extra_settings=", shared_workspace: true")
    proc, evs = run(tmp_path, plan)
    assert proc.returncode == 0, proc.stderr
    assert results(evs, "shell/run")[0]["result"]["stdout"].strip() == str(tmp_path)
    assert (tmp_path / "made.txt").read_text() == "x\n"


def test_a_custom_resource_request_lands_only_on_the_node_that_has_it(cluster: TwoNodes, tmp_path: Path) -> None:
    plan = shell_plan(cluster.address, *["sleep 0.2; echo $$"] * 6,
                      extra_settings=", tools: {shell/run: {num_cpus: 0.1, resources: {special: 0.5}}}")
    proc, evs = run(tmp_path, plan)
    assert proc.returncode == 0, proc.stderr
    nodes = [e["node"] for e in results(evs, "shell/run")]
    assert nodes == [cluster.worker] * 6


def test_a_timed_out_call_is_cancelled_on_the_cluster(cluster: TwoNodes, tmp_path: Path) -> None:
    # The timeout counts from the pool slot, so it covers starting a worker on a loaded machine too.
    marks = job(tmp_path, 12)
    proc, evs = run(tmp_path, shell_plan(cluster.address, f"sh {marks}/job.sh", timeout=6, restart="temporary"))
    assert proc.returncode == 1
    (result,) = results(evs, "shell/run")
    assert result["error_type"] == "timeout" and "cancelled where it ran" in result["error"]
    assert (marks / "inner").exists(), "the job had not started within its timeout: the machine is too loaded"
    assert_gone(marks, 12 - 6)


def test_a_worker_killed_mid_call_is_interrupted_as_after_a_crash(cluster: TwoNodes, tmp_path: Path) -> None:
    marks = job(tmp_path, 6)
    path = tmp_path / "plan.yaml"
    path.write_text(shell_plan(cluster.address, f"sh {marks}/job.sh"))
    env = {**os.environ, **LOOPBACK}
    run_dir = tmp_path / "run"
    with running("run", str(path), "--no-ui", "--no-watch-plan", "--run-dir", str(run_dir), "--workspace", str(tmp_path),
                 cwd=tmp_path, env=env, stdout=subprocess.PIPE) as proc:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (marks / "inner").exists():
            time.sleep(0.05)
        time.sleep(0.2)
        os.kill(int((marks / "worker").read_text()), signal.SIGKILL)  # the Ray worker running the call
        _, stderr = proc.communicate(timeout=60)
    evs = events(run_dir)
    (result,) = results(evs, "shell/run")
    assert result["error_type"] == "interrupted" and "lost its worker" in result["error"], {k: result[k] for k in ("ok", "error", "result")}
    # As after a crash: the script agent fails over the interrupted call for good, not restarted.
    (error,) = [e for e in evs if e["type"] == "agent/error"]
    assert error["agent_id"] == "t0" and error["error_type"] == "interrupted"
    assert not [e for e in evs if e["type"] == "agent/restarted"]
    assert proc.returncode == 1 and "interrupted" in stderr
    assert_gone(marks, 6)


def test_stop_cancels_the_runs_calls_on_the_cluster_and_a_resume_runs_them_again(cluster: TwoNodes, tmp_path: Path) -> None:
    # Two long calls, one CPU each: both nodes busy until `agentctl stop` from another process.
    marks = []
    for i in range(2):
        (tmp_path / f"t{i}").mkdir()
        m = job(tmp_path / f"t{i}", 60)
        script = m / "job.sh"  # once resumed, the call ends at once
        script.write_text(f"if [ -e {tmp_path}/resumed ]; then echo again; exit 0; fi\n" + script.read_text())
        marks.append(m)
    path = tmp_path / "plan.yaml"
    path.write_text(shell_plan(cluster.address, *(f"sh {m}/job.sh" for m in marks), defaults=", on_interrupted: retry"))
    run_dir = tmp_path / "run"
    env = {**os.environ, **LOOPBACK}
    with running("run", str(path), "--no-ui", "--no-watch-plan", "--run-dir", str(run_dir), "--workspace", str(tmp_path),
                 cwd=tmp_path, env=env) as proc:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not all((m / "inner").exists() for m in marks):
            time.sleep(0.05)
        assert all((m / "inner").exists() for m in marks), "the calls never started on the cluster"
        workers = [int((m / "worker").read_text()) for m in marks]
        stopped = cli("stop", str(run_dir), cwd=tmp_path)
        code = proc.wait(30)
        assert proc.stderr is not None
        stderr = proc.stderr.read()
    evs = events(run_dir)
    run_id = evs[0]["run_id"]
    assert (stopped.returncode, stopped.stdout.strip()) == (0, f"stopped run {run_id}: stopped (failed), exit 130"), stopped.stderr
    assert code == 130 and "Traceback" not in stderr, stderr
    # The log: each call cut short (`cancelled`), each agent stopped by the shutdown, then run/finished.
    assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))
    cut = results(evs, "shell/run")
    assert sorted((e["agent_id"], e["ok"], e["error_type"]) for e in cut) == [("t0", False, "cancelled"), ("t1", False, "cancelled")]
    assert sorted((e["agent_id"], e["reason"]) for e in evs if e["type"] == "agent/stopped" and e["agent_id"] in ("t0", "t1")) == [
        ("t0", "shutdown"), ("t1", "shutdown")]
    assert (evs[-1]["type"], evs[-1]["reason"], evs[-1]["status"]) == ("run/finished", "stopped", "failed")
    # On the cluster: the workers that ran the calls were killed, what the calls started is gone,
    # and every CPU is free again (no task of the run still holds one).
    for pid in workers:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        assert not _alive(pid), "a Ray worker that ran a stopped call still runs"
    for m in marks:
        assert_gone(m, 0)
    assert cluster_idle(cluster.address), "the stopped run's tasks still hold resources on the cluster"

    (tmp_path / "resumed").touch()
    resumed = subprocess.run([AGENTCTL, "run", "--resume", str(run_dir), "--no-ui", "--no-watch-plan", "--workspace", str(tmp_path)],
                             capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    evs = events(run_dir)
    assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))
    # A stopped run is continued: the cut-short calls count as interrupted and (on_interrupted: retry)
    # run again under their own ids; nothing else runs twice.
    for before in cut:
        again = [e for e in results(evs, "shell/run") if e["call_id"] == before["call_id"]]
        assert [(e["ok"], (e["result"] or {}).get("stdout")) for e in again] == [(False, None), (True, "again\n")]
    assert len([e for e in evs if e["type"] == "run/resumed"]) == 1
    assert (evs[-1]["type"], evs[-1]["reason"], evs[-1]["status"]) == ("run/finished", "completed", "ok")
    for m in marks:
        assert not (m / "late").exists()


def test_a_resumed_ray_run_cleans_up_containers_only_where_its_processes_ran_them(cluster: TwoNodes, tmp_path: Path) -> None:
    # A plan naming the container tools, its calls on the cluster; its process SIGKILLed mid-call.
    (tmp_path / "t0").mkdir()
    marks = job(tmp_path / "t0", 60)
    script = marks / "job.sh"
    script.write_text(f"if [ -e {tmp_path}/resumed ]; then exit 0; fi\n" + script.read_text())
    path = tmp_path / "plan.yaml"
    path.write_text(shell_plan(cluster.address, f"sh {script}", defaults=", on_interrupted: retry",
                               tools=("shell/run", "docker/run", "docker/exec")))
    run_dir = tmp_path / "ray-only"
    env = {**os.environ, **LOOPBACK}
    with running("run", str(path), "--no-ui", "--no-watch-plan", "--run-dir", str(run_dir), "--workspace", str(tmp_path),
                 cwd=tmp_path, env=env) as proc:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (marks / "inner").exists():
            time.sleep(0.05)
        assert (marks / "inner").exists(), "the call never started on the cluster"
        proc.kill()
        proc.wait(20)
    (tmp_path / "resumed").touch()
    # The same dead run as if its first process had run its tools here (a resume moved it to the cluster).
    begun_here = tmp_path / "begun-here"
    shutil.copytree(run_dir, begun_here, ignore=shutil.ignore_patterns("control.sock"))  # the dead process's socket
    first, rest = (begun_here / "events.jsonl").read_bytes().split(b"\n", 1)
    (begun_here / "events.jsonl").write_bytes(json.dumps({**json.loads(first), "executor": "local"}).encode() + b"\n" + rest)

    with local_engine() as (docker_host, asked):
        for d in (run_dir, begun_here):
            resumed = subprocess.run([AGENTCTL, "run", "--resume", str(d), "--no-ui", "--no-watch-plan", "--workspace",
                                      str(tmp_path)], capture_output=True, text=True, timeout=120,
                                     env={**env, "DOCKER_HOST": docker_host}, cwd=tmp_path)
            assert resumed.returncode == 0, resumed.stderr
            asked.append(d.name)
    evs = events(run_dir)
    assert [e["executor"] for e in evs if e["type"] in ("run/started", "run/resumed")] == ["ray", "ray"]
    # This machine's engine was asked nothing for the run that never ran a tool here; for the other, it was.
    assert asked == ["ray-only", "engine", "begun-here"], asked


@contextmanager
def local_engine() -> Iterator[tuple[str, list[str]]]:
    """A unix socket in the place of this machine's Docker engine: its ``DOCKER_HOST``, and a
    list to which each connection appends ``engine`` (the caller appends its own marks)."""
    short = Path(tempfile.mkdtemp(prefix="eng", dir="/tmp"))  # a socket path holds 108 bytes at most
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(short / "docker.sock"))
    listener.listen()
    listener.settimeout(0.2)
    asked: list[str] = []
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.close()
            if not asked or asked[-1] != "engine":
                asked.append("engine")

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield f"unix://{short / 'docker.sock'}", asked
    finally:
        done.set()
        thread.join()
        listener.close()
        shutil.rmtree(short)


def test_an_idempotent_remote_tool_is_rerun_by_the_cluster_when_its_worker_dies(cluster: TwoNodes, tmp_path: Path) -> None:
    plan = (f"name: idem\nsettings:\n  plugins: [ray_tools]\n  executor: {{kind: ray, address: '{cluster.address}'}}\n"
            "defaults: {tools: [test/flaky]}\ntasks:\n  - id: a\n    agent: script\n    steps:\n"
            f"      - call: {{tool: test/flaky, args: {{dir: '{tmp_path}'}}}}\n      - done: ok\n")
    proc, evs = run(tmp_path, plan)
    assert proc.returncode == 0, proc.stderr
    (result,) = results(evs, "test/flaky")
    assert result["ok"] and result["result"]["attempt"] == 2


def test_a_resource_request_for_a_local_tool_is_refused_in_one_line(cluster: TwoNodes, tmp_path: Path) -> None:
    plan = shell_plan(cluster.address, "true", extra_settings=", tools: {fs/write: {num_cpus: 1}}")
    proc, _ = run(tmp_path, plan)
    assert proc.returncode == 2
    assert "settings.executor.tools.fs/write: fs/write runs in this process" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("request_, asked", [
    ("{resources: {docker: 1}}", "CPU: 1, docker: 1"),
    ("{num_cpus: 4}", "CPU: 4"),
])
def test_a_request_no_node_can_meet_fails_the_call_at_once_saying_why(
    cluster: TwoNodes, tmp_path: Path, request_: str, asked: str,
) -> None:
    # Ray would queue the call until its timeout (10 minutes here); it fails instead, at once.
    plan = shell_plan(cluster.address, "touch ran", timeout=600, restart="temporary",
                      extra_settings=f", tools: {{shell/run: {request_}}}")
    proc, evs = run(tmp_path, plan, timeout=120)
    assert proc.returncode == 1
    line = (f"shell/run asks the cluster for {asked} and no node has that "
            "(2 nodes: CPU: 1 | CPU: 1, special: 1)")
    (result,) = results(evs, "shell/run")
    assert (result["ok"], result["error_type"], result["error"]) == (False, "tool_error", line)
    assert result["duration_ms"] < 60_000
    (error,) = [e for e in evs if e["type"] == "agent/error"]
    assert line in error["error"]  # the task fails with that reason
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "ran").exists()


def test_a_node_that_joins_is_seen_by_the_next_call(cluster: TwoNodes, tmp_path: Path) -> None:
    import anyio
    import ray

    from agentctl.executor import Executor, ToolResources
    from agentctl.services.ray_plane import RayRunner, connect
    from agentctl.services.tools.builtins import default_registry
    from agentctl.services.tools.registry import ToolContext

    tools = default_registry()
    executor = Executor(kind="ray", address=cluster.address,
                        tools={"shell/run": ToolResources(num_cpus=0, resources={"late": 1})})
    ctx = ToolContext(agent_id="a", workspace=tmp_path, run_id="r", shell_enabled=True)
    connect(cluster.address)
    try:
        runner = RayRunner(executor, tools)
        call = partial(runner.run, tools.get("shell/run"), {"command": "echo here"}, ctx, "c1")
        before = anyio.run(call)
        assert not before.ok and before.error is not None
        assert before.error.startswith("shell/run asks the cluster for late: 1 and no node")
        late = cluster.cluster.add_node(num_cpus=0, resources={"late": 1})
        try:
            cluster.cluster.wait_for_nodes()
            after = anyio.run(call)  # the miss reads the nodes again: no waiting for the snapshot to age
            assert after.ok and after.node == late.node_id and after.value["stdout"] == "here\n"
        finally:
            cluster.cluster.remove_node(late)
    finally:
        ray.shutdown()


def job(tmp_path: Path, seconds: float) -> Path:
    """A shell job whose grandchild would write ``late`` after ``seconds``; the pids go to ``marks/``.

    Ray itself kills a dead worker's direct children; the grandchild (in a new session
    already, as ``shell/run`` starts every command) is what only the reaper ends.
    """
    marks = tmp_path / "marks"
    marks.mkdir()
    (marks / "job.sh").write_text(
        # shell/run's `sh -c` is this script's parent; the Ray worker is its parent.
        f"cut -d' ' -f4 /proc/$PPID/stat > {marks}/worker\necho $$ > {marks}/outer\n"
        f"sh -c 'sleep {seconds}; touch {marks}/late' &\necho $! > {marks}/inner\nwait\n")
    return marks


def assert_gone(marks: Path, seconds: float) -> None:
    """The call's processes are gone, and stay so past the moment the marker would have been written."""
    for name in ("outer", "inner"):
        pid = int((marks / name).read_text())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        assert not _alive(pid), f"the call's {name} shell still runs on the cluster"
    time.sleep(seconds + 0.5)
    assert not (marks / "late").exists()


def cluster_idle(address: str, timeout: float = 20) -> bool:
    """Whether every CPU of the cluster is free (polled: a freed worker's resources are reported within seconds)."""
    import ray

    from agentctl.services.ray_plane import connect

    connect(address)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ray.available_resources().get("CPU", 0) == ray.cluster_resources().get("CPU"):
                return True
            time.sleep(0.2)
        return False
    finally:
        ray.shutdown()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
