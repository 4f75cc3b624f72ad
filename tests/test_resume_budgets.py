"""Budgets across a crash (issue 11): a child that ended before the crash stays charged to its
parent (and so to its ancestors) after the resume, at the point of the parent's history where
it was charged the first time, never twice.

Each run is a real ``agentctl run`` against the fake OpenAI server on 127.0.0.1, SIGKILLed
from this process. The boss has a budget (steps, tool calls, tokens) and spawns two workers
one after the other, each granted half of what the boss has left (so the second one's grant
depends on what the first one used); the second spawns a worker of its own, so what the boss
is charged for it includes its child's use. Then the boss spawns a third asking for one step
more than it has left (refused). The model's answers are released in one fixed order, read
from the log, so that every run takes the same steps: the budget left that each agent's
system prompt shows must then be, request by request, that of a run never killed.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from anyio.from_thread import start_blocking_portal
from cli_helpers import Events, events, of, run_plan, start
from llm_servers import Behaviour, LLMServer, Recorded, running_server

Key = tuple[str, int]  # (agent, turn): a request of that agent with that many answers in it

BUDGET = {"max_steps": 40, "max_tool_calls": 8, "max_tokens": 100_000, "max_children": 5}
#: What the third worker asks for: one step more than the boss has left when it asks (40,
#: less its own 8 steps, c1's 4 and c2's 11: its 7 and g2's 4), so it is refused, as long as
#: the workers are charged. A resume that forgot one would grant it: the tree would overspend.
TOO_MUCH = {"max_steps": 18}


def _plan(url: str, *, checkpoints: bool) -> str:
    # With checkpoints, one after every event (written whenever the tree goes quiet);
    # without, the boss is replayed from its start.
    every = {"checkpoint_events": 1} if checkpoints else {"checkpoint_events": 10**9, "checkpoint_seconds": 3600}
    return json.dumps({
        "name": "budgets",
        "settings": every,
        "defaults": {"provider": "openai", "model": "m", "base_url": url + "/v1", "restart": "temporary",
                     "tools": ["fs/append", "agent/spawn"]},
        "tasks": [{"id": "boss", "agent": "llm", "instructions": "get the logs written", "budget": BUDGET}],
    })


def _key(request: Recorded) -> Key:
    messages = request.body["messages"]
    agent = messages[0]["content"].split("'")[1]  # "You are agent 'ID' ..."
    return agent, sum(m.get("role") == "assistant" for m in messages)


def _spawn(child: str, **budget: Any) -> Behaviour:
    args: dict[str, Any] = {"id": child, "instructions": f"write {child}.txt"}
    if budget:
        args["budget"] = budget
    return Behaviour(content="", tool_calls=[("agent__spawn", args)])


def _append(agent: str) -> Behaviour:
    return Behaviour(content="", tool_calls=[("fs__append", {"path": f"{agent}.txt", "content": f"{agent}\n"})])


#: The model's answer per request: the boss's turns, c2's (a worker with a worker), the leaves'.
ANSWERS: dict[Key, Behaviour] = {
    ("boss", 0): _spawn("c1"),
    ("boss", 1): Behaviour("waiting for c1"),
    ("boss", 2): _spawn("c2"),
    ("boss", 3): Behaviour("waiting for c2"),
    ("boss", 4): _spawn("c3", **TOO_MUCH),
    ("boss", 5): Behaviour("all written"),
    ("c2", 0): _spawn("g2"),
    ("c2", 1): Behaviour("waiting for g2"),
    ("c2", 2): _append("c2"),
    ("c2", 3): Behaviour("report of c2"),
    **{(leaf, 0): _append(leaf) for leaf in ("c1", "g2", "c3")},
    **{(leaf, 1): Behaviour(f"report of {leaf}") for leaf in ("c1", "g2", "c3")},
}
#: Each worker's last request, answered while its parent's call that follows the spawn is in
#: flight; that call, answered once the worker has ended.
LAST = {"c1": ("c1", 1), "g2": ("g2", 1), "c2": ("c2", 3)}
AFTER_SPAWN = {"c1": ("boss", 1), "g2": ("c2", 1), "c2": ("boss", 3)}


def _ended(evs: Events, agent: str) -> bool:
    return any(e["type"] == "agent/done" and e["agent_id"] == agent for e in evs)


def _may_answer(key: Key, asked: set[Key], evs: Events) -> bool:
    """One order for every run: a worker reports while its parent's call after its spawn is
    in flight, and that call is answered once the worker has ended (the parent then reads the
    report in the step that reads the answer)."""
    for worker, last in LAST.items():
        if key == last:
            return AFTER_SPAWN[worker] in asked
        if key == AFTER_SPAWN[worker]:
            return _ended(evs, worker)
    return True


class Budgeted:
    """The boss's tree on ``server``, across the runs (crashed and resumed) of one run dir."""

    def __init__(self, server: LLMServer, cwd: Path, *, checkpoints: bool) -> None:
        self.server, self.cwd = server, cwd
        self.gates: defaultdict[Key, threading.Event] = defaultdict(threading.Event)
        self.first = len(server.requests)
        server.reply_for = self._answer
        (cwd / "plan.yaml").write_text(_plan(server.url, checkpoints=checkpoints))

    def _answer(self, request: Recorded) -> Behaviour:
        key = _key(request)
        answer = ANSWERS.get(key, Behaviour(f"no answer scripted for {key}"))
        return Behaviour(answer.content, answer.tool_calls, gate=self.gates[key])

    @property
    def requests(self) -> list[Recorded]:
        return self.server.requests[self.first:]

    @property
    def asked(self) -> set[Key]:
        return {_key(r) for r in self.requests}

    def run(self, *, resume: bool, point: Point | None = None) -> None:
        """Run (or resume) the plan, answering as :func:`_may_answer` allows and never what
        ``point`` holds; signal it from here once ``point`` says (else it must exit 0)."""
        where = ("--resume", "run") if resume else ("--run-dir", "run")
        proc = start("run", "plan.yaml", "--no-ui", "--no-watch-plan", *where, cwd=self.cwd)
        try:
            deadline = time.monotonic() + 90
            while proc.poll() is None and time.monotonic() < deadline:
                evs, asked = events(self.cwd / "run"), self.asked
                if point is not None and point.kill(self, evs):
                    proc.send_signal(point.signal)
                    break
                for key in asked:
                    if _may_answer(key, asked, evs) and not (point is not None and point.hold(key, self)):
                        self.gates[key].set()
                time.sleep(0.02)
            code = proc.wait(10)
            self.stderr = proc.stderr.read() if proc.stderr else ""
            assert code == (0 if point is None else -signal.SIGKILL if point.signal == signal.SIGKILL else 130), \
                self.stderr
            if point is not None:
                point.after(self)
        finally:
            proc.kill()
            proc.wait()

    def newest_checkpoint(self) -> tuple[Path, bytes, dict[str, Any]] | None:
        """The newest checkpoint: its path, bytes and run state."""
        for path in sorted((self.cwd / "run" / "checkpoints").glob("ckpt-*.json"), reverse=True):
            try:
                raw = path.read_bytes()
                return path, raw, orjson.loads(raw.partition(b"\n")[2])["run"]
            except (OSError, orjson.JSONDecodeError):
                continue  # replaced meanwhile
        return None

    def boss_snapshot_children(self) -> list[str] | None:
        """The live children the newest checkpoint's snapshot of the boss names (None: none)."""
        newest = self.newest_checkpoint()
        snapshot = newest[2]["journals"].get("boss", {}).get("snapshot") if newest is not None else None
        return None if snapshot is None else [c["id"] for c in snapshot.get("children", ())]


