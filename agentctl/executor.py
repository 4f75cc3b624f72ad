"""Where tools run: the plan's ``settings.executor`` as frozen values.

Read by the plan (:mod:`agentctl.plan.model` builds them from ``settings.executor``), by
the CLI session, which picks the work plane from :attr:`Executor.kind`, and by the Ray
work plane (:mod:`agentctl.services.ray_plane`), which turns :class:`ToolResources` into
Ray task options. Imports nothing of Ray.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .frozen import FrozenDict

__all__ = ["Executor", "ToolResources"]


@dataclass(frozen=True, slots=True)
class ToolResources:
    """What one call of a tool asks of a cluster executor (``settings.executor.tools``).

    Attributes:
        num_cpus: CPUs the call holds on its node.
        resources: custom resources (``{docker: 1}``): the call runs only on a node that has them.
        max_retries: times the cluster may run the call again when its worker is lost
            (``None``: 3 for an idempotent tool, else 0; more than 0 only for idempotent tools).
    """

    num_cpus: float = 1.0
    resources: Mapping[str, float] = field(default_factory=FrozenDict)
    max_retries: int | None = None


@dataclass(frozen=True, slots=True)
class Executor:
    """Where tools that can run anywhere run (``settings.executor``).

    Attributes:
        kind: ``local`` (this process) or ``ray`` (a Ray cluster).
        address: the cluster: ``auto`` (the one ``ray start`` runs on this machine),
            ``HOST:PORT``, ``ray://HOST:PORT``, or ``local`` (a private one for this run).
        shared_workspace: the workspace is at the same path on every node: remote calls
            run in it (else each runs in a scratch directory of its node).
        tools: resource requests by tool name or glob (default: one CPU).
    """

    kind: str = "local"
    address: str = "auto"
    shared_workspace: bool = False
    tools: Mapping[str, ToolResources] = field(default_factory=FrozenDict)
