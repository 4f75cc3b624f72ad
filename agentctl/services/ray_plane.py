"""The work plane on a Ray cluster: tools that can run anywhere run there as Ray tasks.

Built by the CLI session (:mod:`agentctl.cli.session`) when the plan's
``settings.executor.kind`` is ``ray`` (or ``agentctl run --ray ADDRESS``); only then is
Ray imported. :class:`RayWorkPlane` is a :class:`~agentctl.services.workers.LocalWorkPlane`
given a :class:`RayRunner`: events, write-ahead, validation, the pool's bound and every
timeout stay in this process exactly as for a local call; only the tools declared
``remote`` (``shell/run``, ``docker/*``, plugin tools registered with ``remote=True``) are
carried out on the cluster, each as one Ray task with the resources the plan asks for it.
File tools and the ``agent/*`` tools, tied to this process's workspace, locks and tree, run
here. Containers stay on the node that started them: :mod:`agentctl.services.ray_containers`
keeps where, pins the calls on them there and removes them there.

Faults are handled as a crash of this process would be (``docs/durability.md``): a call
whose worker or node is lost comes back ``interrupted``; Ray reruns it only for an
idempotent tool (``max_retries``, 0 for every other tool). A timed-out or shut-down call
is cancelled on the cluster with ``ray.cancel(force=True)``, and the worker's reaper
(:mod:`agentctl.services.reaper`) kills what the call had started. A cluster whose head
stops answering is lost: the runner tells the run (``on_lost``), which shuts down as on
SIGTERM, resumable on another cluster. A call asking for resources no node has fails at once.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

import anyio
import ray
import ray.cloudpickle
import ray.exceptions
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ..errors import UsageError
from ..events.emit import Emit
from ..executor import Executor, ToolResources
from . import reaper
from .llm.base import ChatRequest
from .ray_containers import DEFAULT_REQUEST, NodeContainers, creates, is_container_tool
from .tools.registry import Tool, ToolContext, ToolRegistry
from .workers import CallOutcome, Interrupted, LocalWorkPlane, Ran, WorkPlaneStatistics

__all__ = ["RayRunner", "RayWorkPlane", "connect"]

#: Reruns of an idempotent tool's call whose worker was lost, unless the plan says otherwise.
IDEMPOTENT_RETRIES = 3
# Seconds a cancelled call's task gets to end before what it started is removed.
_CANCEL_WAIT = 10.0

# Errors that mean the worker, its node or the call's result was lost: the call may or may
# not have taken effect. Anything else Ray raises is the call's own failure.
_LOST = (
    ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError,
    ray.exceptions.OwnerDiedError, ray.exceptions.LocalRayletDiedError, ray.exceptions.RaySystemError,
    ray.exceptions.TaskCancelledError, ray.exceptions.OutOfMemoryError,
)


def connect(address: str, where: str = "settings.executor") -> None:
    """Connect this process to the cluster at ``address`` (``local``: start a private one).

    Raises:
        UsageError: the cluster cannot be reached (one line starting with ``where``, for exit 2).
    """
    if ray.is_initialized():
        return
    _reachable(address, where)
    try:
        ray.init(address=None if address == "local" else address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR, namespace="agentctl")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UsageError(f"{where}: cannot connect to the Ray cluster at {address!r}: "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def _gcs_address(address: str) -> str:
    """``HOST:PORT`` of the connected cluster's GCS (of its Ray Client server for ``ray://``)."""
    if address.startswith("ray://"):
        return address.removeprefix("ray://")
    return str(ray.get_runtime_context().gcs_address)


def _reachable(address: str, where: str, timeout: float = 5.0) -> None:
    """Fail fast for a ``HOST:PORT`` nobody answers at: ``ray.init`` would retry for minutes."""
    if address in ("auto", "local"):
        return  # ray.init finds (or starts) the local cluster, or says at once that there is none
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        raise UsageError(f"{where}: cannot reach the Ray cluster at {address!r}: "
                         f"{getattr(exc, 'strerror', None) or exc}") from None


@dataclass(frozen=True, slots=True)
class _Call:
    """What a Ray task needs to carry out one call: nothing of this process but plain values."""

    fn: Any
    is_async: bool
    takes_ctx: bool
    arguments: dict[str, Any]
    agent_id: str
    run_id: str
    call_id: str
    workspace: str | None  # None: a scratch directory on the node
    shell_enabled: bool
    protected: tuple[str, ...]


