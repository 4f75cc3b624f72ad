"""Container tools: ``docker/run``, ``docker/exec``, ``docker/logs``, ``docker/stop``,
``docker/compose-up`` and ``docker/compose-down``.

Registered by :func:`~agentctl.services.tools.builtins.default_registry`; run by the work
plane like any tool. Engine plumbing (the CLI, labels, removal) is in
:mod:`~agentctl.services.tools.docker_engine`.

Confinement: a container gets ``--network none`` unless asked for network, sees the run's
workspace at ``/workspace`` (unless ``mount_workspace`` is false), and is labelled with
the run and agent ids. ``exec``/``logs``/``stop`` only act on containers of the calling
run. What an agent started is removed when the agent ends (through the runtime's
``on_agent_end`` hook, registered on first use) and at run end (:func:`release_run`,
called by the CLI session); ``agentctl gc`` removes what a killed run left.

The tools are declared ``remote``: with a cluster executor they run on its nodes, and the
bookkeeping here is then the cluster's (:mod:`agentctl.services.ray_containers`): which
node holds what, follow-up calls pinned there, removal on each node.
"""

from __future__ import annotations

import secrets
import tempfile
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import yaml

from ...errors import ToolError
from .docker_engine import (
    DOCKER_FAILED,
    LABEL_AGENT,
    LABEL_CALL,
    LABEL_RUN,
    DockerResult,
    GcStatistics,
    check_docker,
    docker,
    project_prefix,
    remove_labelled,
    slug,
    uses_docker,
)
from .protect import protected_mounts
from .registry import ToolContext, ToolRegistry
from .schema import derive_schema
from .shell import OUTPUT_CAP

__all__ = [
    "DOCKER_TOOLS",
    "DockerStatistics",
    "check_docker",
    "cleanup",
    "compose_project",
    "register_docker_tools",
    "release_run",
    "remove_call",
    "statistics",
    "uses_docker",
    "workspace_mounts",
]

DOCKER_TOOLS = ("docker/run", "docker/exec", "docker/logs", "docker/stop", "docker/compose-up", "docker/compose-down")
_CLEANUP_TIMEOUT = 60.0

# What this process started, by (run_id, agent_id): container names and compose projects.
_containers: dict[tuple[str, str], set[str]] = {}
_projects: dict[tuple[str, str], set[str]] = {}
_runs: set[str] = set()
_hooked: "weakref.WeakSet[Any]" = weakref.WeakSet()
_compose_cmd: tuple[str, ...] | None = None
_counts = {"started": 0, "removed": 0, "timeouts": 0}


@dataclass(frozen=True, slots=True)
class DockerStatistics:
    """Counters of this process's container tools."""

    started: int
    removed: int
    timeouts: int
    tracked: int


def statistics() -> DockerStatistics:
    """How many containers were started, removed and timed out, and how many are tracked."""
    tracked = sum(len(v) for v in _containers.values())
    return DockerStatistics(_counts["started"], _counts["removed"], _counts["timeouts"], tracked)


# ---------------------------------------------------------------- bookkeeping


def _track(ctx: ToolContext, *, container: str | None = None, project: str | None = None) -> None:
    key = (ctx.run_id, ctx.agent_id)
    if container is not None:
        _containers.setdefault(key, set()).add(container)
        _counts["started"] += 1
    if project is not None:
        _projects.setdefault(key, set()).add(project)
    _runs.add(ctx.run_id)
    agents = ctx.agents
    if agents is not None and agents not in _hooked:
        _hooked.add(agents)
        agents.on_agent_end(_agent_ended_hook(ctx.run_id))


def _agent_ended_hook(run_id: str) -> Any:
    def on_end(agent_id: str) -> Any:
        # Taken now, not in the task: a restarted agent with the same id starts afresh.
        names = _containers.pop((run_id, agent_id), set())
        projects = _projects.pop((run_id, agent_id), set())
        if not names and not projects:
            return None
        return _remove_quietly(sorted(names), sorted(projects))

    return on_end


async def _remove_quietly(names: list[str], projects: list[str]) -> None:
    """Remove an ended agent's containers; errors are left for run-end cleanup and gc."""
    with anyio.move_on_after(_CLEANUP_TIMEOUT):
        try:
            if names:
                await docker(["rm", "-f", "-v", *names], check=False)
                _counts["removed"] += len(names)
            for project in projects:
                await _remove_project(project)
        except (ToolError, OSError):
            pass