@dataclass(frozen=True)
class Point:
    """Where a run is killed: with or without checkpoints, the answers held meanwhile, when."""

    checkpoints: bool
    held: frozenset[Key]
    when: Callable[[Budgeted, Events], bool]
    from_snapshot: bool  # whether the resume restores the boss from a snapshot
    signal: signal.Signals = signal.SIGKILL

    def hold(self, key: Key, tree: Budgeted) -> bool:
        return key in self.held

    def kill(self, tree: Budgeted, evs: Events) -> bool:
        return self.when(tree, evs)

    def after(self, tree: Budgeted) -> None:
        """What the crash left on disk, once killed (as it is)."""


@dataclass(frozen=True)
class BeforeTheNextCheckpoint(Point):
    """Killed after c1 ended and before a checkpoint was written since: the newest checkpoint
    snapshots the boss with c1 live. (With a checkpoint after every event, one is written
    within milliseconds of c1's end; the newest one taken before is kept aside while c1's
    report is held, and is the newest one again after the kill, as it would be had the
    crash come first.)"""

    kept: dict[str, tuple[Path, bytes]] = field(default_factory=dict)

    def hold(self, key: Key, tree: Budgeted) -> bool:
        if key == ("c1", 1) and not self.kept and (newest := tree.newest_checkpoint()) is not None:
            snapshot = newest[2]["journals"].get("boss", {}).get("snapshot")
            if snapshot is not None and [c["id"] for c in snapshot["children"]] == ["c1"] and snapshot["logged"]:
                self.kept["c1 live"] = newest[0], newest[1]  # the boss in its call, c1 live
        return key in self.held or (key == ("c1", 1) and not self.kept)

    def after(self, tree: Budgeted) -> None:
        path, raw = self.kept["c1 live"]
        for old in path.parent.glob("ckpt-*.json"):
            old.unlink()
        path.write_bytes(raw)


