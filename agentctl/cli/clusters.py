"""Ray clusters as the command line meets them: whether Ray is installed, and where a run's
processes ran their container tools, as its log records (``executor`` and ``address`` of
``run/started`` and ``run/resumed``): what ``agentctl run --resume`` cleans itself, what it
names for ``agentctl gc --ray`` (:mod:`agentctl.cli.gc`) to clean. Imports nothing of Ray.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..events.run_state import RunState

__all__ = ["PRIVATE", "cleanup_command", "left_on_clusters", "ran_here", "ray_missing"]

#: The address of a private cluster (``--ray local``): it lives and dies with the process that
#: started it, on this machine, so what it ran is in this machine's engine.
PRIVATE = "local"


def ray_missing() -> str | None:
    """Why a Ray executor cannot be used here (Ray is not installed), or ``None``."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return "the ray executor needs Ray, an optional extra: pip install 'agentctl[ray]'"
    return None


def ran_here(state: RunState) -> bool:
    """Whether a process of the run ran its tools in this machine's engine: locally, on a
    private ``local`` cluster (whose one node is this machine), or without saying (an older log)."""
    return bool({"local", ""}.intersection(state.executors)) or PRIVATE in state.clusters


def left_on_clusters(state: RunState, now: str | None) -> list[str]:
    """One warning line per Ray cluster whose nodes may hold containers that a resume on
    ``now`` (a cluster's address; ``None``: this machine) does not remove, naming the command
    that does: each cluster the run's latest process there died on (no ``run/finished``),
    but the one the resume runs on (which removes them itself) and a private ``local`` one."""
    lines = []
    run_id = str(state.run_id)
    where = "here" if now is None else f"on the Ray cluster at {now!r}"
    for address, ended in state.clusters.items():
        if ended or address == PRIVATE or (now is not None and address in ("", now)):
            continue
        cluster = f"the Ray cluster at {address!r}" if address else "a Ray cluster its log does not name"
        lines.append(f"run {run_id} ran container tools on {cluster}, where its process died; this resume runs "
                     f"its tools {where} and does not remove what that process left on the cluster's nodes: "
                     f"{cleanup_command(run_id, address)}")
    return lines


def cleanup_command(run_id: str, address: str) -> str:
    """The command that removes a run's containers on every node of the cluster at ``address``
    (``""``: a cluster the run's log does not name, left for the user to fill in)."""
    return f"agentctl gc --run-id {shlex.quote(run_id)} --ray {shlex.quote(address) if address else 'ADDRESS'}"