async def cleanup(run_id: str, agent_id: str | None = None) -> GcStatistics:
    """Remove every container (and compose network/volume) of ``run_id``, or of one agent.

    Raises:
        ToolError: the engine cannot be reached.
    """
    if agent_id is None:
        for key in [k for k in _containers if k[0] == run_id]:
            _containers.pop(key, None)
        for key in [k for k in _projects if k[0] == run_id]:
            _projects.pop(key, None)
        _runs.discard(run_id)
    else:
        _containers.pop((run_id, agent_id), None)
        _projects.pop((run_id, agent_id), None)
    stats = await remove_labelled(run_id, agent_id)
    _counts["removed"] += stats.containers
    return stats


async def remove_call(run_id: str, call_id: str) -> int:
    """Force-remove the containers one call of ``run_id`` started (labelled with its id); how many.

    Raises:
        ToolError: the engine cannot be reached.
    """
    res = await docker(["ps", "-aq", "--filter", f"label={LABEL_RUN}={run_id}", "--filter", f"label={LABEL_CALL}={call_id}"])
    ids = res.stdout.split()
    if ids:
        await docker(["rm", "-f", "-v", *ids], check=False)
        _counts["removed"] += len(ids)
    return len(ids)


async def release_run(run_id: str, *, force: bool = False) -> None:
    """Run-end cleanup for the session: remove what ``run_id`` started in this process
    (``force``: whatever the engine has of it, e.g. on resume after a kill). Shielded,
    bounded, and quiet: a missing engine must not turn a finished run into a failed one."""
    if not force and run_id not in _runs:
        return
    with anyio.CancelScope(shield=True), anyio.move_on_after(_CLEANUP_TIMEOUT):
        try:
            await cleanup(run_id)
        except (ToolError, OSError):
            pass


# ---------------------------------------------------------------- helpers


def _labels(ctx: ToolContext) -> dict[str, str]:
    labels = {LABEL_RUN: ctx.run_id, LABEL_AGENT: ctx.agent_id}
    if ctx.call_id is not None:
        labels[LABEL_CALL] = ctx.call_id
    return labels


def compose_project(run_id: str, agent_id: str, project: str | None) -> str:
    """The compose project name of ``docker/compose-up``/``-down``'s ``project`` argument (a run's
    projects are all named ``agentctl-<run>-...``; ``-down`` also takes that full name)."""
    if project and project.startswith(project_prefix(run_id)):
        return project
    return project_prefix(run_id) + slug(project or agent_id)


def _cap(text: str) -> str:
    if len(text) <= OUTPUT_CAP:
        return text
    return text[:OUTPUT_CAP] + f"\n[output truncated: {len(text) - OUTPUT_CAP} more characters not shown]"


def _argv(command: list[str] | str | None) -> list[str]:
    if command is None:
        return []
    # A string is a shell command line, as in compose's ``command:`` string form.
    return ["sh", "-c", command] if isinstance(command, str) else [str(c) for c in command]


def _env_args(env: Mapping[str, Any] | None) -> tuple[list[str], dict[str, str]]:
    """``-e NAME`` flags and the values for the CLI's own environment, so that secrets
    never appear on a command line (``ps`` shows those)."""
    env = dict(env or {})
    for name in env:
        if not name or "=" in name:
            raise ToolError(f"docker: bad environment variable name {name!r}")
    return [a for name in env for a in ("-e", name)], {k: str(v) for k, v in env.items()}


def _result(res: DockerResult | None, container: str, timed_out: bool) -> dict[str, Any]:
    return {
        "exit_code": None if res is None else res.returncode,
        "stdout": "" if res is None else _cap(res.stdout),
        "stderr": "" if res is None else _cap(res.stderr),
        "timed_out": timed_out,
        "container": container,
    }


def _engine_failed(res: DockerResult) -> bool:
    # 125 with the CLI's own ``docker:`` prefix is the engine refusing (no such image,
    # bad flag), not the container exiting with 125.
    return res.returncode == DOCKER_FAILED and any(line.startswith("docker:") for line in res.stderr.splitlines())


async def _owned(ctx: ToolContext, container: str) -> str:
    """The container's id, after checking it belongs to the calling run."""
    res = await docker(["inspect", "--type", "container", "--format",
                        "{{.Id}}\t{{index .Config.Labels \"" + LABEL_RUN + "\"}}", container], check=False)
    ident, _, run = res.stdout.strip().partition("\t")
    if res.returncode != 0 or not ident:
        raise ToolError(f"docker: no such container {container!r}")
    if run != ctx.run_id:
        raise ToolError(f"docker: container {container!r} was not started by this run")
    return ident


