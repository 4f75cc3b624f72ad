"""The two-node Ray cluster of the ``ray`` tests: one per test module (each module's fixture runs :func:`two_nodes`).

A head node and a worker node on 127.0.0.1, one CPU each, a small object store, no
dashboard; the worker node has a custom resource ``special``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest

pytest.importorskip("ray")

# Both nodes bind and report 127.0.0.1: no test traffic leaves the loopback interface.
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


class TwoNodes:
    """The module's cluster: its address, the two nodes' ids, and the ``Cluster`` (to add nodes)."""

    def __init__(self, address: str, head: str, worker: str, cluster: Any) -> None:
        self.address, self.head, self.worker, self.cluster = address, head, worker, cluster


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in this process's environment for the block (what a node started in it inherits)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def loopback() -> AbstractContextManager[None]:
    """The environment in which a ``Cluster`` made in this process binds to 127.0.0.1 only."""
    return environment(LOOPBACK)


def two_nodes(worker_resources: Mapping[str, float] | None = None, head_env: Mapping[str, str] | None = None,
              ) -> Iterator[TwoNodes]:
    """Start the cluster, yield it, shut it down (the body of each module's ``cluster`` fixture).

    ``worker_resources`` replace the worker node's ``special: 1``; ``head_env`` is set for
    the head node's processes only (its workers inherit it).
    """
    from ray.cluster_utils import Cluster

    small: dict[str, Any] = {"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024}
    with loopback():
        with environment(head_env or {}):
            c = Cluster(initialize_head=True, head_node_args={**small, "include_dashboard": False})
        try:
            worker = c.add_node(**small, resources=dict(worker_resources or {"special": 1}))
            c.wait_for_nodes()
            head: Any = c.head_node  # ray's Cluster declares it None (its value before a head starts)
            yield TwoNodes(c.address, head.node_id, worker.node_id, c)
        finally:
            c.shutdown()
