"""Snapshots of agents with live children (issue 11): a parent LLM agent snapshotted while
its children run is restored from that snapshot on resume, without replaying the steps that
spawned them, and its live children (and theirs) start again from their own journals.

Each run is a real ``agentctl run`` against the fake OpenAI server on 127.0.0.1, killed
with a real SIGKILL from this process. The model's answers are held (gates) so that every
child reports at a known point of its parent's conversation: the conversations of a run
killed and resumed must then be, message by message, those of a run never killed.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from anyio.from_thread import start_blocking_portal
from cli_helpers import events, of, start
from llm_servers import Behaviour, LLMServer, Recorded, running_server

Tree = dict[str, tuple[str, ...]]
#: Who spawns whom: the boss delegates to three workers, or to one that delegates again.
TEAM: Tree = {"boss": ("c1", "c2", "c3")}
DEEP: Tree = {"boss": ("c1",), "c1": ("g1",)}

Key = tuple[str, int]  # (agent, turn): a request of that agent with that many answers in it


def _plan(url: str) -> str:
    return json.dumps({
        "name": "team",
        # A checkpoint after every event: one is written whenever the tree goes quiet.
        "settings": {"checkpoint_events": 1},
        "defaults": {"provider": "openai", "model": "m", "base_url": url + "/v1", "restart": "temporary",
                     "tools": ["fs/append", "agent/spawn"]},
        "tasks": [{"id": "boss", "agent": "llm", "instructions": "get the logs written"}],
    })


def _key(request: Recorded) -> Key:
    messages = request.body["messages"]
    found = re.search(r"You are agent '([^']+)'", messages[0]["content"])
    assert found is not None
    return found.group(1), sum(m.get("role") == "assistant" for m in messages)


def _behaviour(tree: Tree, key: Key, gate: threading.Event) -> Behaviour:
    """A parent spawns its children, waits, notes each report, and reports when the last is in;
    a leaf appends a line to its own file and reports."""
    agent, turn = key
    children = tree.get(agent, ())
    if not children:
        if turn == 0:
            return Behaviour(content="", tool_calls=[("fs__append", {"path": f"{agent}.txt", "content": f"{agent}\n"})])
        return Behaviour(f"report of {agent}", gate=gate)
    if turn == 0:
        return Behaviour(content="", tool_calls=[("agent__spawn", {"id": c, "instructions": f"write {c}.txt"})
                                                 for c in children])
    if turn <= len(children):
        return Behaviour(f"noted {turn - 1} reports", gate=gate)
    return Behaviour(f"report of {agent}", gate=gate)


def _may_answer(tree: Tree, key: Key, asked: set[Key]) -> bool:
    """The k-th child reports only once its parent has been asked with the k-1 reports before:
    one report per turn of the parent, as in every run."""
    agent, turn = key
    if agent in tree or turn == 0:
        return True
    parent, kids = next((p, kids) for p, kids in tree.items() if agent in kids)
    return (parent, kids.index(agent) + 1) in asked


class Team:
    """One conversation of ``tree`` on ``server``, across the runs (crashed and resumed) of one run dir."""

    def __init__(self, server: LLMServer, cwd: Path, tree: Tree) -> None:
        self.server, self.cwd, self.tree = server, cwd, tree
        self.gates: defaultdict[Key, threading.Event] = defaultdict(threading.Event)
        self.first = len(server.requests)
        server.reply_for = lambda request: _behaviour(tree, _key(request), self.gates[_key(request)])
        (cwd / "plan.yaml").write_text(_plan(server.url))

    @property
    def asked(self) -> set[Key]:
        return {_key(r) for r in self.server.requests[self.first:]}

    def run(self, *, resume: bool, holds: frozenset[Key] = frozenset(),
            kill_when: Callable[[Team], bool] | None = None) -> int:
        """Run (or resume) the plan, answering as :func:`_may_answer` allows and never what
        ``holds`` names; SIGKILL it from here once ``kill_when`` holds. Its exit code."""
        where = ("--resume", "run") if resume else ("--run-dir", "run")
        proc = start("run", "plan.yaml", "--no-ui", "--no-watch-plan", *where, cwd=self.cwd)
        try:
            deadline = time.monotonic() + 90
            while proc.poll() is None and time.monotonic() < deadline:
                asked = self.asked
                for key in asked - holds:
                    if _may_answer(self.tree, key, asked):
                        self.gates[key].set()
                if kill_when is not None and kill_when(self):
                    proc.send_signal(signal.SIGKILL)
                    break
                time.sleep(0.02)
            code = proc.wait(10)
            self.stderr = proc.stderr.read() if proc.stderr else ""
            assert code == (-signal.SIGKILL if kill_when is not None else 0), self.stderr
            return code
        finally:
            proc.kill()
            proc.wait()

    def _newest_checkpoint(self) -> dict[str, Any] | None:
        for path in sorted((self.cwd / "run" / "checkpoints").glob("ckpt-*.json"), reverse=True):
            try:
                return orjson.loads(path.read_bytes().partition(b"\n")[2])["run"]
            except (OSError, orjson.JSONDecodeError):
                continue  # replaced meanwhile
        return None

    def snapshot_children(self, agent: str) -> list[str] | None:
        """The live children the newest checkpoint's snapshot of ``agent`` names (None: no snapshot)."""
        run = self._newest_checkpoint() or {"journals": {}}
        snapshot = run["journals"].get(agent, {}).get("snapshot")
        return None if snapshot is None else [c["id"] for c in snapshot.get("children", ())]

    def ended_in_checkpoint(self, agent: str) -> bool:
        """Whether the newest checkpoint has ``agent`` ended."""
        run = self._newest_checkpoint() or {"agents": []}
        return any(a["id"] == agent and a["status"] == "done" for a in run["agents"])

    def quiet_with(self, asked: set[Key], **named: set[str]) -> bool:
        """Every call of ``asked`` has been made, and the newest checkpoint snapshots each
        agent of ``named`` with (at least) those live children."""
        if not asked <= self.asked:
            return False
        for agent, children in named.items():
            kept = self.snapshot_children(agent)
            if kept is None or not children <= set(kept):
                return False
        return True