def workspace_mounts(ctx: ToolContext) -> list[str]:
    """``-v`` flags: the workspace at /workspace, and over it, read-only, what steers the run
    and every ``.git`` (:func:`~agentctl.services.tools.protect.protected_mounts`)."""
    root = Path(ctx.workspace).resolve()
    args = ["-v", f"{root}:/workspace"]
    for path in protected_mounts(root, ctx.protected):
        args += ["-v", f"{path}:/workspace/{path.relative_to(root).as_posix()}:ro"]
    return args


def _workspace_file(ctx: ToolContext, file: str) -> Path:
    root = Path(ctx.workspace).resolve()
    path = (root / file).resolve()
    if not path.is_relative_to(root):
        raise ToolError(f"docker/compose-up: {file!r} is outside the workspace")
    if not path.is_file():
        raise ToolError(f"docker/compose-up: no such file in the workspace: {file!r}")
    return path


async def _compose() -> tuple[str, ...]:
    """``docker compose`` (v2 plugin) when present, else ``docker-compose`` (v1)."""
    global _compose_cmd
    if _compose_cmd is None:
        try:
            v2 = await docker(["compose", "version"], check=False)
        except ToolError:
            v2 = None
        _compose_cmd = ("docker", "compose") if v2 is not None and v2.returncode == 0 else ("docker-compose",)
    return _compose_cmd


async def _remove_project(project: str) -> None:
    res = await docker(["ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"], check=False)
    ids = res.stdout.split()
    if ids:
        await docker(["rm", "-f", "-v", *ids], check=False)
        _counts["removed"] += len(ids)
    nets = await docker(["network", "ls", "-q", "--filter", f"label=com.docker.compose.project={project}"], check=False)
    for net in nets.stdout.split():
        await docker(["network", "rm", net], check=False)


# ---------------------------------------------------------------- the tools


async def docker_run(
    ctx: ToolContext,
    image: str,
    command: list[str] | str | None = None,
    env: dict[str, str] | None = None,
    workdir: str | None = None,
    mount_workspace: bool = True,
    network: bool = False,
    cpus: float | None = None,
    memory: str | int | None = None,
    timeout: float = 60.0,
    detach: bool = False,
    stdin: str | None = None,
) -> dict[str, Any]:
    """Run a command in a new container (no network unless asked; the workspace at /workspace).

    Returns exit_code, stdout, stderr, timed_out and container. A string command runs
    with ``sh -c``. With ``detach`` the container keeps running (use docker/exec,
    docker/logs, docker/stop); otherwise it is removed when it exits or times out.
    """
    if timeout <= 0:
        raise ToolError("docker/run: timeout must be positive")
    name = f"agentctl-{slug(ctx.run_id)}-{slug(ctx.agent_id)}-{secrets.token_hex(3)}"
    env_flags, env_values = _env_args(env)
    args = ["run", "--name", name, *(a for k, v in _labels(ctx).items() for a in ("--label", f"{k}={v}"))]
    args += ["-d"] if detach else (["-i"] if stdin is not None else [])
    if not network:
        args += ["--network", "none"]
    if mount_workspace:
        # Off the event loop: the workspace is walked for .git and run directories.
        args += await anyio.to_thread.run_sync(workspace_mounts, ctx)
    if workdir or mount_workspace:
        args += ["-w", workdir or "/workspace"]
    if cpus is not None:
        args += ["--cpus", str(cpus)]
    if memory is not None:
        args += ["--memory", str(memory)]
    args += [*env_flags, "--", image, *_argv(command)]
    _track(ctx, container=name)
    if detach:
        started = await docker(args, env=env_values, check=False)
        if started.returncode != 0:
            raise ToolError(f"docker/run: {started.stderr.strip() or started.stdout.strip()}")
        return {"exit_code": None, "stdout": "", "stderr": "", "timed_out": False, "container": name}
    res: DockerResult | None = None
    try:
        with anyio.move_on_after(timeout) as scope:
            res = await docker(args, env=env_values, stdin=stdin, check=False)
    finally:
        # Killing the CLI leaves the container running: remove it (kills it) either way.
        with anyio.CancelScope(shield=True):
            await docker(["rm", "-f", "-v", name], check=False)
            _containers.get((ctx.run_id, ctx.agent_id), set()).discard(name)
    if scope.cancelled_caught:
        _counts["timeouts"] += 1
        return _result(None, name, True)
    assert res is not None
    if _engine_failed(res):
        raise ToolError(f"docker/run: {res.stderr.strip()}")
    return _result(res, name, False)


