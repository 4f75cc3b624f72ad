"""Journals: what each live agent did and received since it last started, from events.

A second reducer beside :class:`~agentctl.events.fold.RunState`, kept with it in
checkpoints and used only by crash resume (:mod:`agentctl.runtime.recovery`): an agent
that was mid-task when the process died is started again and its step function is
replayed against its journal, so it reaches its last recorded state without redoing a
single recorded tool or LLM call (the way Temporal replays a workflow's history).

A journal starts at the agent's ``agent/spawned`` or ``agent/restarted`` event and is
dropped when the agent ends for good, so its size is bounded by live agents' histories.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..policy import CONSUMABLE


@dataclass(slots=True)
class Journal:
    """One agent's history since its latest start.

    Attributes:
        effects: its actions' recorded outcomes in order, each a dict with ``op``
            (``send``, ``spawn``, ``tool``, ``llm``, ``lock`` and ``unlock``: a lock its
            steps took or gave back, with ``count``, the holds left, unless the log predates
            it) and the outcome's fields.
        inbox: messages delivered to it, in order (the fields of ``agent/message``; ``step``:
            the steps it had taken when the message came, 0 in a log older than that field;
            one that came while a resume replayed its past was held back until the replay
            was over, and ``agent/replayed`` sets its ``step`` to the steps taken by then;
            until that is logged, it is marked ``held`` and its ``step`` means nothing).
    """

    effects: list[dict[str, Any]] = field(default_factory=list)
    inbox: list[dict[str, Any]] = field(default_factory=list)
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: When the agent was first spawned (the logged ``t``, ms), kept across its restarts as
    #: its ``max_seconds`` deadline is: resume counts the deadline from it.
    started_t: int | None = None
    #: When this start of the agent was (the logged ``t``, ms): its replayed steps' clock
    #: starts there, and each outcome's ``t`` moves it on (see ``Agent.clock_t``).
    began_t: int | None = None
    #: The agent's state as the runtime took it at a checkpoint (``agentctl.runtime.snapshots``),
    #: standing for every outcome and message before it: ``effects`` and ``inbox`` then hold
    #: only what came after (and the call it was waiting for). ``locks``: the locks its steps
    #: held then, ``{path: [mode, count]}``.
    snapshot: dict[str, Any] | None = None
    #: What its children that ended since its latest start (or since its snapshot, which
    #: counts those before) used, charged to it (``budget/charged``), in log order, after what
    #: it had used before its latest restart (``agent/restarted``): each with ``step`` and
    #: ``after``, the number of its effects logged before it, so that a resume charges it
    #: again where it was charged the first time.
    charges: list[dict[str, Any]] = field(default_factory=list)
    #: When it restarted a child of its own (the logged ``t``, ms): those still within its
    #: ``restart_period`` as of its latest restart, which a resume counts against its
    #: ``max_restarts`` again. A snapshot stands for none of them.
    restarts: list[int] = field(default_factory=list)
    #: A resume replays its past now (from ``agent/resumed`` to ``agent/replayed``): the
    #: messages that come meanwhile are held back until it is over.
    replaying: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for checkpoints (calls are shared with ``effects``)."""
        d: dict[str, Any] = {"effects": self.effects, "inbox": self.inbox, "started_t": self.started_t, "began_t": self.began_t}
        if self.snapshot is not None:
            d["snapshot"] = self.snapshot
        if self.charges:
            d["charges"] = self.charges
        if self.restarts:
            d["restarts"] = self.restarts
        if self.replaying:
            d["replaying"] = True
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Journal:
        """The inverse of :meth:`to_dict`."""
        journal = cls(list(d.get("effects", ())), list(d.get("inbox", ())), started_t=d.get("started_t"),
                      began_t=d.get("began_t"), snapshot=d.get("snapshot"), charges=list(d.get("charges", ())),
                      restarts=list(d.get("restarts", ())), replaying=bool(d.get("replaying")))
        journal.calls = {e["call_id"]: e for e in journal.effects if e["op"] in ("tool", "llm")}
        return journal

    def held_locks(self) -> dict[str, tuple[str, int]]:
        """The locks the agent's steps held at the end of the journal: mode and hold count,
        each acquire counting one up and each unlock one down (an unlock logged without
        its ``count``, in an older log, was one that freed the lock)."""
        return self._holds(self.effects)

    def _holds(self, effects: list[dict[str, Any]]) -> dict[str, tuple[str, int]]:
        base = (self.snapshot or {}).get("locks") or {}
        held: dict[str, tuple[str, int]] = {path: (str(mode), int(count)) for path, (mode, count) in base.items()}
        for effect in effects:
            op, path = effect["op"], effect["path"] if effect["op"] in ("lock", "unlock") else ""
            count = held[path][1] if path in held else 0
            if op == "lock":
                held[path] = (effect.get("mode") or "write", count + 1)  # an acquire logs the hold's mode
            elif op == "unlock" and "count" in effect and count > 1:
                held[path] = (held[path][0], count - 1)
            elif op == "unlock":
                held.pop(path, None)
        return held

    def take_calls(self, other: Journal) -> None:
        """Use ``other``'s record of every call both journals hold: ``other`` is the one
        resume folded and checked interrupted calls in, this one the same agent's journal
        folded again from the log (which does not have those checks yet)."""
        if not other.calls:
            return
        self.effects = [other.calls.get(e["call_id"], e) if "call_id" in e else e for e in self.effects]
        self.calls = {e["call_id"]: e for e in self.effects if e["op"] in ("tool", "llm")}

    def rebase(self, snapshot: dict[str, Any]) -> bool:
        """Let ``snapshot`` (the agent's state now, with ``turns``, the steps it has taken,
        and ``logged``, the kinds of outcome its actions under way have had logged, in
        order) stand for what the journal holds, keeping only those outcomes (a resume
        carries the actions out again, and hands them back) and the messages it has not
        read. False (and nothing changed) when the journal does not agree: its last effects
        are not those, a call before them is still open, or one of them is an LLM call
        already answered (its tokens are in the snapshot's count)."""
        logged = [str(op) for op in snapshot.get("logged") or ()]
        cut = len(self.effects) - len(logged)
        if cut < 0:
            return False
        before, kept = self.effects[:cut], self.effects[cut:]
        if ([e["op"] for e in kept] != logged or any(e.get("done") is False for e in before)
                or any(e["op"] == "llm" and e["done"] for e in kept)):
            return False
        turns = int(snapshot.get("turns") or 0)
        snapshot["locks"] = {path: [mode, count] for path, (mode, count) in self._holds(before).items()}
        self.effects = kept
        self.calls = {e["call_id"]: e for e in kept if "call_id" in e}
        # Those it has not read (none is held: no snapshot is taken while it replays).
        self.inbox = [m for m in self.inbox if int(m.get("step") or 0) >= turns]
        self.charges = []  # the snapshot's counts hold them
        self.snapshot = snapshot
        return True


