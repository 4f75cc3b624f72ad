"""Supervision decisions, after Erlang/OTP's ``supervisor``: pure functions, no I/O.

Invoked from ``agentctl.runtime.tree`` when a child exits. Every agent supervises its
own children; the runtime itself is the supervisor of root agents.

Restart type of the child (``AgentSpec.restart``):
    ``permanent``  restarted whenever it exits (even after ``done``);
    ``transient``  restarted only after an abnormal exit (a crash), the default;
    ``temporary``  never restarted.

Strategy of the supervisor (``AgentSpec.strategy``), when a child must be restarted:
    ``one_for_one``  restart that child only;
    ``one_for_all``  stop every other child (reverse start order), restart them all;
    ``rest_for_one`` stop the children started after it (reverse order), restart those
                     and it.
    Temporary children caught up in a group restart are stopped and not restarted.

Intensity: more than ``max_restarts`` restarts within ``restart_period`` seconds and the
supervisor gives up: it stops its children, fails, and its own supervisor decides.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import UsageError


def should_restart(restart: str, abnormal: bool) -> bool:
    """Whether a child with restart type ``restart`` is restarted after an exit."""
    return restart == "permanent" or (restart == "transient" and abnormal)


def within_intensity(times: deque[float], now: float, max_restarts: int, period: float) -> bool:
    """Record a restart at ``now`` in the sliding window ``times``; False if past the limit."""
    while times and now - times[0] > period:
        times.popleft()
    times.append(now)
    return len(times) <= max_restarts


@dataclass(frozen=True, slots=True)
class RestartPlan:
    """What a supervisor does about one child's exit.

    Attributes:
        stop: siblings to stop first, in the order to stop them (reverse start order).
        restart: children to start again, in start order.
    """

    stop: tuple[str, ...]
    restart: tuple[str, ...]


def plan_restart(strategy: str, children: Sequence[tuple[str, str]], failed: str) -> RestartPlan:
    """The restart plan for ``failed`` among ``children`` (``(id, restart type)``, start order).

    ``failed`` must be in ``children``; the caller has decided it is to be restarted.
    """
    ids = [cid for cid, _ in children]
    kinds = dict(children)
    index = ids.index(failed)
    if strategy == "one_for_one":
        group = [failed]
    elif strategy == "one_for_all":
        group = ids
    elif strategy == "rest_for_one":
        group = ids[index:]
    else:
        raise UsageError(f"unknown supervision strategy {strategy!r}")
    others = [cid for cid in group if cid != failed]
    return RestartPlan(
        stop=tuple(reversed(others)),
        restart=tuple(cid for cid in group if cid == failed or kinds[cid] != "temporary"),
    )