async def docker_exec(
    ctx: ToolContext,
    container: str,
    command: list[str] | str,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Run a command in a running container of this run; returns exit_code, stdout, stderr, timed_out."""
    ident = await _owned(ctx, container)
    env_flags, env_values = _env_args(env)
    args = ["exec", *(["-i"] if stdin is not None else []), *env_flags, ident, *_argv(command)]
    res: DockerResult | None = None
    with anyio.move_on_after(timeout) as scope:
        res = await docker(args, env=env_values, stdin=stdin, check=False)
    if scope.cancelled_caught:
        _counts["timeouts"] += 1
        return _result(None, container, True)
    assert res is not None
    if _engine_failed(res) or (res.returncode in (126, 127) and "OCI runtime exec failed" in res.stderr):
        raise ToolError(f"docker/exec: {res.stderr.strip()}")
    return _result(res, container, False)


async def docker_logs(ctx: ToolContext, container: str) -> dict[str, Any]:
    """The output of a container of this run so far: stdout and stderr apart."""
    ident = await _owned(ctx, container)
    res = await docker(["logs", ident])
    return {"container": container, "stdout": _cap(res.stdout), "stderr": _cap(res.stderr)}


async def docker_stop(ctx: ToolContext, container: str, timeout: float = 10.0) -> dict[str, Any]:
    """Stop a container of this run (SIGTERM, then SIGKILL after ``timeout`` seconds) and remove it."""
    ident = await _owned(ctx, container)
    await docker(["stop", "-t", str(max(0, int(timeout))), ident], check=False)
    await docker(["rm", "-f", "-v", ident], check=False)
    for names in _containers.values():
        names.discard(container)
    _counts["removed"] += 1
    return {"container": container, "stopped": True}


async def compose_up(ctx: ToolContext, file: str, project: str | None = None, timeout: float = 300.0) -> dict[str, Any]:
    """Start a compose file from the workspace (detached); returns the project, services and containers."""
    path = _workspace_file(ctx, file)
    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ToolError(f"docker/compose-up: cannot read {file!r}: {exc}") from None
    services = (spec or {}).get("services") if isinstance(spec, Mapping) else None
    if not isinstance(services, Mapping) or not services:
        raise ToolError(f"docker/compose-up: {file!r} has no services")
    name = project_prefix(ctx.run_id) + slug(project or ctx.agent_id)
    override: dict[str, Any] = {"services": {svc: {"labels": _labels(ctx)} for svc in services}}
    if "version" in spec:
        override["version"] = spec["version"]
    _track(ctx, project=name)
    with tempfile.TemporaryDirectory(prefix="agentctl-compose-") as tmp:
        extra = Path(tmp) / "agentctl.override.yml"
        extra.write_text(yaml.safe_dump(override))
        with anyio.fail_after(timeout):
            res = await docker(["-p", name, "-f", str(path), "-f", str(extra), "up", "-d"],
                               program=await _compose(), check=False)
    if res.returncode != 0:
        raise ToolError(f"docker/compose-up: {res.stderr.strip()[-2000:] or res.stdout.strip()}")
    listed = await docker(["ps", "-a", "--filter", f"label=com.docker.compose.project={name}", "--format", "{{.Names}}"])
    return {"project": name, "services": sorted(services), "containers": sorted(listed.stdout.split()),
            "stdout": _cap(res.stdout), "stderr": _cap(res.stderr)}


async def compose_down(ctx: ToolContext, project: str | None = None) -> dict[str, Any]:
    """Stop and remove a compose project this run started (its containers and network)."""
    name = compose_project(ctx.run_id, ctx.agent_id, project)
    before = await docker(["ps", "-aq", "--filter", f"label=com.docker.compose.project={name}"])
    await _remove_project(name)
    for projects in _projects.values():
        projects.discard(name)
    return {"project": name, "removed": len(before.stdout.split())}


def _with_command(fn: Any, required: bool) -> dict[str, Any]:
    # The derived schema cannot say "list of strings or a string"; spell it out.
    schema = derive_schema(fn)
    schema["properties"]["command"] = {
        "type": ["array", "string"] if required else ["array", "string", "null"],
        "items": {"type": "string"},
        "description": "argv list, or a string run with sh -c",
        **({} if required else {"default": None}),
    }
    return schema


def register_docker_tools(registry: ToolRegistry) -> None:
    """Add the ``docker/*`` tools to ``registry`` (``remote``: a cluster executor runs them on its nodes)."""
    registry.tool("docker/run", schema=_with_command(docker_run, False), remote=True)(docker_run)
    registry.tool("docker/exec", schema=_with_command(docker_exec, True), remote=True)(docker_exec)
    registry.tool("docker/logs", idempotent=True, remote=True)(docker_logs)
    registry.tool("docker/stop", idempotent=True, remote=True)(docker_stop)
    registry.tool("docker/compose-up", remote=True)(compose_up)
    registry.tool("docker/compose-down", idempotent=True, remote=True)(compose_down)