def _outcome(tree: Budgeted) -> dict[str, Any]:
    """What a finished run left: files, results, refusals, charges, and each request to the
    model (its system prompt shows the agent's budget left; ``max_tokens``, what is left of
    its tokens), by agent and turn: the last one, when a crash made it ask again."""
    evs = events(tree.cwd / "run")
    return {
        "files": {p.name: p.read_text() for p in sorted(tree.cwd.glob("*.txt"))},
        "results": {e["agent_id"]: (e["status"], e["result"]) for e in of(evs, "agent/done")},
        "refused": [(e["agent_id"], e["child_id"], e["rule"], e["error"]) for e in of(evs, "policy/refused")],
        # What each agent of the tree used by its end (its ended children's use included;
        # not the run's root, the plan, which has no budget and steps again on a resume) ...
        "steps": {e["agent_id"]: e["steps"] for e in of(evs, "agent/done") if e["agent_id"] != "plan"},
        # ... and each child's charge to its parent: once in the log, whatever the crashes.
        "charged": [(e["agent_id"], e["child_id"], e["steps"], e["tool_calls"], e["tokens"])
                    for e in of(evs, "budget/charged")],
        "requests": {_key(r): r.body for r in tree.requests},
    }


@pytest.fixture(scope="module")
def server() -> Iterator[LLMServer]:
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(running_server()) as running:
        yield running


