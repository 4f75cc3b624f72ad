"""Talking to the Docker engine: the ``docker`` CLI, labels, and removing what a run left.

Used by the container tools (:mod:`agentctl.services.tools.docker`), by ``agentctl gc``
(:mod:`agentctl.cli.gc`) and by the CLI's plan check before a run. Everything goes
through the ``docker`` CLI (``anyio.run_process``), so there is no extra dependency; the
engine address is ``DOCKER_HOST`` or the CLI's default socket.

Every container a run starts carries the labels ``agentctl.run=<run_id>`` and
``agentctl.agent=<agent_id>`` (and ``agentctl.call=<call_id>`` when a cluster ran the call); compose projects are named ``agentctl-<run_id>-...`` so
their networks and volumes can be found by name prefix as well.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from ...errors import ToolError

__all__ = [
    "LABEL_AGENT",
    "LABEL_CALL",
    "LABEL_RUN",
    "PROJECT_PREFIX",
    "DockerResult",
    "GcStatistics",
    "docker",
    "engine_error",
    "engine_host",
    "project_prefix",
    "remove_labelled",
    "check_docker",
    "slug",
    "uses_docker",
]

LABEL_RUN = "agentctl.run"
LABEL_AGENT = "agentctl.agent"
#: The call that started a container, where a cluster ran it (see ``ToolContext.call_id``).
LABEL_CALL = "agentctl.call"
PROJECT_PREFIX = "agentctl-"
_COMPOSE_PROJECT = "com.docker.compose.project"
_DEFAULT_HOST = "unix:///var/run/docker.sock"
#: Exit code of ``docker run``/``exec`` when the engine, not the container, failed.
DOCKER_FAILED = 125


@dataclass(frozen=True, slots=True)
class DockerResult:
    """One finished ``docker`` CLI call."""

    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True, slots=True)
class GcStatistics:
    """What a cleanup removed."""

    containers: int = 0
    networks: int = 0
    volumes: int = 0


def engine_host() -> str:
    """The engine address the CLI will use (``DOCKER_HOST``, else the default socket)."""
    return os.environ.get("DOCKER_HOST") or _DEFAULT_HOST


def slug(text: str) -> str:
    """``text`` made safe for container and compose project names (lowercase, ``[a-z0-9_-]``)."""
    return re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-") or "x"


def project_prefix(run_id: str | None) -> str:
    """The compose project name prefix of one run (``None``: of every run)."""
    return PROJECT_PREFIX if run_id is None else f"{PROJECT_PREFIX}{slug(run_id)}-"


def engine_error(timeout: float = 5.0) -> str | None:
    """Why no engine can be used, or ``None`` when one answers. Blocking: for the CLI.

    The message is the one ``agentctl validate``/``run`` print before exiting with 2.
    """
    if shutil.which("docker") is None:
        return "docker: the docker CLI is not installed (install docker.io or docker-ce-cli)"
    hint = f"docker: no engine reachable at {engine_host()} (start dockerd or set DOCKER_HOST)"
    try:
        proc = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return hint
    return None if proc.returncode == 0 and proc.stdout.strip() else hint


async def docker(
    args: Sequence[str],
    *,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    program: Sequence[str] = ("docker",),
) -> DockerResult:
    """Run ``docker ARGS`` and wait for it.

    Args:
        args: the CLI arguments.
        stdin: text fed to the command's stdin.
        env: extra environment for the CLI itself (``docker run -e NAME`` reads values
            from here, which keeps them off the command line).
        check: raise on a non-zero exit.
        program: the executable and leading arguments (``("docker-compose",)`` for v1 compose).

    Raises:
        ToolError: the CLI is missing, or it failed and ``check`` is set.
    """
    full_env = {**os.environ, **env} if env else None
    try:
        proc = await anyio.run_process(
            [*program, *args],
            input=stdin.encode() if stdin is not None else None,
            env=full_env,
            check=False,
        )
    except FileNotFoundError:
        raise ToolError(f"docker: {program[0]} is not installed") from None
    result = DockerResult(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))
    if check and result.returncode != 0:
        raise ToolError(_failure(args, result))
    return result


def _failure(args: Sequence[str], result: DockerResult) -> str:
    text = result.stderr.strip() or result.stdout.strip()
    if "Cannot connect to the Docker daemon" in text or "connect: no such file" in text:
        return f"docker: no engine reachable at {engine_host()} (start dockerd or set DOCKER_HOST)"
    verb = args[0] if args else "docker"
    return f"docker {verb} failed ({result.returncode}): {text[-2000:]}"


async def _ids(args: Sequence[str]) -> list[str]:
    out = await docker(args)
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


async def remove_labelled(run_id: str | None, agent_id: str | None = None) -> GcStatistics:
    """Force-remove the containers of one run (or one of its agents; ``run_id=None``: of
    every run), then the compose networks (and, for a whole run, volumes) it left.

    Raises:
        ToolError: the engine cannot be reached.
    """
    filters = ["--filter", f"label={LABEL_RUN}" if run_id is None else f"label={LABEL_RUN}={run_id}"]
    if agent_id is not None:
        filters += ["--filter", f"label={LABEL_AGENT}={agent_id}"]
    containers = await _ids(["ps", "-aq", *filters])
    # Compose v1 cannot add our labels to containers it recreates on its own, so also
    # match its project label by our name prefix.
    if agent_id is None:
        containers += await _by_project(["ps", "-a"], run_id)
    containers = sorted(set(containers))
    if containers:
        await docker(["rm", "-f", "-v", *containers], check=False)
    networks = await _by_project(["network", "ls"], run_id)
    removed_networks = 0
    for net in networks:
        # A network still used by another agent's project refuses removal; that is fine.
        if (await docker(["network", "rm", net], check=False)).returncode == 0:
            removed_networks += 1
    volumes: list[str] = []
    if agent_id is None:
        volumes = await _by_project(["volume", "ls"], run_id)
        if volumes:
            await docker(["volume", "rm", "-f", *volumes], check=False)
    return GcStatistics(len(containers), removed_networks, len(volumes))


async def _by_project(ls: Sequence[str], run_id: str | None) -> list[str]:
    """Names/ids from ``docker <ls>`` whose compose project starts with the run's prefix."""
    fmt = "{{.ID}}\t{{.Label \"" + _COMPOSE_PROJECT + "\"}}"
    if ls[0] == "volume":
        fmt = "{{.Name}}\t{{.Label \"" + _COMPOSE_PROJECT + "\"}}"
    lines = await _ids([*ls, "--filter", f"label={_COMPOSE_PROJECT}", "--format", fmt])
    prefix = project_prefix(run_id)
    out = []
    for line in lines:
        ident, _, project = line.partition("\t")
        if project.startswith(prefix):
            out.append(ident)
    return out


