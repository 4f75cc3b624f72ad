"""Container tools on a real two-node Ray cluster on 127.0.0.1 with a real Docker engine
(``pytest -m ray_docker``; needs agentctl[ray] and root for the private engine).

One cluster for the module: the head node without an engine (its ``DOCKER_HOST`` names a
socket nobody listens on) and the worker node with the private engine of ``engine``
(``tests/private_dockerd.py``) and the resource ``docker: 2``. The ``agentctl run``
processes (the drivers) have no engine either: whatever a container call does, it does
on the worker node. Skipped with the reason when no engine can be started.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from cli_helpers import AGENTCTL, cli, events, running, wait_for
from private_dockerd import IMAGE, containers_of, killed_at_first_result
from ray_cluster import LOOPBACK, TwoNodes, two_nodes

pytestmark = pytest.mark.ray_docker

NO_ENGINE = "unix:///nonexistent/agentctl-no-engine.sock"


@pytest.fixture(scope="module")
def cluster(engine: str) -> Iterator[TwoNodes]:
    yield from two_nodes({"docker": 2}, head_env={"DOCKER_HOST": NO_ENGINE})


def driver_env() -> dict[str, str]:
    return {**os.environ, **LOOPBACK, "DOCKER_HOST": NO_ENGINE}


def agentctl(tmp_path: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AGENTCTL, *args, "--no-ui", "--no-watch-plan", "--workspace", str(tmp_path)],
                          capture_output=True, text=True, timeout=timeout, env=driver_env(), cwd=tmp_path)


def run_id_in(evs: list[dict[str, Any]]) -> str:
    return str(evs[0]["run_id"])


def results(evs: list[dict[str, Any]], tool: str) -> list[dict[str, Any]]:
    return [e for e in evs if e["type"] == "tool/result" and e["tool"] == tool]


# A python agent: a container run to its end, one left running, then exec and logs on that one.
STEPS = f"""\
from agentctl import actions as act

RUN = {{"image": "{IMAGE}", "mount_workspace": False}}


def step(ctx):
    if ctx.step_no == 1:
        return [act.call_tool("docker/run", {{**RUN, "command": "echo out; echo err >&2; exit 3"}})]
    if ctx.step_no == 2:
        return [act.call_tool("docker/run", {{**RUN, "command": "echo started; sleep 600", "detach": True}})]
    if ctx.step_no == 3:
        ctx.state["box"] = box = ctx.results[0].value["container"]
        return [act.call_tool("docker/exec", {{"container": box, "command": "cat; echo in-$HOSTNAME", "stdin": "piped\\n"}})]
    if ctx.step_no == 4:
        return [act.call_tool("docker/logs", {{"container": ctx.state["box"]}})]
    return [act.done("ok", ctx.state["box"])]
"""


def boxes_plan(address: str) -> str:
    # docker/exec and docker/logs ask for nothing the head lacks: only the pin keeps them off it.
    return f"""\
name: boxes
settings:
  docker: true
  executor:
    kind: ray
    address: '{address}'
    tools: {{docker/exec: {{num_cpus: 0}}, docker/logs: {{num_cpus: 0}}}}
defaults: {{tools: [docker/run, docker/exec, docker/logs]}}
tasks:
  - {{id: boxed, agent: python, step: 'boxsteps:step'}}