class Journals:
    """Journals of every live agent, by agent id.

    Kept up to date by the fold (:data:`HANDLERS`, through
    :data:`agentctl.events.fold.WITH_JOURNALS`).
    """

    __slots__ = ("by_agent",)

    def __init__(self, by_agent: dict[str, Journal] | None = None) -> None:
        self.by_agent: dict[str, Journal] = by_agent or {}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Journals) and self.by_agent == other.by_agent

    __hash__ = None  # type: ignore[assignment]

    def get(self, agent_id: str) -> Journal | None:
        """The journal of ``agent_id``, if it is live."""
        return self.by_agent.get(agent_id)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for checkpoints."""
        return {aid: j.to_dict() for aid, j in self.by_agent.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Journals:
        """The inverse of :meth:`to_dict`."""
        return cls({aid: Journal.from_dict(j) for aid, j in d.items()})


JournalHandler = Callable[[dict[str, "Journal"], dict[str, Any]], None]


def _start(by: dict[str, Journal], e: dict[str, Any]) -> None:
    restarted = e["type"] == "agent/restarted"
    before = by.get(e["agent_id"]) if restarted else None
    journal = by[e["agent_id"]] = Journal(started_t=before.started_t if before is not None else e.get("t"),
                                          began_t=e.get("t"))
    if restarted:
        # What it used before the restart counts on: charged again before its first step.
        journal.charges.append(_charge(e, e["agent_id"], step=0, after=0))
    parent = by.get(e.get("parent_id") or "") if e["type"] == "agent/spawned" else None
    if parent is not None:
        spawn = {"op": "spawn", "child_id": e["agent_id"], "ok": True, "t": e.get("t")}
        budget = e.get("budget")
        if isinstance(budget, dict) and any(budget.get(name) is not None for name in CONSUMABLE):
            spawn["budget"] = budget  # what it set aside for the child: again if a resume replays it
        parent.effects.append(spawn)


def _restarted(by: dict[str, Journal], e: dict[str, Any]) -> None:
    _start(by, e)
    supervisor = by.get(e.get("parent_id") or "")
    # One restart of the supervisor's count per exit: a group restart logs one event per
    # child restarted, and the offender is always among them.
    if supervisor is not None and e.get("offender") == e["agent_id"] and isinstance(e.get("t"), int):
        # ``restarts``: how many were within its period, this one included; older ones stay out.
        supervisor.restarts = [*supervisor.restarts, e["t"]][-max(1, int(e.get("restarts") or 1)):]


def _end(by: dict[str, Journal], e: dict[str, Any]) -> None:
    # Agents stopped by a shutdown (Ctrl-C, SIGTERM) were mid-task: resume continues them.
    if e["type"] != "agent/stopped" or e.get("reason") != "shutdown":
        by.pop(e.get("agent_id"), None)  # type: ignore[arg-type]


def _message(by: dict[str, Journal], e: dict[str, Any]) -> None:
    # Literal dicts, not comprehensions: this runs for every message of a replay.
    get = e.get
    delivered = get("delivered")
    # A runtime signal (an end report, a notice) is the runtime's doing, not a send of its sender's step.
    sender = None if get("signal") else by.get(get("from"))  # type: ignore[arg-type]
    if sender is not None:
        sender.effects.append({"op": "send", "ok": bool(delivered), "via": get("via"), "msg_id": get("msg_id"),
                               "to": get("to"), "t": get("t")})
    if delivered:
        owner = by.get(get("agent_id"))  # type: ignore[arg-type]
        if owner is not None:
            m = {"msg_id": get("msg_id"), "from": get("from"), "to": get("to"), "kind": get("kind"),
                 "thread_id": get("thread_id"), "body": get("body"), "t": get("t"), "via": get("via"),
                 "signal": bool(get("signal")), "step": get("step") or 0}
            if owner.replaying:
                m["held"] = True  # its step is the one its replay ends at (agent/replayed)
            owner.inbox.append(m)


def _resumed(by: dict[str, Journal], e: dict[str, Any]) -> None:
    journal = by.get(e.get("agent_id"))  # type: ignore[arg-type]
    if journal is not None and e.get("held"):  # a log written before held nothing back
        journal.replaying = True


def _replayed(by: dict[str, Journal], e: dict[str, Any]) -> None:
    journal = by.get(e.get("agent_id"))  # type: ignore[arg-type]
    if journal is None:
        return
    journal.replaying = False
    inbox, step = journal.inbox, e.get("step") or 0
    i = len(inbox)
    while i and "held" in inbox[i - 1]:  # they came last
        i -= 1
        inbox[i] = {**{k: v for k, v in inbox[i].items() if k != "held"}, "step": step}  # its next step read them


def _denied(by: dict[str, Journal], e: dict[str, Any]) -> None:
    sender = by.get(e.get("from"))  # type: ignore[arg-type]
    if sender is not None:
        sender.effects.append({"op": "send", "ok": False, "error": e.get("reason"), "to": e.get("to"), "t": e.get("t")})


def _refused(by: dict[str, Journal], e: dict[str, Any]) -> None:
    parent = by.get(e.get("agent_id"))  # type: ignore[arg-type]
    if parent is not None:
        parent.effects.append({"op": "spawn", "child_id": e.get("child_id"), "ok": False, "error": e.get("error"),
                               "t": e.get("t")})


def _charged(by: dict[str, Journal], e: dict[str, Any]) -> None:
    journal = by.get(e.get("agent_id"))  # type: ignore[arg-type]
    if journal is not None:
        journal.charges.append(_charge(e, e.get("child_id"), step=e.get("step") or 0, after=len(journal.effects)))


def _charge(e: dict[str, Any], child_id: Any, *, step: int, after: int) -> dict[str, Any]:
    """A charge record (:attr:`Journal.charges`) of the use that event ``e`` logs."""
    return {"child_id": child_id, "steps": e.get("steps") or 0, "tool_calls": e.get("tool_calls") or 0,
            "tokens": e.get("tokens") or 0, "step": step, "after": after}


def _locked(by: dict[str, Journal], e: dict[str, Any]) -> None:
    # Only its steps' acquires are replayed: a tool's hold of the path it writes, or a
    # lock a resume gave back, is not one of them.
    journal = by.get(e.get("agent_id"))  # type: ignore[arg-type]
    if journal is not None and e.get("by") == "step":
        journal.effects.append({"op": "lock", "path": e.get("path"), "mode": e.get("mode"), "t": e.get("t")})


def _unlocked(by: dict[str, Journal], e: dict[str, Any]) -> None:
    journal = by.get(e.get("agent_id"))  # type: ignore[arg-type]
    if journal is not None and e.get("by") == "step" and e.get("reason") == "release":
        effect = {"op": "unlock", "path": e.get("path"), "t": e.get("t")}
        if "count" in e:
            # Every unlock is logged with the holds left; a log without ``count`` logged only
            # those that freed the lock.
            effect["count"] = e["count"]
        journal.effects.append(effect)


def _requested(op: str) -> Callable[[dict[str, Journal], dict[str, Any]], None]:
    def handler(by: dict[str, Journal], e: dict[str, Any]) -> None:
        journal = by.get(e.get("agent_id"))  # type: ignore[arg-type]
        if journal is None:
            return
        held = journal.calls.get(e["call_id"])
        if held is not None:
            # A granted call now runs: from here on it is an ordinary call.
            if held.pop("approval", None) is not None:
                held["arguments"] = e.get("arguments")
            return
        effect = {"op": op, "call_id": e["call_id"], "name": e.get("tool"), "done": False, "t": e.get("t")}
        if op == "tool":
            effect["arguments"] = e.get("arguments")  # for a recover check; dropped with the result
        journal.effects.append(effect)
        journal.calls[e["call_id"]] = effect

    return handler


def _approval_requested(by: dict[str, Journal], e: dict[str, Any]) -> None:
    """A held call is the agent's next tool call: on resume it is held again, not asked anew."""
    journal = by.get(e.get("agent_id"))  # type: ignore[arg-type]
    if journal is None or e["call_id"] in journal.calls:
        return
    effect = {"op": "tool", "call_id": e["call_id"], "name": e.get("tool"), "done": False, "approval": "pending",
              "t": e.get("t")}
    journal.effects.append(effect)
    journal.calls[e["call_id"]] = effect