def _outcome(team: Team) -> dict[str, Any]:
    """What a finished run left: files, the boss's result and its last request, the model calls."""
    evs = events(team.cwd / "run")
    last = next(r for r in reversed(team.server.requests) if _key(r)[0] == "boss")
    return {
        "files": {p.name: p.read_text() for p in sorted(team.cwd.glob("*.txt"))},
        "result": of(evs, "agent/done", "boss")[-1]["result"],
        "last_request": last.body["messages"],
        "llm_calls": len({e["call_id"] for e in evs if e["type"] == "llm/result"}),
    }


def _no_recorded_call_made_again(run_dir: Path) -> None:
    results: set[str] = set()
    for e in events(run_dir):
        if e["type"] in ("tool/result", "llm/result"):
            assert e["call_id"] not in results, f"{e['call_id']} has two results"
            results.add(e["call_id"])
        elif e["type"] in ("tool/requested", "llm/requested"):
            assert e["call_id"] not in results, f"{e['call_id']} was made again after its result"


@pytest.fixture(scope="module")
def server() -> Iterator[LLMServer]:
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(running_server()) as running:
        yield running


@pytest.fixture(scope="module")
def uncrashed(server: LLMServer, tmp_path_factory: pytest.TempPathFactory) -> Callable[[Tree], dict]:
    done: dict[str, dict[str, Any]] = {}

    def of_tree(tree: Tree) -> dict[str, Any]:
        key = repr(sorted(tree.items()))
        if key not in done:
            team = Team(server, tmp_path_factory.mktemp("uncrashed"), tree)
            assert team.run(resume=False) == 0
            done[key] = _outcome(team)
        return done[key]

    return of_tree


def _resumed_as_uncrashed(team: Team, uncrashed: dict[str, Any]) -> list[dict[str, Any]]:
    """Resume the run to its end: the same outcome as a run never killed. The boss's
    ``agent/resumed`` events."""
    assert team.run(resume=True) == 0
    got = _outcome(team)
    assert got["files"] == uncrashed["files"]
    assert got["result"] == uncrashed["result"]
    assert got["last_request"] == uncrashed["last_request"]  # system prompt (live children) included
    assert got["llm_calls"] == uncrashed["llm_calls"]
    _no_recorded_call_made_again(team.cwd / "run")
    return of(events(team.cwd / "run"), "agent/resumed", "boss")