"""


def test_containers_run_on_the_engine_node_follow_ups_are_pinned_and_the_run_removes_them(
    cluster: TwoNodes, tmp_path: Path,
) -> None:
    (tmp_path / "boxsteps.py").write_text(STEPS)
    (tmp_path / "plan.yaml").write_text(boxes_plan(cluster.address))
    proc = agentctl(tmp_path, "run", str(tmp_path / "plan.yaml"), "--run-dir", str(tmp_path / "run"))
    evs = events(tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    ran, started = results(evs, "docker/run")
    (execd,) = results(evs, "docker/exec")
    (logs,) = results(evs, "docker/logs")
    # Only the worker node has the `docker` resource: every call ran there, and says so.
    assert [e["node"] for e in (ran, started, execd, logs)] == [cluster.worker] * 4
    assert (ran["result"]["exit_code"], ran["result"]["stdout"], ran["result"]["stderr"]) == (3, "out\n", "err\n")
    box = started["result"]["container"]
    assert execd["ok"] and execd["result"]["exit_code"] == 0
    assert execd["result"]["stdout"].startswith("piped\nin-")
    assert logs["result"]["stdout"] == "started\n"
    # The detached container outlived its call; the run's end removed it on its node.
    assert containers_of(run_id_in(evs)) == []
    assert box.startswith("agentctl-")


def test_a_follow_up_for_a_container_on_a_node_that_left_fails_at_once(cluster: TwoNodes, tmp_path: Path) -> None:
    from agentctl.executor import Executor, ToolResources
    from agentctl.services.ray_plane import RayRunner, connect
    from agentctl.services.tools import ToolContext, default_registry
    from agentctl.services.tools.docker import cleanup

    tools = default_registry()
    executor = Executor(kind="ray", address=cluster.address,
                        tools={"docker/run": ToolResources(num_cpus=0, resources={"docker": 1, "spare": 1})})
    ctx = ToolContext(agent_id="a", workspace=tmp_path, run_id=f"gone-{os.getpid()}")
    connect(cluster.address)
    spare = cluster.cluster.add_node(num_cpus=0, resources={"docker": 1, "spare": 1})
    try:
        cluster.cluster.wait_for_nodes()
        runner = RayRunner(executor, tools)
        started = anyio.run(runner.run, tools.get("docker/run"),
                            {"image": IMAGE, "command": ["sleep", "600"], "detach": True, "mount_workspace": False},
                            ctx, "c1")
        assert started.ok and started.node == spare.node_id
        cluster.cluster.remove_node(spare)
        t0 = time.monotonic()
        followed = anyio.run(runner.run, tools.get("docker/exec"),
                             {"container": started.value["container"], "command": ["true"], "timeout": 60.0}, ctx, "c2")
        assert not followed.ok
        assert followed.error == (f"docker/exec: {started.value['container']!r} is on node {spare.node_id}, "
                                  "which has left the cluster")
        assert time.monotonic() - t0 < 30
    finally:
        import ray

        ray.shutdown()
        anyio.run(cleanup, ctx.run_id)  # the node left; its container is still in the (shared) engine


def test_a_cancelled_docker_run_has_its_container_removed_on_its_node(cluster: TwoNodes, tmp_path: Path) -> None:
    """The work plane's timeout cancels the call (a cancel scope around it, as here): the task is
    force-cancelled on the cluster, which leaves the container running, and the runner removes it."""
    import ray

    from agentctl.executor import Executor
    from agentctl.services.ray_plane import RayRunner, connect
    from agentctl.services.tools import ToolContext, default_registry

    tools = default_registry()
    ctx = ToolContext(agent_id="a", workspace=tmp_path, run_id=f"cancel-{os.getpid()}")
    connect(cluster.address)
    try:
        runner = RayRunner(Executor(kind="ray", address=cluster.address), tools)

        async def main() -> None:
            async with anyio.create_task_group() as tg:
                tg.start_soon(runner.run, tools.get("docker/run"),
                              {"image": IMAGE, "command": ["sleep", "600"], "timeout": 600.0, "mount_workspace": False},
                              ctx, "c1")
                with anyio.fail_after(120):  # the container is up: the call is in the middle of its work
                    while not await anyio.to_thread.run_sync(containers_of, ctx.run_id):
                        await anyio.sleep(0.2)
                tg.cancel_scope.cancel()

        anyio.run(main)
        assert runner.cancelled == 1
        assert containers_of(ctx.run_id) == []  # at once: no run-end clean-up has run
        assert runner.containers.removed == 1
    finally:
        ray.shutdown()


KILLED = """\
name: killed
settings:
  docker: true
  executor: {{kind: ray, address: '{address}'}}
defaults: {{tools: [docker/run]}}
tasks:
  - id: boxed
    agent: script
    steps:
      - call: {{tool: docker/run, args: {{image: {image}, command: [sleep, "600"], detach: true, mount_workspace: false}}}}
      - sleep: 1
      - done: resumed