def _approval_answered(by: dict[str, Journal], e: dict[str, Any]) -> None:
    """Granted: it runs once replay reaches it. Denied: that is its outcome (``denied``: by, reason)."""
    effect = _pending(by, e)
    if effect is None or "approval" not in effect:
        return
    if e["type"] == "approval/granted":
        effect["approval"] = "granted"
        return
    _settle(effect, False, None, None, 0, e.get("t"))
    effect.pop("approval", None)
    effect["denied"] = {"by": e.get("by"), "reason": e.get("reason")}


def _pending(by: dict[str, Journal], e: dict[str, Any]) -> dict[str, Any] | None:
    journal = by.get(e.get("agent_id"))  # type: ignore[arg-type]
    effect = journal.calls.get(e["call_id"]) if journal is not None else None
    return None if effect is None or effect["done"] else effect


def _prepared(by: dict[str, Journal], e: dict[str, Any]) -> None:
    effect = _pending(by, e)
    if effect is not None:
        effect["record"] = e.get("record")
        effect.pop("verdict", None)  # a rerun that got this far: check it afresh


def _recovered(by: dict[str, Journal], e: dict[str, Any]) -> None:
    """Resume's check of an interrupted call: applied (its outcome), not applied (run it
    again) or unknown (the agent is told it was interrupted)."""
    effect = _pending(by, e)
    if effect is None:
        return
    applied = e.get("applied")
    if applied:
        _settle(effect, True, None, e.get("result"), 0, None)
    else:
        effect["verdict"] = "rerun" if applied is False else "unknown"


