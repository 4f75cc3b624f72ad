"""Container tools against a real Docker engine, plus the parts that need none.

Tests marked ``docker`` share one private engine, the session fixture ``engine``
(``tests/private_dockerd.py``). Where no engine can be started they are skipped with the
reason. Run them with ``pytest -m docker``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest
from cli_helpers import AGENTCTL, ROOT, invoke
from private_dockerd import IMAGE, containers_of, killed_at_first_result, sh

from agentctl import actions as act
from agentctl.cli.gc import run_id_of
from agentctl.errors import ToolError
from agentctl.plan.load import load_plan
from agentctl.runtime import AgentSpec, StepContext, open_runtime
from agentctl.services.tools import ToolContext, default_registry
from agentctl.services.tools.docker import check_docker, cleanup, uses_docker
from agentctl.services.workers import LocalWorkPlane

docker_test = pytest.mark.docker


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def ctx(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ToolContext]:
    run_id = f"t-{os.getpid()}-{request.node.name[:30]}".lower()
    yield ToolContext(agent_id="worker", workspace=tmp_path, run_id=run_id)


@pytest.fixture
def tools(engine: str, ctx: ToolContext) -> Iterator[Any]:
    """Calls ``docker/*`` tools through the registry (validation included); cleans up after."""
    reg = default_registry()

    def call(name: str, **args: Any) -> Any:
        return anyio.run(reg.invoke, name, args, ctx)

    yield call
    anyio.run(cleanup, ctx.run_id)


# ---------------------------------------------------------------- docker/run


@docker_test
def test_run_returns_exit_code_env_and_stdout_stderr_apart(tools) -> None:
    out = tools("docker/run", image=IMAGE, command="echo out-$WHO; echo err-$WHO >&2; exit 3", env={"WHO": "me"})
    assert out["exit_code"] == 3
    assert out["stdout"] == "out-me\n"
    assert out["stderr"] == "err-me\n"
    assert out["timed_out"] is False
    ok = tools("docker/run", image=IMAGE, command=["echo", "fine"])
    assert (ok["exit_code"], ok["stdout"]) == (0, "fine\n")


@docker_test
def test_run_has_no_network_unless_asked(tools) -> None:
    off = tools("docker/run", image=IMAGE, command="ls /sys/class/net")
    assert off["stdout"].split() == ["lo"]
    on = tools("docker/run", image=IMAGE, command="ls /sys/class/net", network=True)
    assert "eth0" in on["stdout"].split()


@docker_test
def test_run_sees_the_workspace_and_reads_stdin(tools, ctx: ToolContext) -> None:
    (ctx.workspace / "in.txt").write_text("from host\n")
    out = tools("docker/run", image=IMAGE, command="cat in.txt; cat - > out.txt; pwd", stdin="from stdin\n")
    assert out["stdout"] == "from host\n/workspace\n"
    assert (ctx.workspace / "out.txt").read_text() == "from stdin\n"
    alone = tools("docker/run", image=IMAGE, command="ls /workspace | wc -l", mount_workspace=False)
    assert alone["stdout"].strip() == "0"


@docker_test
def test_what_steers_the_run_is_read_only_in_a_container(engine: str, ctx: ToolContext) -> None:
    ws = ctx.workspace
    (ws / "plan.yaml").write_text("name: p\n")
    run = ws / ".agentctl" / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "events.jsonl").write_text("{}\n")
    guarded = replace(ctx, protected=(ws / "plan.yaml", run))
    reg = default_registry()
    script = ("echo pwned > plan.yaml; echo garbage >> .agentctl/runs/r1/events.jsonl; rm -rf .agentctl; "
              "echo forged > .agentctl/runs/r1/control.jsonl; echo fine > out.txt; true")
    try:
        out = anyio.run(reg.invoke, "docker/run", {"image": IMAGE, "command": script}, guarded)
    finally:
        anyio.run(cleanup, ctx.run_id)
    assert "Read-only file system" in out["stderr"]
    assert (ws / "plan.yaml").read_text() == "name: p\n"
    assert (run / "events.jsonl").read_text() == "{}\n"
    assert not (run / "control.jsonl").exists()
    assert (ws / "out.txt").read_text() == "fine\n"


def _git(ws: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(ws.parent), "GIT_AUTHOR_NAME": "u", "GIT_AUTHOR_EMAIL": "u@x",
           "GIT_COMMITTER_NAME": "u", "GIT_COMMITTER_EMAIL": "u@x"}
    return subprocess.run(["git", *args], cwd=ws, env=env, capture_output=True, text=True, timeout=60)


@docker_test
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_container_cannot_plant_what_git_or_an_earlier_run_would_obey(engine: str, ctx: ToolContext) -> None:
    """The workspace is a git repository holding a nested repository, a worktree-style
    ``.git`` file whose gitdir is in the workspace, and an earlier run's directory under
    another name: a container (as root) tries to plant hooks and ``core.fsmonitor`` in each
    and to replace them; every write fails, and the real git then runs nothing planted."""
    ws, marker = ctx.workspace, ctx.workspace.parent / "ran"
    assert _git(ws, "init", "-q").returncode == 0
    (ws / "nested").mkdir()
    assert _git(ws / "nested", "init", "-q").returncode == 0
    (ws / "wt").mkdir()
    (ws / "wt" / ".git").write_text("gitdir: ../.bare\n")
    (ws / ".bare" / "hooks").mkdir(parents=True)
    earlier = ws / "out" / "run1"
    earlier.mkdir(parents=True)
    (earlier / "events.jsonl").write_text("{}\n")
    before = {p: p.read_bytes() for p in (ws / ".git" / "config", ws / "nested" / ".git" / "config", ws / "wt" / ".git")}
    plant = f"printf '#!/bin/sh\\ntouch {marker}\\n' >"
    attacks = [
        f"{plant} .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit",
        f"printf '[core]\\n\\tfsmonitor = \"touch {marker}; false\"\\n' >> .git/config",
        "rm -rf .git", "mv .git gone", "rm -rf .git/hooks",
        f"{plant} nested/.git/hooks/pre-commit", "rm -rf nested/.git",
        "echo 'gitdir: ../planted' > wt/.git", f"{plant} .bare/hooks/pre-commit",
        "echo garbage >> out/run1/events.jsonl", "echo forged > out/run1/control.jsonl", "rm -rf out/run1",
    ]
    script = ["sh", "-c", "".join(f"({a}) 2>/dev/null && echo WROTE {i}\n" for i, a in enumerate(attacks)) + "echo fine > ok.txt"]
    reg = default_registry()
    try:
        out = anyio.run(reg.invoke, "docker/run", {"image": IMAGE, "command": script}, ctx)
    finally:
        anyio.run(cleanup, ctx.run_id)
    assert "WROTE" not in out["stdout"], out
    assert (ws / "ok.txt").read_text() == "fine\n"
    assert not (ws / ".git" / "hooks" / "pre-commit").exists()
    assert not (ws / "nested" / ".git" / "hooks" / "pre-commit").exists()
    assert not (ws / ".bare" / "hooks" / "pre-commit").exists()
    assert {p: p.read_bytes() for p in before} == before
    assert (earlier / "events.jsonl").read_text() == "{}\n" and not (earlier / "control.jsonl").exists()
    for repo in (ws / "nested", ws):
        assert _git(repo, "status").returncode == 0
        assert _git(repo, "add", "-A").returncode == 0
        assert _git(repo, "commit", "-qm", "x", "--allow-empty").returncode == 0
    assert not marker.exists()


@docker_test
def test_run_timeout_kills_and_removes_the_container(tools, ctx: ToolContext) -> None:
    out = tools("docker/run", image=IMAGE, command=["sleep", "600"], timeout=1.0)
    assert out["timed_out"] is True and out["exit_code"] is None
    assert containers_of(ctx.run_id) == []


@docker_test
def test_run_of_a_missing_image_is_a_tool_error(tools) -> None:
    with pytest.raises(ToolError, match="docker/run"):
        tools("docker/run", image="agentctl-test/no-such-image:never", command=["true"])


@docker_test
def test_containers_carry_run_and_agent_labels(tools, ctx: ToolContext) -> None:
    started = tools("docker/run", image=IMAGE, command=["sleep", "600"], detach=True)
    labels = sh("inspect", "--format", '{{index .Config.Labels "agentctl.run"}} {{index .Config.Labels "agentctl.agent"}}',
                started["container"]).split()
    assert labels == [ctx.run_id, "worker"]
    assert sh("inspect", "--format", "{{.HostConfig.NetworkMode}}", started["container"]).strip() == "none"


# ---------------------------------------------------------------- exec, logs, stop


@docker_test
def test_exec_gives_exit_code_stdin_env_and_streams_apart(tools) -> None:
    box = tools("docker/run", image=IMAGE, command=["sleep", "600"], detach=True)["container"]
    out = tools("docker/exec", container=box, command="cat; echo v=$V; echo oops >&2; exit 4", stdin="piped\n", env={"V": "42"})
    assert out["exit_code"] == 4
    assert out["stdout"] == "piped\nv=42\n"
    assert out["stderr"] == "oops\n"


@docker_test
def test_logs_keep_stdout_and_stderr_apart(tools) -> None:
    box = tools("docker/run", image=IMAGE, command="echo to-out; echo to-err >&2; sleep 600", detach=True)["container"]
    for _ in range(100):
        logs = tools("docker/logs", container=box)
        if logs["stdout"] and logs["stderr"]:
            break
        time.sleep(0.05)
    assert (logs["stdout"], logs["stderr"]) == ("to-out\n", "to-err\n")


@docker_test
def test_stop_removes_the_container(tools, ctx: ToolContext) -> None:
    box = tools("docker/run", image=IMAGE, command=["sleep", "600"], detach=True)["container"]
    assert len(containers_of(ctx.run_id)) == 1
    assert tools("docker/stop", container=box, timeout=0)["stopped"] is True
    assert containers_of(ctx.run_id) == []


@docker_test
def test_other_runs_containers_are_out_of_reach(tools, engine: str, tmp_path: Path) -> None:
    other = ToolContext(agent_id="x", workspace=tmp_path, run_id=f"other-{os.getpid()}")
    reg = default_registry()
    box = anyio.run(reg.invoke, "docker/run", {"image": IMAGE, "command": ["sleep", "600"], "detach": True}, other)["container"]
    try:
        for name, args in (("docker/exec", {"container": box, "command": ["true"]}), ("docker/logs", {"container": box}),
                           ("docker/stop", {"container": box})):
            with pytest.raises(ToolError, match="not started by this run"):
                tools(name, **args)
        assert len(containers_of(other.run_id)) == 1
    finally:
        anyio.run(cleanup, other.run_id)


# ---------------------------------------------------------------- compose

COMPOSE = """\
version: "2.4"
services:
  web:
    image: agentctl-test/busybox
    command: ["sh", "-c", "echo web-up; sleep 600"]
    init: true
  worker:
    image: agentctl-test/busybox
    command: ["sh", "-c", "echo worker-up; sleep 600"]
    init: true
"""


@docker_test
def test_compose_up_then_down_a_two_service_file(tools, ctx: ToolContext) -> None:
    (ctx.workspace / "stack.yml").write_text(COMPOSE)
    up = tools("docker/compose-up", file="stack.yml", project="stack")
    assert up["services"] == ["web", "worker"]
    assert len(up["containers"]) == 2
    assert up["project"].startswith(f"agentctl-{ctx.run_id}-")
    running = containers_of(ctx.run_id)
    assert len(running) == 2
    states = sh("inspect", "--format", "{{.State.Running}}", *running).split()
    assert states == ["true", "true"]
    assert sh("network", "ls", "-q", "--filter", f"label=com.docker.compose.project={up['project']}").split()
    down = tools("docker/compose-down", project="stack")
    assert down["removed"] == 2
    assert containers_of(ctx.run_id) == []
    assert sh("network", "ls", "-q", "--filter", f"label=com.docker.compose.project={up['project']}").split() == []


@docker_test
def test_compose_file_must_be_in_the_workspace(tools) -> None:
    with pytest.raises(ToolError, match="outside the workspace"):
        tools("docker/compose-up", file="../../etc/passwd")


# ---------------------------------------------------------------- cleanup


@docker_test
def test_cleanup_of_one_agent_leaves_the_others(tools, ctx: ToolContext, tmp_path: Path) -> None:
    tools("docker/run", image=IMAGE, command=["sleep", "600"], detach=True)
    other = ToolContext(agent_id="other", workspace=tmp_path, run_id=ctx.run_id)
    anyio.run(default_registry().invoke, "docker/run", {"image": IMAGE, "command": ["sleep", "600"], "detach": True}, other)
    assert len(containers_of(ctx.run_id)) == 2
    stats = anyio.run(cleanup, ctx.run_id, "worker")
    assert stats.containers == 1
    left = sh("ps", "-aq", "--filter", f"label=agentctl.run={ctx.run_id}", "--filter", "label=agentctl.agent=other").split()
    assert containers_of(ctx.run_id) == left and len(left) == 1


@docker_test
@pytest.mark.anyio
async def test_an_agents_containers_go_when_it_ends(engine: str, recorder, tmp_path: Path) -> None:
    reg = default_registry()
    run_id = f"rt-{os.getpid()}"

    def step(ctx: StepContext) -> list:
        if ctx.step_no == 1:
            return [act.call_tool("docker/run", {"image": IMAGE, "command": ["sleep", "600"], "detach": True})]
        return [act.done("ok", ctx.results[0].value)]

    async with open_runtime(recorder, run_id=run_id, tools=reg, plane=LocalWorkPlane(recorder, tools=reg),
                            workspace=tmp_path) as rt:
        rt.spawn(AgentSpec("boxer", step))
        await rt.wait("boxer")
        # The removal runs as a runtime task after the agent ended.
        for _ in range(200):
            if not containers_of(run_id):
                break
            await anyio.sleep(0.05)
        assert containers_of(run_id) == []
    started = [e for e in recorder.of_type("tool/result") if e["tool"] == "docker/run"]
    assert started and started[0]["ok"] is True


# ---------------------------------------------------------------- a killed run and gc

KILLED_PLAN = """\
name: killed
settings: {docker: true}
defaults:
  tools: [docker/run]
tasks:
  - id: boxed
    agent: script
    steps:
      - call: {tool: docker/run, args: {image: agentctl-test/busybox, command: [sleep, "600"], detach: true}}
      - sleep: 1
      - done: resumed
"""


@docker_test
@pytest.mark.parametrize("after", ["gc", "resume"])
def test_a_killed_run_leaves_nothing_after_gc_or_resume(engine: str, tmp_path: Path, after: str) -> None:
    plan = tmp_path / "killed.yaml"
    plan.write_text(KILLED_PLAN)
    run_dir = tmp_path / "run"
    killed_at_first_result(run_dir, str(plan), "--no-ui", "--no-watch-plan", cwd=tmp_path)  # the run then sleeps 1 s
    run_id = run_id_of(run_dir)
    assert len(containers_of(run_id)) == 1, "the killed run should have left its container"
    if after == "gc":
        gc = subprocess.run([AGENTCTL, "gc", "--run", str(run_dir)], capture_output=True, text=True, timeout=60)
        assert gc.returncode == 0, gc.stderr
        assert "removed 1 containers" in gc.stdout
    else:
        resumed = subprocess.run([AGENTCTL, "run", str(plan), "--no-ui", "--no-watch-plan", "--resume", str(run_dir)],
                                 cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert resumed.returncode == 0, resumed.stderr
    assert containers_of(run_id) == []


@docker_test
def test_the_example_plan_runs_and_leaves_no_container(engine: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.run([AGENTCTL, "run", str(ROOT / "plans" / "containers.yaml"), "--no-ui", "--no-watch-plan",
                           "--run-dir", str(run_dir)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "container.txt").read_text() == "hello from boxed in a container\n"
    assert sh("ps", "-aq", "--filter", "label=agentctl.run").split() == []


# ---------------------------------------------------------------- no engine needed


def test_validate_refuses_a_docker_plan_without_an_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    for cmd in (["validate"], ["run", "--no-ui", "--no-watch-plan", "--run-dir", str(tmp_path / "run")]):
        proc = invoke(*cmd, str(ROOT / "plans" / "containers.yaml"), cwd=tmp_path)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "docker:" in proc.stderr
        if shutil.which("docker"):
            assert f"no engine reachable at unix://{tmp_path}/no-engine.sock" in " ".join(proc.stderr.split())
    assert not (tmp_path / "run" / "events.jsonl").exists()


def test_only_plans_naming_docker_tools_need_an_engine(tmp_path: Path) -> None:
    assert uses_docker(load_plan(ROOT / "plans" / "containers.yaml"))
    hello = load_plan(ROOT / "plans" / "hello.yaml")
    assert not uses_docker(hello)
    assert check_docker(hello) is None
    nested = tmp_path / "nested.yaml"
    nested.write_text("""\
name: nested
settings: {docker: true}
tasks:
  - id: parent
    agent: script
    steps:
      - spawn:
          id: child
          agent: script
          steps:
            - call: {tool: docker/logs, args: {container: x}}
""")
    assert uses_docker(load_plan(nested))


@pytest.mark.anyio
async def test_runtime_calls_agent_end_hooks_and_runs_their_coroutines(recorder) -> None:
    seen: list[str] = []
    ran: list[str] = []

    async def later(agent_id: str) -> None:
        ran.append(agent_id)

    def hook(agent_id: str) -> Any:
        seen.append(agent_id)
        return later(agent_id)

    async with open_runtime(recorder) as rt:
        rt.on_agent_end(hook)
        rt.spawn(AgentSpec("a", lambda ctx: [act.done("ok", 1)]))
        await rt.wait("a")
        for _ in range(50):
            await anyio.sleep(0)
        rt.spawn(AgentSpec("b", lambda ctx: []))
    assert seen == ["a", "b"]
    # "b" ended in the shutdown: its coroutine is closed, not run.
    assert ran == ["a"]
