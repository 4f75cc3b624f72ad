"""What a resumed run carries of the run that died: its journals, and per agent the recorded
outcomes not yet handed back.

Built by ``agentctl resume`` (``cli/session.py``: :class:`ResumeContext`) and by the
supervision tree (:mod:`agentctl.runtime.tree`: a :class:`Replay` for each agent it starts
again from a journal); consumed by crash recovery (:mod:`agentctl.runtime.recovery`). A
value of its own so that the agent record, the tree and recovery share it without importing
each other.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from ..events.journal import Journal, Journals

#: The kinds of recorded outcome (a journal effect's ``op``), one queue each.
OPS = ("send", "spawn", "tool", "llm", "lock", "unlock")


@dataclass(frozen=True, slots=True)
class ResumeContext:
    """What a resumed run knows of the run that died.

    Attributes:
        journals: journals of the agents that were live (the locks their steps held are
            in them too).
    """

    journals: Journals


class Replay:
    """One agent's journal, consumed action by action.

    Attributes:
        queues: the recorded outcomes not yet handed back, per kind of action.
    """

    __slots__ = ("queues",)

    def __init__(self, journal: Journal) -> None:
        self.queues: dict[str, deque[dict[str, Any]]] = {op: deque() for op in OPS}
        for effect in journal.effects:
            self.queues[effect["op"]].append(effect)

    @property
    def finished(self) -> bool:
        """Whether every recorded outcome has been handed back."""
        return not any(self.queues.values())