def uses_docker(plan: Any) -> bool:
    """Whether a plan names a docker tool: in a tool list (name or glob like ``docker/*``)
    or in a script's ``call`` step (spawned children included). ``all`` does not count:
    a plan that never mentions containers must not need an engine."""

    def names_docker(tools: Any) -> bool:
        return any(str(t).startswith("docker/") or str(t) in ("docker*", "docker/*") for t in tools or ())

    def task_uses(task: Any) -> bool:
        if names_docker(task.tools):
            return True
        for step in getattr(task, "steps", ()) or ():
            if step.op == "call" and str(step.arg.get("tool", "")).startswith("docker/"):
                return True
            if step.op == "spawn" and task_uses(step.arg):
                return True
        return False

    return names_docker(plan.defaults.tools) or any(task_uses(t) for t in plan.tasks)


def check_docker(plan: Any) -> str | None:
    """For ``agentctl validate``/``run``: why a plan that uses docker tools cannot run here
    (no CLI, no engine), or ``None``. Blocking (asks the engine, a few seconds at most).
    A plan whose tools run on a cluster (``settings.executor.kind: ray``) needs no engine
    here: its container calls go to the nodes that declare one."""
    if plan.settings.executor.kind != "local":
        return None
    return engine_error() if uses_docker(plan) else None