def _result(by: dict[str, Journal], e: dict[str, Any]) -> None:
    journal = by.get(e.get("agent_id"))  # type: ignore[arg-type]
    effect = journal.calls.get(e["call_id"]) if journal is not None else None
    # A call cut short by a shutdown has no real outcome: resume treats it as interrupted.
    # A recorded outcome is final: a second result never replaces it (the log check
    # refuses such a log before resume folds it).
    if effect is None or effect["done"] or e.get("error_type") == "cancelled":
        return
    _settle(effect, bool(e.get("ok")), e.get("error"), e.get("result") if e["type"] == "tool/result" else e.get("reply"),
            int(e.get("prompt_tokens") or 0) + int(e.get("completion_tokens") or 0), e.get("t"))
    if e.get("error_type") == "interrupted":
        effect["interrupted"] = True  # its worker was lost: replayed as it was told live


def _settle(effect: dict[str, Any], ok: bool, error: Any, value: Any, tokens: int, t: int | None) -> None:
    """Record a call's outcome; ``t``: when the agent got it (None: a resume's check found
    it applied, and the time of its request stays the best one known)."""
    if t is not None:
        effect["t"] = t
    effect["done"] = True
    effect["ok"] = ok
    effect["error"] = error
    effect["value"] = value
    effect["tokens"] = tokens
    for spent in ("arguments", "record", "verdict"):
        effect.pop(spent, None)


#: The journal's reducer per event type, on a dict of journals by agent id (the fold calls
#: these directly, beside the state's reducers).
HANDLERS: Mapping[str | None, JournalHandler] = MappingProxyType({
    "agent/spawned": _start,
    "agent/restarted": _restarted,
    "agent/done": _end,
    "agent/error": _end,
    "agent/stopped": _end,
    "agent/message": _message,
    "agent/resumed": _resumed,
    "agent/replayed": _replayed,
    "bus/denied": _denied,
    "budget/charged": _charged,
    "lock/acquired": _locked,
    "lock/released": _unlocked,
    "policy/refused": _refused,
    "tool/requested": _requested("tool"),
    "llm/requested": _requested("llm"),
    "tool/result": _result,
    "tool/prepared": _prepared,
    "tool/recovered": _recovered,
    "llm/result": _result,
    "approval/requested": _approval_requested,
    "approval/granted": _approval_answered,
    "approval/denied": _approval_answered,
})