"""


def test_a_run_killed_with_a_container_up_removes_it_when_resumed(cluster: TwoNodes, tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(KILLED.format(address=cluster.address, image=IMAGE))
    run_dir = tmp_path / "run"
    killed_at_first_result(run_dir, str(plan), "--no-ui", "--no-watch-plan", "--workspace", str(tmp_path),
                           cwd=tmp_path, env=driver_env())
    evs = events(run_dir)
    (started,) = results(evs, "docker/run")
    assert started["node"] == cluster.worker
    run_id = run_id_in(evs)
    assert len(containers_of(run_id)) == 1, "the killed run should have left its container"
    resumed = agentctl(tmp_path, "run", "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert containers_of(run_id) == []
    assert [e["type"] for e in events(run_dir)][-1] == "run/finished"


def test_an_agents_containers_go_on_their_node_when_it_ends(cluster: TwoNodes, tmp_path: Path, recorder: Any) -> None:
    """No run-end clean-up here (that is the CLI session's): the runtime alone, its work plane on the cluster."""
    import ray

    from agentctl import actions as act
    from agentctl.executor import Executor
    from agentctl.runtime import AgentSpec, StepContext, open_runtime
    from agentctl.services.ray_plane import RayWorkPlane, connect
    from agentctl.services.tools import default_registry

    tools = default_registry()
    run_id = f"ends-{os.getpid()}"

    def step(ctx: StepContext) -> list[Any]:
        if ctx.step_no == 1:
            return [act.call_tool("docker/run", {"image": IMAGE, "command": ["sleep", "600"], "detach": True,
                                                 "mount_workspace": False})]
        return [act.done("ok", ctx.results[0].value)]

    async def main() -> RayWorkPlane:
        plane = RayWorkPlane(recorder, executor=Executor(kind="ray", address=cluster.address), tools=tools)
        async with open_runtime(recorder, run_id=run_id, tools=tools, plane=plane, workspace=tmp_path) as rt:
            rt.spawn(AgentSpec("boxer", step))
            await rt.wait("boxer")
            with anyio.fail_after(60):  # the removal runs as a runtime task after the agent ended
                while await anyio.to_thread.run_sync(containers_of, run_id):
                    await anyio.sleep(0.2)
        return plane

    connect(cluster.address)
    try:
        plane = anyio.run(main)
    finally:
        ray.shutdown()
    (started,) = [e for e in recorder.of_type("tool/result") if e["tool"] == "docker/run"]
    assert started["ok"] and started["node"] == cluster.worker
    assert plane.runner.containers.removed == 1  # it was up, and the agent's end took it down


COMPOSE = f"""\
version: "2.4"
services:
  web: {{image: {IMAGE}, command: [sh, -c, "sleep 600"], init: true}}
  worker: {{image: {IMAGE}, command: [sh, -c, "sleep 600"], init: true}}
"""


def test_compose_down_runs_on_the_node_that_brought_the_project_up(cluster: TwoNodes, tmp_path: Path) -> None:
    (tmp_path / "stack.yml").write_text(COMPOSE)
    (tmp_path / "plan.yaml").write_text(f"""\
name: stacked
settings:
  docker: true
  executor:
    kind: ray
    address: '{cluster.address}'
    shared_workspace: true
    tools: {{docker/compose-down: {{num_cpus: 0}}}}
defaults: {{tools: [docker/compose-up, docker/compose-down]}}
tasks:
  - id: stacked
    agent: script
    steps:
      - call: {{tool: docker/compose-up, args: {{file: stack.yml, project: stack}}}}
      - call: {{tool: docker/compose-down, args: {{project: stack}}}}
      - done: ok
""")
    proc = agentctl(tmp_path, "run", str(tmp_path / "plan.yaml"), "--run-dir", str(tmp_path / "run"))
    evs = events(tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    (up,) = results(evs, "docker/compose-up")
    (down,) = results(evs, "docker/compose-down")
    assert len(up["result"]["containers"]) == 2
    # compose-down asks for nothing the head lacks: the pin alone sent it to the project's node.
    assert (up["node"], down["node"]) == (cluster.worker, cluster.worker)
    assert down["result"] == {"project": up["result"]["project"], "removed": 2}
    assert containers_of(run_id_in(evs)) == []


def test_a_docker_run_whose_worker_dies_is_interrupted_and_its_container_removed_at_the_end(
    cluster: TwoNodes, tmp_path: Path,
) -> None:
    import ray

    from agentctl.executor import Executor
    from agentctl.services.ray_plane import RayRunner, connect
    from agentctl.services.tools import ToolContext, default_registry
    from agentctl.services.workers import Interrupted

    tools = default_registry()
    ctx = ToolContext(agent_id="a", workspace=tmp_path, run_id=f"lost-{os.getpid()}")
    connect(cluster.address)
    try:
        runner = RayRunner(Executor(kind="ray", address=cluster.address), tools)
        outcome: list[BaseException] = []

        async def call() -> None:
            try:
                await runner.run(tools.get("docker/run"), {"image": IMAGE, "command": ["sleep", "600"], "timeout": 600.0,
                                                           "mount_workspace": False}, ctx, "c1")
            except Interrupted as exc:
                outcome.append(exc)

        async def main() -> None:
            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                with anyio.fail_after(120):
                    while not await anyio.to_thread.run_sync(containers_of, ctx.run_id):
                        await anyio.sleep(0.2)
                # The Ray worker is the parent of the `docker run` CLI the call is waiting on.
                cli = subprocess.run(["pgrep", "-f", f"docker run --name agentctl-{ctx.run_id}"], capture_output=True,
                                     text=True, check=True).stdout.split()
                worker = int(Path(f"/proc/{cli[0]}/stat").read_text().rsplit(")", 1)[1].split()[1])
                os.kill(worker, 9)

        anyio.run(main)
        assert len(outcome) == 1 and "lost its worker mid-call" in str(outcome[0])
        assert len(containers_of(ctx.run_id)) == 1  # killing the worker leaves the container running
        anyio.run(runner.release_containers, ctx.run_id)  # the run's end: the node is unknown, every docker node
        assert containers_of(ctx.run_id) == []
    finally:
        ray.shutdown()


# Started with --ray (its plan names no executor): a resume without it runs the tools here.
KILLED_HERE = KILLED.replace("  executor: {{kind: ray, address: '{address}'}}\n", "")


def killed_with_a_container_on_the_worker(cluster: TwoNodes, tmp_path: Path) -> tuple[Path, str]:
    """A run started with ``--ray``, SIGKILLed with a container up on the worker node; its dir and id."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(KILLED_HERE.format(image=IMAGE))
    assert "executor" not in plan.read_text()
    run_dir = tmp_path / "run"
    killed_at_first_result(run_dir, str(plan), "--ray", cluster.address, "--no-ui", "--no-watch-plan", "--workspace",
                           str(tmp_path), cwd=tmp_path, env=driver_env())
    evs = events(run_dir)
    (started,) = results(evs, "docker/run")
    assert started["node"] == cluster.worker
    assert (evs[0]["executor"], evs[0]["address"]) == ("ray", cluster.address)
    run_id = run_id_in(evs)
    assert len(containers_of(run_id)) == 1, "the killed run should have left its container"
    return run_dir, run_id


def gc(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``agentctl gc ARGS`` where no engine answers: only a node of the cluster can remove anything."""
    return subprocess.run([AGENTCTL, "gc", *args], capture_output=True, text=True, timeout=180, env=driver_env(),
                          cwd=tmp_path)


def test_a_ray_run_resumed_here_names_the_gc_that_removes_its_container_on_the_worker_node(
    cluster: TwoNodes, engine: str, tmp_path: Path,
) -> None:
    run_dir, run_id = killed_with_a_container_on_the_worker(cluster, tmp_path)
    # Resumed without --ray: its tools run here (an engine here, as a local run of a docker plan needs).
    resumed = subprocess.run([AGENTCTL, "run", "--resume", str(run_dir), "--no-ui", "--no-watch-plan", "--workspace",
                              str(tmp_path)], capture_output=True, text=True, timeout=180,
                             env={**driver_env(), "DOCKER_HOST": engine}, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    command = f"agentctl gc --run-id {run_id} --ray {cluster.address}"
    assert [line for line in resumed.stderr.splitlines() if line.startswith("warning:")] == [
        f"warning: run {run_id} ran container tools on the Ray cluster at {cluster.address!r}, where its process died; "
        f"this resume runs its tools here and does not remove what that process left on the cluster's nodes: {command}"]
    evs = events(run_dir)
    assert [(e["executor"], e["address"]) for e in evs if e["type"] in ("run/started", "run/resumed")] == [
        ("ray", cluster.address), ("local", None)]
    assert evs[-1]["type"] == "run/finished" and evs[-1]["status"] == "ok"
    assert len(containers_of(run_id)) == 1, "the warning is true: the resume here left it"
    # The very command the warning names, run where no engine answers.
    cleaned = gc(tmp_path, *shlex.split(command)[2:])
    assert (cleaned.returncode, cleaned.stderr) == (0, "")
    assert cleaned.stdout == (f"gc run {run_id} on the Ray cluster at {cluster.address}: "
                              "removed 1 containers, 0 networks, 0 volumes on 2 nodes\n")
    assert containers_of(run_id) == []


def test_gc_of_a_ray_run_dir_removes_its_container_on_the_cluster_it_recorded(
    cluster: TwoNodes, tmp_path: Path,
) -> None:
    run_dir, run_id = killed_with_a_container_on_the_worker(cluster, tmp_path)
    # No --ray: the address comes from the log; this machine's engine (none here) is not asked, no process ran here.
    for removed in (1, 0):
        cleaned = gc(tmp_path, "--run", str(run_dir))
        assert (cleaned.returncode, cleaned.stderr) == (0, "")
        assert cleaned.stdout == (f"gc run {run_id} on the Ray cluster at {cluster.address}: "
                                  f"removed {removed} containers, 0 networks, 0 volumes on 2 nodes\n")
        assert containers_of(run_id) == []


def test_gc_of_an_unreachable_cluster_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{unused.getsockname()[1]}"
    got = gc(tmp_path, "--run-id", "r-1", "--ray", address)
    assert (got.returncode, got.stdout) == (2, "")
    assert got.stderr.startswith(f"error: --ray: cannot reach the Ray cluster at {address!r}: ")
    assert got.stderr.count("\n") == 1


# One long container call; once resumed (the workspace, shared, holds `resumed`) it ends at once.
STOPPED = """\
name: stopped
settings:
  docker: true
  executor: {{kind: ray, address: '{address}', shared_workspace: true}}
defaults: {{tools: [docker/run], on_interrupted: retry}}
tasks:
  - id: boxed
    agent: script
    steps:
      - call: {{tool: docker/run, args: {{image: {image}, timeout: 600, command: 'if [ -e /workspace/resumed ]; then echo again; else sleep 600; fi'}}}}
      - done: ok
"""


def test_stop_cancels_a_container_call_on_the_worker_node_removes_its_container_and_a_resume_completes(
    cluster: TwoNodes, tmp_path: Path,
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(STOPPED.format(address=cluster.address, image=IMAGE))
    run_dir = tmp_path / "run"
    with running("run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", str(run_dir), "--workspace", str(tmp_path),
                 cwd=tmp_path, env=driver_env()) as proc:
        run_id = run_id_in(wait_for(run_dir, lambda evs: evs, timeout=60))
        deadline = time.monotonic() + 120
        while not containers_of(run_id):  # the container is up: the call is in the middle of its work
            assert proc.poll() is None and time.monotonic() < deadline, "the container never started"
            time.sleep(0.2)
        stopped = cli("stop", str(run_dir), cwd=tmp_path)
        code = proc.wait(90)
        assert proc.stderr is not None
        stderr = proc.stderr.read()
    assert (stopped.returncode, stopped.stdout.strip()) == (0, f"stopped run {run_id}: stopped (failed), exit 130")
    assert code == 130 and "Traceback" not in stderr, stderr
    evs = events(run_dir)
    (cut,) = results(evs, "docker/run")
    assert (cut["ok"], cut["error_type"]) == (False, "cancelled")
    assert (evs[-1]["type"], evs[-1]["reason"], evs[-1]["status"]) == ("run/finished", "stopped", "failed")
    assert containers_of(run_id) == [], "the stopped call's container is still on the worker node"

    (tmp_path / "resumed").touch()
    resumed = agentctl(tmp_path, "run", "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert "warning:" not in resumed.stderr  # on the same cluster: nothing is left for gc
    evs = events(run_dir)
    again = [e for e in results(evs, "docker/run") if e["call_id"] == cut["call_id"]]
    assert [(e["ok"], (e["result"] or {}).get("stdout")) for e in again] == [(False, None), (True, "again\n")]
    assert again[-1]["node"] == cluster.worker
    assert (evs[-1]["type"], evs[-1]["reason"], evs[-1]["status"]) == ("run/finished", "completed", "ok")
    assert containers_of(run_id) == []
