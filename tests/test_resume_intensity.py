"""A supervisor's restart intensity across a crash resume: a real ``agentctl run`` killed
with ``kill -9`` (its fault hook) between the restarts of a child that appends a line and
fails on every start (the append's tool call puts what came before it on disk), and resumed; the supervisor gives up after as many restarts as in a run never killed.

The plan's root agent supervises the task ``w`` with ``settings.max_restarts: 3``: its
4th failure within ``restart_period`` is one too many, and the plan agent fails.
"""

from __future__ import annotations

import signal
import time
from collections import deque
from itertools import takewhile
from pathlib import Path

import orjson
import pytest
from cli_helpers import events, of, run_plan

from agentctl.events.journal import HANDLERS, Journal, Journals
from agentctl.runtime.supervision import within_intensity

PLAN = """\
name: intensity
settings: {max_restarts: 3, restart_period: PERIOD, checkpoint_events: EVERY}
tasks:
  - id: w
    agent: script
    steps:
      - append: {path: w.txt, content: "x\\n"}
      - fail: again
"""

GAVE_UP = "restart intensity exceeded: more than 3 restarts in 600.0s (last offender w)"


def _run(cwd: Path, *, fault: str | None = None, resume: bool = False, period: float = 600,
         checkpoints: bool = False) -> tuple[int, list[str]]:
    """Run (or resume) the plan; the restarts of ``w`` logged so far and the plan agent's
    failures (with the lines ``w`` appended checked to be one a start: none made twice)."""
    (cwd / "plan.yaml").write_text(PLAN.replace("PERIOD", str(period)).replace("EVERY", "1" if checkpoints else str(10**9)))
    done = run_plan(cwd, fault=fault, resume=resume)
    assert done.returncode == (-signal.SIGKILL if fault is not None else 1), done.stderr
    evs = events(cwd / "run")
    assert (cwd / "w.txt").read_text() == "x\n" * (len(of(evs, "agent/restarted", "w")) + 1)
    return len(of(evs, "agent/restarted", "w")), [e["error"] for e in of(evs, "agent/error", "plan")]


@pytest.mark.slow
def test_a_run_never_killed_restarts_three_times_then_gives_up(tmp_path: Path) -> None:
    assert _run(tmp_path) == (3, [GAVE_UP])


def test_a_resumed_supervisor_counts_the_restarts_before_the_crash(tmp_path: Path) -> None:
    assert _run(tmp_path, fault="kill@tool/result#3") == (2, [])  # its 3rd failure: 2 restarts
    assert _run(tmp_path, resume=True) == (3, [GAVE_UP])


@pytest.mark.slow
def test_a_double_crash_counts_the_restarts_of_both_runs(tmp_path: Path) -> None:
    assert _run(tmp_path, fault="kill@tool/result#2") == (1, [])
    # Its first new append (the one before it is replayed): one restart more, 2 in all.
    assert _run(tmp_path, fault="kill@tool/result#1", resume=True) == (2, [])
    assert _run(tmp_path, resume=True) == (3, [GAVE_UP])


@pytest.mark.slow
def test_restarts_older_than_the_period_do_not_count_after_the_downtime(tmp_path: Path) -> None:
    """Period 1 s, down longer than that: as a live run waiting that long, 3 restarts again."""
    assert _run(tmp_path, fault="kill@tool/result#3", period=1) == (2, [])
    last = max(e["t"] for e in of(events(tmp_path / "run"), "agent/restarted", "w")) / 1000
    time.sleep(max(0.0, last + 1.5 - time.time()))
    restarts, failures = _run(tmp_path, resume=True, period=1)
    assert (restarts, failures) == (5, [GAVE_UP.replace("600.0s", "1.0s")])


@pytest.mark.slow
def test_a_resumed_plan_supervisor_restored_from_a_checkpoint_counts_them_too(tmp_path: Path) -> None:
    assert _run(tmp_path, fault="kill@tool/result#3", checkpoints=True) == (2, [])
    assert _run(tmp_path, resume=True, checkpoints=True) == (3, [GAVE_UP])


SPAWNED = """\
name: spawned
settings: {checkpoint_events: 1}
tasks:
  - id: boss
    agent: script
    restart: temporary
    steps:
      - spawn:
          id: w
          agent: script
          steps:
            - append: {path: w.txt, content: "x\\n"}
            - fail: again
      - wait: {kind: done, timeout: 30}
"""


@pytest.mark.slow
def test_a_spawned_supervisor_restored_from_its_snapshot_counts_them_too(tmp_path: Path) -> None:
    """``boss`` supervises ``w`` with an agent's defaults: 3 restarts within 5 s. The check
    does not depend on the machine's speed: the restarts logged must be those a sliding
    5 s window over ``w``'s logged failures allows, the kill and resume between them."""
    (tmp_path / "plan.yaml").write_text(SPAWNED)
    assert run_plan(tmp_path, fault="kill@tool/result#3").returncode == -signal.SIGKILL
    assert run_plan(tmp_path, resume=True).returncode == 1
    evs = events(tmp_path / "run")
    assert of(evs, "agent/resumed", "boss")[0]["snapshot"] is True
    window: deque[float] = deque()
    allowed = list(takewhile(lambda t: within_intensity(window, t / 1000, 3, 5.0),
                             [e["t"] for e in of(evs, "agent/error", "w")]))
    assert len(of(evs, "agent/restarted", "w")) == len(allowed) < len(of(evs, "agent/error", "w"))
    assert [e["error"] for e in of(evs, "agent/error", "boss")] == [GAVE_UP.replace("600.0s", "5.0s")]
    assert (tmp_path / "w.txt").read_text() == "x\n" * (len(allowed) + 1)


def test_the_journal_keeps_a_supervisors_restarts_within_its_period_through_a_snapshot() -> None:
    by: dict[str, Journal] = {}

    def restarted(agent: str, t: int, restarts: int, offender: str = "w") -> None:
        HANDLERS["agent/restarted"](by, {"type": "agent/restarted", "agent_id": agent, "parent_id": "boss", "t": t,
                                         "strategy": "one_for_all", "restarts": restarts, "offender": offender})

    HANDLERS["agent/spawned"](by, {"type": "agent/spawned", "agent_id": "boss", "parent_id": None, "t": 0})
    for n in (1, 2, 3):
        restarted("w", 1000 * n, n)
        restarted("v", 1000 * n, n)  # a sibling restarted with it (one_for_all): the same restart
    assert by["boss"].restarts == [1000, 2000, 3000]
    restarted("w", 9000, 2)  # two within the period, this one included: the older two are out for good
    assert by["boss"].restarts == [3000, 9000]
    # A snapshot stands for the agent's state, not for its children's restarts: they stay.
    assert by["boss"].rebase({"logged": [], "turns": 1})
    assert Journals.from_dict(orjson.loads(orjson.dumps(Journals(by).to_dict()))).by_agent["boss"].restarts == [3000, 9000]
    restarted("w", 20000, 1)
    assert by["boss"].restarts == [20000]
