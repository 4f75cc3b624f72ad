"""What ``agentctl run --resume RUN_DIR`` starts from: the dead run's state and journals.

Invoked from :mod:`agentctl.cli.session`. Loads the newest valid checkpoint (if any) that
belongs to this run and is not past the log's end, and folds the events after it into the
run state and the live agents' journals, checking the log as it goes
(:mod:`agentctl.events.integrity`): a damaged log is refused with its line number unless
``force`` is given, and then each problem is a warning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from ..errors import AgentctlError, LogError
from ..events.checkpoint import load_checkpoint
from ..events.fold import RunState, fold
from ..events.integrity import OnDamage, check_events, line_of_event, raise_damage
from ..events.journal import Journal, Journals
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
        warnings: what was odd but did not stop the resume (a checkpoint skipped, log
            damage accepted with ``force``), one line each.
    """

    run_id: str
    state: RunState
    journals: Journals
    last_seq: int
    torn_line: int | None
    checkpoint: int | None
    applied: Plan | None
    version: int
    warnings: list[str] = field(default_factory=list)


def recorded_workspace(run_dir: Path) -> Path | None:
    """The workspace the run was started with (its ``run/started`` event), if recorded."""
    for event in read_events(Path(run_dir) / "events.jsonl"):
        if event.get("type") == "run/started" and event.get("workspace"):
            return Path(event["workspace"])
        break
    return None


def load_resumed(run_dir: Path, *, force: bool = False) -> Resumed | None:
    """Read a run directory for resume: None if the run died before its first event was
    on disk (it starts afresh there).

    Raises:
        LogError: there is no log at all.
        CorruptLogError: the log is damaged (a bad line, a seq gap, a duplicate or
            backward seq, another run's event, a result for a call with no open request);
            with ``force`` only a line that is not JSON still raises.
    """
    path = Path(run_dir) / "events.jsonl"
    if not path.exists():
        raise LogError(f"{run_dir}: no events.jsonl to resume from")
    warnings: list[str] = []
    first_run_id, last_seq = _ends(path)
    ckpt = load_checkpoint(run_dir, max_seq=last_seq, run_id=first_run_id, skipped=warnings)
    state = ckpt.state if ckpt else RunState()
    start = ckpt.seq + 1 if ckpt else 0
    stream = read_events(path, start_seq=start)
    on_damage: OnDamage = raise_damage(path, start_seq=start)
    if force:
        def on_damage(index: int, what: str) -> None:
            warnings.append(f"{path}:{line_of_event(path, index, start_seq=start)}: {what} (resumed anyway: --force)")
    fold(check_events(stream, on_damage, run_id=first_run_id, after_seq=ckpt.seq if ckpt else 0,
                      pending=state.pending_calls), state=state)
    if state.run_id is None:
        return None
    applied, version = last_applied_plan(run_dir)
    return Resumed(state.run_id, state, state.journals, state.last_seq, stream.torn_line,
                   ckpt.seq if ckpt else None, applied, version, warnings)


def journal_from_log(run_dir: Path, until_seq: int) -> Callable[[str], Journal | None]:
    """An agent's whole journal, folded from the log's start to ``until_seq`` (on first
    use, once): what resume replays for an agent whose snapshot cannot be used (None when
    the log cannot be read again)."""
    folded: list[Journals] = []

    def journal(agent_id: str) -> Journal | None:
        if not folded:
            try:
                folded.append(fold(read_events(Path(run_dir) / "events.jsonl"), until_seq=until_seq).journals)
            except (OSError, AgentctlError):
                return None
        return folded[0].get(agent_id)

    return journal


def _ends(path: Path) -> tuple[str | None, int | None]:
    """The run id of the log's first event and the seq of its last complete one (cheap: the
    file's two ends only)."""
    first = None
    for event in read_events(path):
        first = event.get("run_id")
        break
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(0, size - (1 << 16)))
        lines = f.read().split(b"\n")
    for line in reversed(lines[1:] if size > (1 << 16) else lines):
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(event, dict) and isinstance(event.get("seq"), int):
            return first, event["seq"]
    return first, None