@pytest.fixture(scope="module")
def uncrashed(server: LLMServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tree = Budgeted(server, tmp_path_factory.mktemp("uncrashed"), checkpoints=True)
    tree.run(resume=False)
    return _outcome(tree)


def test_the_uncrashed_run_charges_each_worker_and_refuses_the_third(uncrashed: dict[str, Any]) -> None:
    """The plan does what the other tests rely on: c3 is refused for the boss's steps left."""
    assert [r[1:3] for r in uncrashed["refused"]] == [("c3", "budget")]
    assert set(uncrashed["results"]) == {"plan", "boss", "c1", "c2", "g2"}
    system = uncrashed["requests"][("boss", 5)]["messages"][0]["content"]
    # 40 steps, less the boss's 9 so far, c1's 4 and c2's 11 (g2's 4 in them); a tool call each;
    # tokens: 16 a model call, 13 calls; 2 of its 5 children spawned (c3 refused).
    assert "Budget left: max_steps 16, max_tool_calls 5, max_tokens 99792, max_children 3." in system
    assert [c[:4] for c in uncrashed["charged"]] == [("boss", "c1", 4, 1), ("c2", "g2", 4, 1), ("boss", "c2", 11, 2)]
    assert [r[3] for r in uncrashed["refused"]] == ["max_steps 18 exceeds what the parent has left (17)"]
    assert uncrashed["steps"]["boss"] == 10 + 4 + 11


def _resumed_as_uncrashed(tree: Budgeted, uncrashed: dict[str, Any]) -> list[dict[str, Any]]:
    """Resume the run to its end: the outcome of a run never killed, request by request. The
    boss's ``agent/resumed`` events."""
    tree.run(resume=True)
    got = _outcome(tree)
    assert got["refused"] == uncrashed["refused"]  # the tree did not overspend
    assert got["charged"] == uncrashed["charged"]
    assert got["steps"] == uncrashed["steps"]
    assert set(got["requests"]) == set(uncrashed["requests"])  # c3 asked nothing: not spawned
    asked = Counter(_key(r) for r in tree.requests)
    for request in tree.requests:  # those of the killed runs too
        key, body = _key(request), request.body
        expected = uncrashed["requests"][key]
        assert _budget_left(body) == _budget_left(expected), key
        # Asked again after the crash too (its step replayed): the same request, the live
        # children its system prompt names included (those that ended meanwhile among them).
        assert body == expected, (key, asked[key])
    return of(events(tree.cwd / "run"), "agent/resumed", "boss")


def _budget_left(body: dict[str, Any]) -> tuple[str, Any]:
    """What a request shows of its agent's budget: its system prompt's line, and what is left
    of its tokens for the answer."""
    line = next(x for x in body["messages"][0]["content"].splitlines() if x.startswith("Budget left:"))
    return line, body.get("max_tokens")


def _c2_mid_call(tree: Budgeted, evs: Events) -> bool:
    return {("boss", 3), ("c2", 3)} <= tree.asked


def _c1_reported(tree: Budgeted, evs: Events) -> bool:
    return any(e["type"] == "agent/message" and e["from"] == "c1" and e["agent_id"] == "boss" for e in evs)


#: Kill points, and whether the resume restores the boss from a snapshot.
POINTS: dict[str, Callable[[], Point]] = {
    # No checkpoint: the boss is replayed from its start; c1 ended, c2 is in its last call
    # (replayed from its start too: g2 ended).
    "replayed, c2 live": lambda: Point(False, frozenset({("boss", 3), ("c2", 3)}), _c2_mid_call, False),
    # c1 ended while the boss's call was in flight, after the checkpoint that snapshots the
    # boss (in that call) with c1 live.
    "snapshot before c1 ended": lambda: BeforeTheNextCheckpoint(True, frozenset({("boss", 1)}),
                                                                _c1_reported, True),
    # The boss's snapshot is taken after c1 ended (c1 is in its counts: not charged again).
    "snapshot after c1 ended": lambda: Point(True, frozenset({("boss", 3), ("c2", 3)}),
                                             lambda t, evs: _c2_mid_call(t, evs) and t.boss_snapshot_children() == ["c2"],
                                             True),
    # As the first, but stopped by SIGTERM: the agents are stopped (and c2's end is not a
    # charge: it goes on after the resume).
    "SIGTERM, c2 live": lambda: Point(False, frozenset({("boss", 3), ("c2", 3)}), _c2_mid_call, False,
                                      signal.SIGTERM),
    # No checkpoint, both workers ended: only the boss is resumed.
    "replayed, both ended": lambda: Point(False, frozenset({("boss", 3)}), lambda t, evs: _ended(evs, "c2"), False),
}


# The default suite keeps one kill point (it is near its time limit); -m slow runs the rest.
@pytest.mark.parametrize("name", [pytest.param("replayed, c2 live", marks=pytest.mark.slow), "snapshot before c1 ended",
                                  pytest.param("snapshot after c1 ended", marks=pytest.mark.slow),
                                  pytest.param("replayed, both ended", marks=pytest.mark.slow),
                                  pytest.param("SIGTERM, c2 live", marks=pytest.mark.slow)])
def test_a_resumed_parent_is_charged_for_the_children_that_ended_before_the_crash(
    server: LLMServer, uncrashed: dict[str, Any], tmp_path: Path, name: str
) -> None:
    point = POINTS[name]()
    tree = Budgeted(server, tmp_path, checkpoints=point.checkpoints)
    tree.run(resume=False, point=point)
    resumed = _resumed_as_uncrashed(tree, uncrashed)
    assert [e["snapshot"] for e in resumed] == [point.from_snapshot]


@pytest.mark.slow  # three processes
def test_a_double_crash_charges_each_ended_child_once(server: LLMServer, uncrashed: dict[str, Any],
                                                      tmp_path: Path) -> None:
    tree = Budgeted(server, tmp_path, checkpoints=True)
    tree.run(resume=False, point=POINTS["snapshot before c1 ended"]())
    # Killed again in the resume, once c2 is in its last call and the resumed run's own
    # checkpoint snapshots the boss with it.
    tree.run(resume=True, point=POINTS["snapshot after c1 ended"]())
    resumed = _resumed_as_uncrashed(tree, uncrashed)
    assert [e["snapshot"] for e in resumed] == [True, True]


# --- a restarted worker: what it used before its restart counts on after a resume ----------

RESTARTS = """\
name: restarts
settings: {checkpoint_events: EVERY}
tasks:
  - id: boss
    agent: script
    budget: {max_steps: 40}
    steps:
      - spawn:
          id: w
          agent: script
          budget: {max_steps: 7}
          steps:
            - append: {path: w.txt, content: "x\\n"}
            - fail: again
      - wait: {kind: done, timeout: 30}
"""


def _restarts(cwd: Path, *, fault: str | None = None, resume: bool = False, every: int = 10**9) -> Events:
    """Run (or resume) the plan whose worker appends and fails until its 7 steps are used up:
    two steps a start, so 4 lines, 3 restarts, and the 4th start ends for its budget."""
    (cwd / "plan.yaml").write_text(RESTARTS.replace("EVERY", str(every)))
    done = run_plan(cwd, fault=fault, resume=resume)
    assert done.returncode == (-signal.SIGKILL if fault is not None else 0), done.stderr
    return events(cwd / "run")


def _as_uncrashed(cwd: Path, evs: Events) -> None:
    """What the plan leaves, killed or not: 4 lines (not one start more), the worker ended
    for its budget after 7 steps, and those and its 4 calls charged to the boss once."""
    assert (cwd / "w.txt").read_text() == "x\n" * 4
    assert [(e["status"], e["reason"], e["steps"]) for e in of(evs, "agent/done", "w")] == [("budget_exceeded", "max_steps", 7)]
    charged = [(e["agent_id"], e["child_id"], e["steps"], e["tool_calls"], e["tokens"]) for e in of(evs, "budget/charged")]
    assert charged == [("boss", "w", 7, 4, 0)]


@pytest.mark.slow
@pytest.mark.parametrize("every", [10**9, 1])
def test_the_restarted_worker_uses_its_budget_up_in_a_run_never_killed(tmp_path: Path, every: int) -> None:
    _as_uncrashed(tmp_path, _restarts(tmp_path, every=every))


@pytest.mark.parametrize(("fault", "every"), [
    ("kill@tool/result#3", 10**9),  # its third start's append answered: replayed from that start
    pytest.param("kill@agent/restarted#2", 10**9, marks=pytest.mark.slow),  # killed as it restarts
    pytest.param("kill@tool/result#3", 1, marks=pytest.mark.slow),  # restored from a snapshot
])
def test_a_restarted_worker_resumes_with_what_it_used_before_its_restart(tmp_path: Path, fault: str, every: int) -> None:
    _restarts(tmp_path, fault=fault, every=every)
    # The boss's own steps are not compared: its restart notices may come while the resumed
    # boss still replays the ones before the crash, and it then reads two in one step.
    _as_uncrashed(tmp_path, _restarts(tmp_path, resume=True, every=every))


# --- in-process: the journal's charges and where a resumed agent makes them ---------------


def test_the_journal_keeps_each_charge_at_its_place_and_a_snapshot_takes_them_in() -> None:
    from agentctl.events.journal import HANDLERS, Journal

    by: dict[str, Journal] = {}

    def fold(type: str, agent: str, **fields: Any) -> None:
        HANDLERS[type](by, {"type": type, "agent_id": agent, "t": 1, **fields})

    fold("agent/spawned", "boss", parent_id="plan")
    fold("llm/requested", "boss", call_id="l1")
    fold("llm/result", "boss", call_id="l1", ok=True, reply={"content": "spawn c1"})
    fold("agent/spawned", "c1", parent_id="boss")  # the boss's spawn: its second effect
    fold("budget/charged", "boss", child_id="c1", steps=4, tool_calls=1, tokens=32, step=3)
    fold("llm/requested", "boss", call_id="l2")
    boss = by["boss"]
    assert boss.charges == [{"child_id": "c1", "steps": 4, "tool_calls": 1, "tokens": 32, "step": 3, "after": 2}]
    assert Journal.from_dict(orjson.loads(orjson.dumps(boss.to_dict()))).charges == boss.charges
    # A snapshot taken now counts the charge: the journal no longer holds it.
    assert boss.rebase({"logged": ["llm"], "turns": 4})
    assert boss.charges == [] and "charges" not in boss.to_dict()
    # A restart carries what the agent used over: charged before the new start's first step.
    fold("agent/restarted", "c1", parent_id="boss", steps=2, tool_calls=1, tokens=0)
    assert by["c1"].charges == [{"child_id": "c1", "steps": 2, "tool_calls": 1, "tokens": 0, "step": 0, "after": 0}]


def test_a_resumed_agent_makes_each_charge_at_the_first_outcome_or_step_after_it() -> None:
    from collections import deque

    from agentctl.policy import Budget, Grant
    from agentctl.runtime.agent import Agent
    from agentctl.runtime.spec import AgentSpec
    from agentctl.services.bus import Inbox

    agent = Agent(AgentSpec("boss", lambda ctx: []), None, Grant(None, frozenset(), Budget(max_steps=40)), Inbox(4))

    def record(n: int, after: int, step: int) -> dict[str, Any]:
        return {"child_id": f"c{n}", "steps": n, "tool_calls": 0, "tokens": 10 * n, "after": after, "step": step}

    agent.charges = deque([record(1, 2, 3), record(2, 5, 6)])
    agent.charge_due(effect=1)  # an outcome logged before either
    agent.charge_due(step=2)
    assert (agent.steps, agent.tokens) == (0, 0)
    agent.charge_due(effect=2)  # the first outcome logged after c1's charge
    assert (agent.steps, agent.tokens, agent.left("max_steps")) == (1, 10, 39)
    agent.charge_due(step=5)
    assert agent.steps == 1
    agent.charge_due(step=6)  # its step 6 is over: before step 7
    assert (agent.steps, agent.tokens, agent.charges) == (3, 30, None)
    agent.charges = deque([record(1, 9, 9)])
    agent.charge_due()  # it acts anew, or ends: all of them
    assert (agent.steps, agent.charges) == (4, None)
