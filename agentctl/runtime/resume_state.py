"""What a resumed run carries of the run that died: its journals, and per agent the recorded
outcomes not yet handed back and messages not yet delivered again.

Built by ``agentctl resume`` (``cli/session.py``: :class:`ResumeContext`) and by the
supervision tree (:mod:`agentctl.runtime.tree`: a :class:`Replay` for each agent it starts
again from a journal); consumed by crash recovery (:mod:`agentctl.runtime.recovery`). A
value of its own so that the agent record, the tree and recovery share it without importing
each other.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..events.journal import Journal, Journals
from ..services.bus import Inbox, Message

#: The kinds of recorded outcome (a journal effect's ``op``), one queue each.
OPS = ("send", "spawn", "tool", "llm", "lock", "unlock")


@dataclass(frozen=True, slots=True)
class ResumeContext:
    """What a resumed run knows of the run that died.

    Attributes:
        journals: journals of the agents that were live (the locks their steps held are
            in them too).
        full_journal: an agent's whole journal, folded from the log's start: replayed
            instead when the snapshot a checkpoint kept of it cannot be used.
        warn: where a resume says what was odd but did not stop it.
        parents: the parent of every agent the log knows, live or ended (None: a root): a
            child a snapshot names is one only if the log has it under that parent, and if it
            has no journal, it ended after the snapshot.
    """

    journals: Journals
    full_journal: Callable[[str], Journal | None] | None = None
    parents: Mapping[str, str | None] = field(default_factory=dict)
    warn: Callable[[str], None] = lambda text: print(f"warning: {text}", file=sys.stderr)


class Replay:
    """One agent's journal, consumed action by action and step by step.

    Attributes:
        queues: the recorded outcomes not yet handed back, per kind of action.
        mail: the recorded messages not yet delivered again, each with the steps the
            agent had taken when it came: it is delivered once the replay has taken as
            many, so the step after that one reads it, as the first time.
        held: the messages that came while an earlier resume replayed this same past, and
            that its steps had not yet read when that process died (``held`` in the
            journal): they came after all of it, and are held back again until the replay is over.
    """

    __slots__ = ("_at", "held", "mail", "queues")

    def __init__(self, journal: Journal) -> None:
        self.queues: dict[str, deque[dict[str, Any]]] = {op: deque() for op in OPS}
        for effect in journal.effects:
            self.queues[effect["op"]].append(effect)
        self.mail = deque((int(m.get("step") or 0), recorded_message(m)) for m in journal.inbox if "held" not in m)
        self.held = [recorded_message(m) for m in journal.inbox if "held" in m]
        # Where each outcome is in the journal, for the charges logged between them (none: not needed).
        self._at = {id(e): i for i, e in enumerate(journal.effects)} if journal.charges else {}

    def index(self, effect: dict[str, Any]) -> int:
        """Where ``effect`` (one of its outcomes) is in the journal's order."""
        return self._at[id(effect)]

    @property
    def finished(self) -> bool:
        """Whether every recorded outcome has been handed back and every message delivered."""
        return not self.mail and not any(self.queues.values())

    def deliver(self, inbox: Inbox) -> int | None:
        """Put into ``inbox`` the messages that came by its owner's ``inbox.steps``-th step;
        the ``t`` of the last one (None: none came)."""
        mail, steps = self.mail, inbox.steps
        last = None
        while mail and mail[0][0] <= steps:
            msg = mail.popleft()[1]
            inbox.put_nowait(msg)
            last = msg.t
        return last


def recorded_message(m: dict[str, Any]) -> Message:
    """A journal's message (the fields of its ``agent/message``) as it landed in the inbox."""
    return Message(str(m["msg_id"]), str(m["from"]), str(m["to"]), str(m["kind"]), m.get("body"), m.get("thread_id"),
                   int(m.get("t") or 0), m.get("via"), bool(m.get("signal")))
