"""What ``agentctl run --resume RUN_DIR`` starts from: the dead run's state and journals.

Invoked from :mod:`agentctl.cli.session`. Loads the newest valid checkpoint (if any) and
folds the events after it into the run state and the live agents' journals.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import LogError
from ..events.checkpoint import load_checkpoint
from ..events.fold import RunState, fold
from ..events.journal import Journals
from ..events.reader import read_events
from ..plan.model import Plan
from ..reconcile.states import last_applied_plan


@dataclass
class Resumed:
    """A dead run, as far as its files tell.

    Attributes:
        state: the fold of its events; journals: its live agents' journals (part of it).
        last_seq: its last event on disk.
        torn_line: the line number of a torn last line, if any.
        checkpoint: the seq of the checkpoint used, if any.
        applied, version: the last plan version it applied.
    """

    run_id: str
    state: RunState
    journals: Journals
    last_seq: int
    torn_line: int | None
    checkpoint: int | None
    applied: Plan | None
    version: int


def recorded_workspace(run_dir: Path) -> Path | None:
    """The workspace the run was started with (its ``run/started`` event), if recorded."""
    for event in read_events(Path(run_dir) / "events.jsonl"):
        if event.get("type") == "run/started" and event.get("workspace"):
            return Path(event["workspace"])
        break
    return None


def load_resumed(run_dir: Path) -> Resumed | None:
    """Read a run directory for resume: None if the run died before its first event was
    on disk (it starts afresh there); ``LogError`` if there is no log at all."""
    path = Path(run_dir) / "events.jsonl"
    if not path.exists():
        raise LogError(f"{run_dir}: no events.jsonl to resume from")
    ckpt = load_checkpoint(run_dir)
    state = ckpt.state if ckpt else RunState()
    stream = read_events(path, start_seq=ckpt.seq + 1 if ckpt else 0)
    fold(stream, state=state)
    if state.run_id is None:
        return None
    applied, version = last_applied_plan(run_dir)
    return Resumed(state.run_id, state, state.journals, state.last_seq, stream.torn_line,
                   ckpt.seq if ckpt else None, applied, version)