# Resources every node reports that say nothing about what a call may ask for.
_BOOKKEEPING = ("memory", "object_store_memory")


class _Capacity:
    """What the cluster's live nodes have in total, to refuse at once a call no node can ever take.

    Ray queues a task whose resources no node has until one joins (an autoscaler's demand),
    which on a fixed cluster is forever: the call would only end at its timeout. The node
    list is read again whenever a request does not fit the last one read (a node may have
    joined since) and when that is older than :attr:`STALE` seconds (one may have left).
    """

    STALE = 10.0

    def __init__(self) -> None:
        self._nodes: dict[str, dict[str, float]] = {}  # by node id
        self._read_at = float("-inf")

    def _read(self) -> None:
        self._nodes = {n["NodeID"]: dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")}
        self._read_at = time.monotonic()

    def _fitting(self, need: Mapping[str, float]) -> list[str]:
        return [node for node, has in self._nodes.items() if all(has.get(k, 0.0) >= v for k, v in need.items())]

    async def live(self) -> dict[str, dict[str, float]]:
        """The live nodes' resources by node id, read now."""
        await anyio.to_thread.run_sync(self._read, abandon_on_cancel=True)
        return self._nodes

    async def fitting(self, options: Mapping[str, Any]) -> list[str]:
        """The live nodes (read now) that could run a call with ``options``."""
        await self.live()
        return self._fitting(_need(options))

    async def unmet(self, tool: str, options: Mapping[str, Any]) -> str | None:
        """Why no node of the cluster can run a call of ``tool`` with ``options`` (one line), or ``None``."""
        need = _need(options)
        if time.monotonic() - self._read_at < self.STALE and self._fitting(need):
            return None
        await self.live()
        if self._fitting(need):
            return None
        offered = " | ".join(sorted(_describe(node) for node in self._nodes.values())) or "nothing"
        return (f"{tool} asks the cluster for {_describe(need)} and no node has that "
                f"({len(self._nodes)} node{'s' * (len(self._nodes) != 1)}: {offered})")


def _need(options: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in {"CPU": options["num_cpus"], **options["resources"]}.items() if v}


def _describe(resources: Mapping[str, float]) -> str:
    """``CPU: 1, docker: 1``: a node's or a request's resources, without Ray's bookkeeping ones."""
    shown = sorted((k, v) for k, v in resources.items()
                   if k not in _BOOKKEEPING and not k.startswith(("node:", "accelerator_type:")))
    return ", ".join(f"{k}: {v:g}" for k, v in shown) or "nothing"


class _Heartbeat:
    """Whether the cluster's GCS (its head) still answers: a TCP connect, at most once per :attr:`EVERY` s.

    Ray's driver itself keeps retrying a GCS that is gone for a minute and then aborts the
    process; a run that checks first ends cleanly, and resumably, within seconds.
    """

    EVERY = 1.0
    TIMEOUT = 2.0

    def __init__(self, gcs: str) -> None:
        self.gcs = gcs
        self._at = float("-inf")
        self._answered = True

    def _probe(self) -> bool:
        host, _, port = self.gcs.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=self.TIMEOUT).close()
        except (OSError, ValueError):
            return False
        return True

    async def answers(self, *, now: bool = False) -> bool:
        """Whether the GCS answered its last probe (probed again if ``now`` or the last is over a second old)."""
        if now or time.monotonic() - self._at >= self.EVERY:
            self._at = time.monotonic()
            self._answered = await anyio.to_thread.run_sync(self._probe, abandon_on_cancel=True)
        return self._answered