def _restored(resumed: dict[str, Any]) -> None:
    """The boss came back from its snapshot: it replayed only what followed it, not its whole
    history (three spawns, the model's calls)."""
    assert resumed["snapshot"] is True
    assert resumed["replay"] <= 2


#: Kill points after a checkpoint that snapshots the boss with live children. Each holds
#: some model answers (``holds``) so the run is quiet when killed.
POINTS: dict[str, tuple[frozenset[Key], Callable[[Team], bool]]] = {
    # Every worker's last call in flight, none reported.
    "workers mid-call": (frozenset({("c1", 1), ("c2", 1), ("c3", 1)}),
                         lambda t: t.quiet_with({("boss", 1), ("c1", 1), ("c2", 1), ("c3", 1)}, boss={"c1", "c2", "c3"})),
    # c1 reported while the boss's call before was in flight: the boss has not read it, and
    # its snapshot (not taken again: it has not stepped since) still names c1, which ended.
    "report unread": (frozenset({("boss", 1), ("c2", 1), ("c3", 1)}),
                      lambda t: t.quiet_with({("boss", 1), ("c1", 1), ("c2", 1), ("c3", 1)}, boss={"c1", "c2", "c3"})
                      and t.ended_in_checkpoint("c1")),
    # c1 reported and the boss noted it; c2 and c3 mid-call.
    "after a report": (frozenset({("c2", 1), ("c3", 1)}),
                       lambda t: t.quiet_with({("boss", 2), ("c2", 1), ("c3", 1)}, boss={"c2", "c3"})),
    # c2 reported and the boss is asking its model about it (c3 still mid-call).
    "boss mid-call": (frozenset({("boss", 3), ("c3", 1)}),
                      lambda t: t.quiet_with({("boss", 3), ("c3", 1)}, boss={"c3"})),
}


@pytest.mark.parametrize("point", [pytest.param("workers mid-call", marks=pytest.mark.slow), "report unread",
                                   pytest.param("after a report", marks=pytest.mark.slow),
                                   pytest.param("boss mid-call", marks=pytest.mark.slow)])
def test_a_parent_with_live_children_resumes_from_its_snapshot_as_an_uncrashed_run(
    server: LLMServer, uncrashed: Callable, tmp_path: Path, point: str
) -> None:
    expected = uncrashed(TEAM)
    team = Team(server, tmp_path, TEAM)
    holds, kill_when = POINTS[point]
    team.run(resume=False, holds=holds, kill_when=kill_when)
    resumed = _resumed_as_uncrashed(team, expected)
    assert len(resumed) == 1
    _restored(resumed[0])
    # Its live children came back from their own journals, the others stayed ended.
    again = {e["agent_id"] for e in events(tmp_path / "run") if e["type"] == "agent/resumed"}
    live = {"workers mid-call": {"c1", "c2", "c3"}, "report unread": {"c2", "c3"}, "after a report": {"c2", "c3"},
            "boss mid-call": {"c3"}}[point]
    assert again - {"boss", "plan"} == live


@pytest.mark.slow
def test_a_double_crash_resumes_the_parent_from_a_snapshot_each_time(
    server: LLMServer, uncrashed: Callable, tmp_path: Path
) -> None:
    expected = uncrashed(TEAM)
    team = Team(server, tmp_path, TEAM)
    team.run(resume=False, holds=POINTS["workers mid-call"][0], kill_when=POINTS["workers mid-call"][1])
    # Killed again in the resume, once the resumed run's own checkpoint snapshots the boss.
    team.run(resume=True, holds=POINTS["after a report"][0], kill_when=POINTS["after a report"][1])
    resumed = _resumed_as_uncrashed(team, expected)
    assert len(resumed) == 2
    for each in resumed:
        _restored(each)


