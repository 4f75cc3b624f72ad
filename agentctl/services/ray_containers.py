"""The container tools on a Ray cluster: which node's engine holds what a run started there.

Used by :class:`~agentctl.services.ray_plane.RayRunner`, which runs the ``docker/*`` tools
as Ray tasks like every ``remote`` tool; a container lives in one node's engine, though,
so the runner keeps, through :class:`NodeContainers`:

- where each container and compose project is: the node a ``docker/run`` or
  ``docker/compose-up`` call reported (its ``tool/result`` records it, so after a crash
  :meth:`NodeContainers.replay` reads it back from the log);
- follow-up calls (``docker/exec``, ``logs``, ``stop``, ``compose-down``) pinned to that
  node (a hard ``NodeAffinitySchedulingStrategy``), or failed at once, saying so, when the
  node has left the cluster;
- removal on the node: what a cancelled (timed-out) call started, by its ``agentctl.call``
  label; an agent's containers when it ends (the runtime's ``on_agent_end`` hook, as for
  local calls); and at run end, stop and resume every container of the run, by a task pinned to
  each node that ran them (and to each node that could have, when a call ended without
  saying where it ran: timed out, cancelled, its worker lost, or cut short by a crash);
- for ``agentctl gc --ray``, the same removal on every live node of the cluster
  (:func:`remove_on_cluster`).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ..errors import ToolError
from ..executor import ToolResources
from ..frozen import FrozenDict
from .tools.docker import DOCKER_TOOLS, compose_project, remove_call
from .tools.docker_engine import GcStatistics, remove_labelled
from .tools.registry import AgentControl

__all__ = ["DEFAULT_REQUEST", "REMOVE_TIMEOUT", "NodeContainers", "NodeRemoval", "creates", "is_container_tool",
           "remove_on_cluster", "remove_on_nodes"]

#: What a container tool's call asks of the cluster unless the plan says otherwise: one
#: ``docker`` slot of a node (a node declares ``docker: N`` to take N calls at once), no CPU
#: (the call's process only waits on the engine).
DEFAULT_REQUEST = ToolResources(num_cpus=0, resources=FrozenDict({"docker": 1}))

_CREATE = ("docker/run", "docker/compose-up")
# The argument that names what a follow-up call acts on.
_FOLLOW = {"docker/exec": "container", "docker/logs": "container", "docker/stop": "container",
           "docker/compose-down": "project"}
#: Seconds a removal on the nodes may take before the run (or ``agentctl gc``) goes on without it.
REMOVE_TIMEOUT = 60.0


def is_container_tool(name: str) -> bool:
    """Whether ``name`` is one of the ``docker/*`` tools."""
    return name in DOCKER_TOOLS


def creates(name: str) -> bool:
    """Whether a call of tool ``name`` starts containers (``docker/run``, ``docker/compose-up``)."""
    return name in _CREATE


class NodeContainers:
    """Where one run's containers are on the cluster, and their removal there."""

    def __init__(self) -> None:
        self.where: dict[str, str] = {}  # container or compose project name -> node id
        self.nodes: set[str] = set()  # nodes that ran a creating call
        self.agents: dict[str, set[str]] = {}  # agent id -> the nodes its creating calls ran on
        self._watched: weakref.WeakSet[Any] = weakref.WeakSet()
        self.unsure = False  # a creating call ended without saying on which node (timeout, lost worker)
        self.removed = 0

    @property
    def started(self) -> bool:
        """Whether the run has made a call that started, or may have started, a container."""
        return bool(self.nodes) or self.unsure

    # ---------------------------------------------------------------- where things are

    def record(self, tool: str, agent_id: str, node: str | None, value: Any) -> None:
        """Note what a finished call of ``tool`` by ``agent_id`` started (its result ``value``) on ``node``."""
        if tool not in _CREATE:
            return
        if node is None:
            self.unsure = True
            return
        self.nodes.add(node)
        self.agents.setdefault(agent_id, set()).add(node)
        if not isinstance(value, Mapping):
            return
        names = [value.get("container"), value.get("project"), *(value.get("containers") or ())]
        for name in names:
            if isinstance(name, str) and name:
                self.where[name] = node

    def replay(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Read back from a run's log what its container calls started where (for a resumed run).

        A creating call logged as requested with no ``tool/result`` naming a node may have
        left a container anywhere: removal then covers every node that could have run it.
        """
        pending: set[str] = set()
        for event in events:
            if event.get("tool") not in _CREATE:
                continue
            if event.get("type") == "tool/requested":
                pending.add(str(event.get("call_id")))
            elif event.get("type") == "tool/result":
                pending.discard(str(event.get("call_id")))
                self.record(str(event["tool"]), str(event.get("agent_id")), event.get("node"), event.get("result"))
        self.unsure = self.unsure or bool(pending)

    def pinned(self, tool: str, arguments: Mapping[str, Any], run_id: str, agent_id: str) -> tuple[str, str] | None:
        """What a follow-up call of ``tool`` acts on and the node it must run on (``None``: any node)."""
        key = _FOLLOW.get(tool)
        if key is None:
            return None
        name = arguments.get(key)
        if tool == "docker/compose-down":
            name = compose_project(run_id, agent_id, name)
        node = self.where.get(name) if isinstance(name, str) else None
        return None if node is None else (str(name), node)

    # ---------------------------------------------------------------- removal on the nodes

    def watch(self, agents: AgentControl, run_id: str) -> None:
        """Remove an agent's containers, on the nodes that hold them, when it ends (once per runtime)."""
        if agents not in self._watched:
            self._watched.add(agents)
            agents.on_agent_end(partial(self._agent_ended, run_id))

    def _agent_ended(self, run_id: str, agent_id: str) -> Coroutine[Any, Any, None] | None:
        # Taken now, not in the task: a restarted agent with the same id starts afresh.
        nodes = self.agents.pop(agent_id, None)
        return self._on_nodes(nodes, run_id, None, agent_id) if nodes else None

    async def remove_call(self, run_id: str, call_id: str, nodes: Iterable[str]) -> None:
        """Remove what call ``call_id`` of ``run_id`` started, on each of ``nodes`` (it ran on one of them)."""
        self.unsure = True  # the cancel may have raced the engine: the run's end looks again
        await self._on_nodes(nodes, run_id, call_id)

    async def release(self, run_id: str, candidates: Iterable[str]) -> None:
        """Remove every container of ``run_id`` on each node that ran one (and, when unsure, on
        every node in ``candidates``, those that could have). Bounded and shielded."""
        nodes = set(self.nodes)
        if self.unsure:
            nodes |= set(candidates)
        await self._on_nodes(nodes, run_id)

    async def _on_nodes(self, nodes: Iterable[str], run_id: str, call_id: str | None = None,
                        agent_id: str | None = None) -> None:
        self.removed += (await remove_on_nodes(nodes, run_id, call_id, agent_id)).removed.containers


@dataclass(frozen=True, slots=True)
class NodeRemoval:
    """What a removal on a cluster's nodes did.

    Attributes:
        removed: what the nodes that answered removed, in total.
        nodes: how many nodes answered.
        missed: the nodes that did not (their task failed, or was still running after
            :data:`REMOVE_TIMEOUT` seconds and was cancelled).
    """

    removed: GcStatistics
    nodes: int
    missed: tuple[str, ...]


async def remove_on_nodes(nodes: Iterable[str], run_id: str | None, call_id: str | None = None,
                          agent_id: str | None = None) -> NodeRemoval:
    """Remove on each of ``nodes`` the containers of ``run_id`` (``None``: of every agentctl run),
    or only those of one call or one agent, by a task pinned to the node. Bounded and shielded."""
    refs = {node: _remove.options(num_cpus=0, max_retries=0, name="agentctl:remove-containers",
                                  scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
                                  ).remote(run_id, call_id, agent_id) for node in sorted(set(nodes))}
    if not refs:
        return NodeRemoval(GcStatistics(), 0, ())
    futures = {asyncio.wrap_future(ref.future()): node for node, ref in refs.items()}
    with anyio.CancelScope(shield=True):
        done, pending = await asyncio.wait(futures, timeout=REMOVE_TIMEOUT)
    for future in pending:
        future.cancel()
        ray.cancel(refs[futures[future]], force=True)
    answers = [f.result() for f in done if f.exception() is None]
    missed = sorted(futures[f] for f in futures if f in pending or f.exception() is not None)
    return NodeRemoval(GcStatistics(*map(sum, zip(*answers, strict=True))), len(answers), tuple(missed))


async def remove_on_cluster(run_id: str | None) -> NodeRemoval:
    """Remove the containers of ``run_id`` (``None``: of every agentctl run) on every live node of
    the cluster this process is connected to (``agentctl gc --ray``)."""
    nodes = await anyio.to_thread.run_sync(lambda: [n["NodeID"] for n in ray.nodes() if n.get("Alive")])
    return await remove_on_nodes(nodes, run_id)


def _remove_here(run_id: str | None, call_id: str | None, agent_id: str | None) -> tuple[int, int, int]:
    """The Ray task: remove the run's containers (or one call's, or one agent's) from this node's
    engine; how many containers, networks and volumes."""

    async def remove() -> tuple[int, int, int]:
        if call_id is not None and run_id is not None:
            return await remove_call(run_id, call_id), 0, 0
        stats = await remove_labelled(run_id, agent_id)
        return stats.containers, stats.networks, stats.volumes

    try:
        return anyio.run(remove)
    except (ToolError, OSError):
        return 0, 0, 0  # no engine here after all: nothing of the run is in it


_remove = ray.remote(_remove_here)