class RayRunner:
    """Carries out the calls of ``remote`` tools as Ray tasks (a :class:`~agentctl.services.workers.ToolRunner`).

    Args:
        executor: the plan's ``settings.executor`` (resource requests, shared workspace).
        tools: the run's registry, to check the requests against it.
        on_lost: told, once per call that notices, that the cluster is gone (its GCS no longer
            answers), with one line naming it; it is to shut the run down, which cancels
            the calls in flight. Without it such a call comes back ``interrupted``.

    Raises:
        UsageError: a resource request for a tool that cannot run remotely, or retries
            asked for a tool that is not idempotent.
    """

    def __init__(self, executor: Executor, tools: ToolRegistry, on_lost: Callable[[str], None] | None = None) -> None:
        self.executor = executor
        self._tools = tools
        self.calls = self.lost = self.cancelled = 0
        self.gone: str | None = None
        self._on_lost = on_lost
        self._heartbeat = _Heartbeat(_gcs_address(executor.address))
        self.nodes: dict[str, int] = {}
        self.containers = NodeContainers()
        self._options: dict[str, dict[str, Any]] = {}
        self._capacity = _Capacity()
        self._check(tools)
        for tool in (tools.get(n) for n in tools.names()):
            if tool.remote and not tool.fn.__module__.startswith("agentctl."):
                # A plugin's module is not importable on the workers: its code travels with the call.
                module = sys.modules.get(tool.fn.__module__)
                if module is not None:
                    ray.cloudpickle.register_pickle_by_value(module)

    def _check(self, tools: ToolRegistry) -> None:
        remote = [n for n in tools.names() if tools.get(n).remote]
        for pattern, request in self.executor.tools.items():
            where = f"settings.executor.tools.{pattern}"
            named = fnmatch.filter(tools.names(), pattern)
            if not named:
                raise UsageError(f"{where}: no tool of the run is called {pattern!r} (remote tools: {', '.join(remote)})")
            local = [n for n in named if not tools.get(n).remote]
            if local and not any(ch in pattern for ch in "*?"):
                raise UsageError(f"{where}: {pattern} runs in this process (not declared remote); "
                                 f"tools that can run on the cluster: {', '.join(remote)}")
            for name in named:
                if request.max_retries and not tools.get(name).idempotent:
                    raise UsageError(f"{where}.max_retries: {name} is not idempotent; a rerun could apply it twice "
                                     "(expected 0, or declare the tool idempotent)")

    def takes(self, tool: Tool) -> bool:
        """Whether ``tool`` runs on the cluster (it is declared ``remote``)."""
        return tool.remote

    def options(self, tool: Tool) -> dict[str, Any]:
        """The Ray task options of ``tool``'s calls: its resources, and no rerun unless idempotent.

        The resources are the plan's request for the tool, else one CPU, or for a container
        tool one ``docker`` slot (:data:`~agentctl.services.ray_containers.DEFAULT_REQUEST`).
        """
        cached = self._options.get(tool.name)
        if cached is None:
            default = DEFAULT_REQUEST if is_container_tool(tool.name) else ToolResources()
            request = next((r for p, r in self.executor.tools.items() if fnmatch.fnmatchcase(tool.name, p)), default)
            retries = request.max_retries if request.max_retries is not None else (
                IDEMPOTENT_RETRIES if tool.idempotent else 0)
            cached = self._options[tool.name] = {
                "num_cpus": request.num_cpus, "resources": dict(request.resources), "max_retries": retries,
                "retry_exceptions": False, "name": tool.name,
            }
        return cached

    async def run(self, tool: Tool, arguments: Mapping[str, Any], ctx: ToolContext, call_id: str) -> Ran:
        """One call as a Ray task; cancelled on the cluster if this is cancelled (timeout, shutdown).

        A call asking for resources no node has fails at once with the tool's error, saying
        what it asked for and what the nodes offer (Ray would queue it until its timeout).
        A call made or in flight when the cluster is gone goes to :meth:`_lose`. A container
        tool's call on a container runs on the node that started it, or fails at once when
        that node has left; a cancelled call that starts containers has them removed.
        """
        if self.gone is not None or not await self._heartbeat.answers():
            await self._lose()
        options = self.options(tool)
        if (pin := self.containers.pinned(tool.name, arguments, ctx.run_id, ctx.agent_id)) is not None:
            name, node = pin
            if node not in await self._capacity.live():
                return Ran(False, error=f"{tool.name}: {name!r} is on node {node}, which has left the cluster")
            options = {**options, "scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=False)}
        if (unmet := await self._capacity.unmet(tool.name, options)) is not None:
            return Ran(False, error=unmet)
        call = _Call(tool.fn, tool.is_async, bool(tool.takes_ctx), dict(arguments), ctx.agent_id, ctx.run_id, call_id,
                     str(ctx.workspace) if self.executor.shared_workspace else None, ctx.shell_enabled,
                     tuple(str(p) for p in ctx.protected))
        self.calls += 1
        ref = _remote_call.options(**options).remote(call)
        future = asyncio.wrap_future(ref.future())
        try:
            out = await self._outcome(future)
        except _LOST as exc:
            if not await self._heartbeat.answers(now=True):  # the head itself went: not one worker
                await self._lose()
            self.lost += 1
            self.containers.record(tool.name, ctx.agent_id, None, None)
            raise Interrupted(f"call {call_id} ({tool.name}) lost its worker mid-call and may or may not have run: "
                              f"{type(exc).__name__}") from None
        except (ray.exceptions.RayTaskError, ray.exceptions.TaskUnschedulableError) as exc:
            # The task itself could not run: its code did not unpickle, its pinned node just left.
            return Ran(False, error=f"{tool.name}: could not run on the cluster: {str(exc).splitlines()[0]}")
        except BaseException:
            self.cancelled += 1
            future.cancel()
            ray.cancel(ref, force=True)
            if creates(tool.name):
                await self._remove_cancelled(ref, options, ctx.run_id, call_id)
            raise
        if out is None:  # outside the try: nothing is left on the cluster to cancel
            future.cancel()
            await self._lose()
        self.nodes[out["node"]] = self.nodes.get(out["node"], 0) + 1
        self.containers.record(tool.name, ctx.agent_id, out["node"], out.get("value"))
        if creates(tool.name) and ctx.agents is not None:
            self.containers.watch(ctx.agents, ctx.run_id)
        return Ran(out["ok"], out.get("value"), out.get("error"), out["node"])

    async def _remove_cancelled(self, ref: Any, options: Mapping[str, Any], run_id: str, call_id: str) -> None:
        """Remove what a cancelled call started, once its worker is gone, on every node it may have run on
        (killing the worker leaves a container running in the engine). Shielded and bounded."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CANCEL_WAIT * 2):
            await asyncio.wait({asyncio.wrap_future(ref.future())}, timeout=_CANCEL_WAIT)
            await self.containers.remove_call(run_id, call_id, await self._capacity.fitting(options))

    async def release_containers(self, run_id: str) -> None:
        """Remove ``run_id``'s containers on each node that ran some (:meth:`NodeContainers.release`).
        Does nothing once the cluster is gone; bounded and shielded."""
        if self.gone is not None or not self.containers.started:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CANCEL_WAIT * 2):
            if not await self._heartbeat.answers(now=True):
                return
            run = self.options(self._tools.get("docker/run")) if "docker/run" in self._tools else None
            candidates = await self._capacity.fitting(run) if run is not None else []
            await self.containers.release(run_id, candidates)

    async def _outcome(self, future: asyncio.Future[dict[str, Any]]) -> dict[str, Any] | None:
        """The task's result, or ``None`` if the cluster stops answering first."""
        while not (await asyncio.wait({future}, timeout=_Heartbeat.EVERY))[0]:
            if not await self._heartbeat.answers():
                return None
        return future.result()

    async def watch(self) -> None:
        """Probe the head once a second while no call does, for as long as the run lasts: a
        cluster lost between calls ends the run as well (Ray's driver would abort the process
        after a minute). Only for a runner given ``on_lost``; returns at once without one."""
        while self._on_lost is not None:
            await anyio.sleep(_Heartbeat.EVERY)
            if not await self._heartbeat.answers():
                await self._lose()

    async def _lose(self) -> NoReturn:
        """The cluster is gone: the run is told (and shuts down, cancelling this call), once."""
        if self.gone is None:
            self.gone = (f"lost the Ray cluster at {self.executor.address!r}: "
                         f"its head (GCS at {self._heartbeat.gcs}) does not answer")
        if self._on_lost is not None:
            self._on_lost(self.gone)
            await anyio.sleep_forever()  # the shutdown just asked for cancels this call like every other
        raise Interrupted(self.gone)


class RayWorkPlane:
    """The work plane with a Ray cluster behind it (a :class:`~agentctl.services.workers.WorkPlane`).

    Args:
        emit: the event sink.
        executor: the plan's ``settings.executor``.
        tools: the tool registry.
        on_lost: see :class:`RayRunner`.
        **local: :class:`~agentctl.services.workers.LocalWorkPlane`'s other keyword arguments.

    Call :func:`connect` first.
    """

    def __init__(self, emit: Emit, *, executor: Executor, tools: ToolRegistry,
                 on_lost: Callable[[str], None] | None = None, **local: Any) -> None:
        self.runner = RayRunner(executor, tools, on_lost)
        self._local = LocalWorkPlane(emit, tools=tools, runner=self.runner, **local)
        self.tools = tools

    async def call_tool(
        self, agent_id: str, name: str, arguments: Mapping[str, Any], *, call_id: str | None = None, ctx: ToolContext,
        timeout: float | None = None, within: float | None = None,
    ) -> CallOutcome:
        """Run tool ``name``: on the cluster if it is remote, else here (never raises for a failed call)."""
        return await self._local.call_tool(agent_id, name, arguments, call_id=call_id, ctx=ctx, timeout=timeout,
                                           within=within)

    async def call_llm(
        self, agent_id: str, request: ChatRequest, *, call_id: str | None = None, provider: str | None = None,
        within: float | None = None,
    ) -> CallOutcome:
        """Ask a provider, from this process (LLM calls wait on the network, not on cores)."""
        return await self._local.call_llm(agent_id, request, call_id=call_id, provider=provider, within=within)

    async def serve(self) -> None:
        """The local plane's background work (streamed replies' flusher) and the watch on the
        cluster's head (:meth:`RayRunner.watch`), until cancelled."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.runner.watch)
            await self._local.serve()

    def statistics(self) -> WorkPlaneStatistics:
        """Both pools' statistics (remote calls hold tool pool slots like local ones)."""
        return self._local.statistics()

    async def aclose(self) -> None:
        """Close the providers; the connection to the cluster stays (``ray.shutdown`` at exit)."""
        await self._local.aclose()

    def replay_containers(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Where a resumed run's containers are, from its log (:meth:`NodeContainers.replay`)."""
        self.runner.containers.replay(events)

    async def release_containers(self, run_id: str) -> None:
        """Remove the run's containers on the cluster's nodes (:meth:`RayRunner.release_containers`)."""
        await self.runner.release_containers(run_id)


# ---------------------------------------------------------------- on the worker

_reaper: subprocess.Popen[bytes] | None = None


def _start_reaper() -> None:
    """Once per worker process: a reaper that outlives it and kills what its calls started."""
    global _reaper
    if _reaper is not None:
        return
    token = os.urandom(8).hex()
    env = {k: v for k, v in os.environ.items() if k != reaper.ENV}
    _reaper = subprocess.Popen([sys.executable, "-m", "agentctl.services.reaper", token], stdin=subprocess.PIPE,
                               start_new_session=True, env=env)
    _reaper.wait()  # its first process: the reaper itself is its fork, which holds the pipe
    os.environ[reaper.ENV] = token  # inherited by every process a call starts from now on


@contextmanager
def _workdir(call: _Call) -> Iterator[str]:
    if call.workspace is not None:
        yield call.workspace
        return
    with tempfile.TemporaryDirectory(prefix="agentctl-call-") as scratch:
        yield scratch


def _call_on_worker(call: _Call) -> dict[str, Any]:
    """The Ray task: run the tool, and say on which node (errors are results, not raised)."""
    node = ray.get_runtime_context().get_node_id()
    _start_reaper()
    with _workdir(call) as workspace:
        ctx = ToolContext(agent_id=call.agent_id, workspace=Path(workspace), run_id=call.run_id, call_id=call.call_id,
                          shell_enabled=call.shell_enabled, protected=tuple(Path(p) for p in call.protected))
        args = (ctx,) if call.takes_ctx else ()
        try:
            if call.is_async:
                value = anyio.run(partial(call.fn, *args, **call.arguments))
            else:
                value = call.fn(*args, **call.arguments)
        except Exception as exc:
            text = str(exc) if type(exc).__module__.startswith("agentctl.") else f"{type(exc).__name__}: {exc}"
            return {"ok": False, "error": text, "node": node}
    return {"ok": True, "value": value, "node": node}


_remote_call = ray.remote(_call_on_worker)