@pytest.mark.slow
def test_grandchildren_come_back_under_their_restored_parents(server: LLMServer, uncrashed: Callable,
                                                              tmp_path: Path) -> None:
    expected = uncrashed(DEEP)
    team = Team(server, tmp_path, DEEP)
    team.run(resume=False, holds=frozenset({("g1", 1)}),
             kill_when=lambda t: t.quiet_with({("c1", 1), ("g1", 1)}, boss={"c1"}, c1={"g1"}))
    resumed = _resumed_as_uncrashed(team, expected)
    _restored(resumed[0])
    c1 = of(events(tmp_path / "run"), "agent/resumed", "c1")
    assert [(e["snapshot"], e["parent_id"]) for e in c1] == [(True, "boss")]
    assert [e["parent_id"] for e in of(events(tmp_path / "run"), "agent/resumed", "g1")] == ["c1"]


def _rewrite_snapshots(run_dir: Path, agent: str, edit: Callable[[dict[str, Any]], None]) -> int:
    """Edit ``agent``'s snapshot in every checkpoint where it names children, keeping the
    checksum valid. How many."""
    edited = 0
    for path in sorted((run_dir / "checkpoints").glob("ckpt-*.json")):
        header, _, raw = path.read_bytes().partition(b"\n")
        body = orjson.loads(raw)
        snapshot = body["run"]["journals"].get(agent, {}).get("snapshot")
        if not (snapshot or {}).get("children"):
            continue
        edit(snapshot)
        data = orjson.dumps(body)
        meta = orjson.loads(header)
        meta["sha256"] = hashlib.sha256(data).hexdigest()
        path.write_bytes(orjson.dumps(meta) + b"\n" + data)
        edited += 1
    return edited


def _renamed(to: str) -> Callable[[dict[str, Any]], None]:
    def edit(snapshot: dict[str, Any]) -> None:
        snapshot["children"][0]["id"] = to
        snapshot["children"][0]["spec"]["id"] = to

    return edit


def _more_tools(snapshot: dict[str, Any]) -> None:
    snapshot["children"][0]["grant"]["tools"].append("shell/run")


def _more_restarts(snapshot: dict[str, Any]) -> None:
    snapshot["children"][0]["grant"]["supervise"]["max_restarts"] = 10**6


def _bad_strategy(snapshot: dict[str, Any]) -> None:
    snapshot["children"][0]["grant"]["supervise"]["strategy"] = "one_for_none"


def _bad_spec(snapshot: dict[str, Any]) -> None:
    snapshot["children"][0]["spec"] = {"id": "c2", "instructions": 3}


@pytest.mark.slow
@pytest.mark.parametrize(("edit", "why"), [
    (_renamed("ghost"), "it names a live child 'ghost' that the log does not have as its child"),
    (_renamed("plan"), "it names a live child 'plan' that the log does not have as its child"),  # the live root
    (_more_tools, "has a grant its parent may not give"),
    (_more_restarts, "has a grant its parent may not give (max_restarts 1000000 exceeds its parent's 3)"),
    (_bad_strategy, "has no grant that decodes (Invalid enum value 'one_for_none'"),
    (_bad_spec, "does not decode"),
], ids=["unknown", "another agent", "more tools", "more restarts", "bad strategy", "bad spec"])
def test_a_snapshot_naming_a_child_it_cannot_start_falls_back_to_the_full_replay(
    server: LLMServer, uncrashed: Callable, tmp_path: Path, edit: Callable, why: str
) -> None:
    expected = uncrashed(TEAM)
    team = Team(server, tmp_path, TEAM)
    team.run(resume=False, holds=POINTS["after a report"][0], kill_when=POINTS["after a report"][1])
    assert _rewrite_snapshots(tmp_path / "run", "boss", edit) >= 1
    resumed = _resumed_as_uncrashed(team, expected)
    assert [e["snapshot"] for e in resumed] == [False]
    warnings = [line for line in team.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, team.stderr
    assert warnings[0].startswith("warning: agent boss: the checkpoint's snapshot of its state cannot be used: ")
    assert why in warnings[0] and warnings[0].endswith("replaying its whole history from the log instead")
    assert "Traceback" not in team.stderr
