"""Checkpoints: compact snapshots of the fold, so resume need not read the whole log.

Invoked from the CLI session (:class:`Checkpointer`, fed every event) and from resume
(:func:`load_checkpoint`). A checkpoint holds the :class:`~agentctl.events.fold.RunState`
(journals of live agents included) as of event ``seq``; it is written only
once that event is on disk, atomically (temp file, fsync, rename, fsync of the
directory), so a crash leaves either the old checkpoint or the new one, never half of one.
Resume takes the newest checkpoint that parses, matches its checksum and is not ahead of
the log, and folds the events after it.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import orjson

from ..redact import Redactor
from .fold import RunState, apply

DIR = "checkpoints"
KEEP = 2


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A loaded checkpoint: the state as of event ``seq``."""

    seq: int
    state: RunState
    path: Path


_ENDED = ("done", "failed", "stopped")


def _snapshot(state: RunState) -> dict[str, Any]:
    run = state.to_dict()
    # Resume needs the live agents, the tasks (depth <= 1, finished or not), locks and
    # journals. Finished agents deeper down and the recent events are for views, which
    # fold the log itself; dropping them keeps a checkpoint's size, and so resume time,
    # independent of how long the run has been going.
    # A child a live agent's snapshot names is kept too: resume tells by its record that it
    # ended (and stays ended) rather than that the snapshot names an agent the run never had.
    named = _named_children(state)
    kept = [a for a in run["agents"] if a["depth"] <= 1 or a["status"] not in _ENDED or a["id"] in named]
    ids = {a["id"] for a in kept}
    for agent in kept:
        agent["children"] = [c for c in agent["children"] if c in ids]
    run["agents"] = kept
    run["recent"] = []
    return {"run": run}


def _named_children(state: RunState) -> set[str]:
    """The ids of the children that live agents' snapshots name (a damaged snapshot names none)."""
    named: set[str] = set()
    for journal in state.journals.by_agent.values():
        children = journal.snapshot.get("children") if isinstance(journal.snapshot, dict) else None
        if isinstance(children, list):
            named.update(c["id"] for c in children if isinstance(c, dict) and isinstance(c.get("id"), str))
    return named


def _encode(seq: int, snapshot: dict[str, Any] | bytes) -> bytes:
    body = snapshot if isinstance(snapshot, bytes) else orjson.dumps(snapshot)
    digest = hashlib.sha256(body).hexdigest()
    return orjson.dumps({"version": 1, "seq": seq, "sha256": digest}) + b"\n" + body


def write_checkpoint(run_dir: Path, seq: int, snapshot: dict[str, Any] | bytes) -> Path:
    """Write a checkpoint for event ``seq`` atomically; keep the newest ``KEEP``."""
    folder = Path(run_dir) / DIR
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"ckpt-{seq:012d}.json"
    tmp = folder / f".{final.name}.tmp"
    data = _encode(seq, snapshot)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    for old in sorted(folder.glob("ckpt-*.json"))[:-KEEP]:
        old.unlink(missing_ok=True)
    return final


def _read(path: Path) -> Checkpoint | str:
    """The checkpoint at ``path``, or why it cannot be used."""
    try:
        raw = path.read_bytes()
        header, _, body = raw.partition(b"\n")
        meta = orjson.loads(header)
        if hashlib.sha256(body).hexdigest() != meta["sha256"]:
            return "its checksum does not match"
        snap = orjson.loads(body)
        return Checkpoint(int(meta["seq"]), RunState.from_dict(snap["run"]), path)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"is not a checkpoint ({type(exc).__name__})"


def load_checkpoint(
    run_dir: Path, *, max_seq: int | None = None, run_id: str | None = None, skipped: list[str] | None = None
) -> Checkpoint | None:
    """The newest usable checkpoint: valid, of run ``run_id`` and not past ``max_seq`` (the
    log's last event on disk). Each one passed over is described in ``skipped``: resume
    then falls back to an older one, or to the log from its start."""
    folder = Path(run_dir) / DIR
    try:
        paths = sorted(folder.glob("ckpt-*.json"), reverse=True) if folder.is_dir() else []
    except OSError:
        paths = []
    for path in paths:
        found = _read(path)
        why = found if isinstance(found, str) else _unusable(found, max_seq, run_id)
        if why is None:
            return found  # type: ignore[return-value]
        if skipped is not None:
            skipped.append(f"checkpoint {path} skipped: {why}; reading the log instead")
    return None


def _unusable(ckpt: Checkpoint, max_seq: int | None, run_id: str | None) -> str | None:
    if ckpt.state.run_id is None:
        return "it holds no run"
    if run_id is not None and ckpt.state.run_id != run_id:
        return f"it is of run {ckpt.state.run_id}, not {run_id}"
    if ckpt.seq != ckpt.state.last_seq:
        return f"its seq {ckpt.seq} does not match its state's ({ckpt.state.last_seq})"
    if max_seq is not None and ckpt.seq > max_seq:
        return f"it is at seq {ckpt.seq}, past the log's last event ({max_seq})"
    return None


class Checkpointer:
    """Folds every event it is fed and writes a checkpoint every N events or T seconds.

    Args:
        run_dir: where ``checkpoints/`` goes.
        durable: awaited with a ``seq`` before a checkpoint of it is written (the log's
            ``flushed``): a checkpoint is never ahead of the log on disk.
        every_events, every_seconds: how often.
        state: where to continue from (resume).
        redactor: hides the run's secrets in the agents' snapshots, as the log does in
            events (the rest of a checkpoint is folded from events already redacted).

    Attributes:
        snapshots: the runtime's snapshots of live agents' states
            (:meth:`agentctl.runtime.runtime.Runtime.snapshots`), taken with each
            checkpoint: each stands for its agent's journal so far, so the checkpoint, and
            resume, cost what agents did since, not their whole history.
    """

    def __init__(
        self,
        run_dir: Path,
        durable: Callable[[int], Awaitable[None]],
        *,
        every_events: int = 10_000,
        every_seconds: float = 30.0,
        state: RunState | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.durable = durable
        self.every_events = every_events
        self.every_seconds = every_seconds
        self.state = state or RunState()
        self.written = 0
        self.failed = 0
        self.last_error: str | None = None
        self._since = 0
        self._last_time = time.monotonic()
        self._due = anyio.Event()
        self.snapshots: Callable[[], dict[str, dict[str, Any]]] | None = None
        self.redactor = redactor

    def feed(self, event: dict[str, Any]) -> None:
        """Fold one event (a log subscriber)."""
        apply(self.state, event)
        self._since += 1
        if self._since >= self.every_events:
            self._due.set()

    async def run(self) -> None:
        """Write checkpoints when due, until cancelled."""
        while True:
            with anyio.move_on_after(self.every_seconds):
                await self._due.wait()
            if self._since:
                await self.checkpoint()

    async def checkpoint(self) -> Path | None:
        """Write a checkpoint of the state as of the last event fed."""
        seq = self.state.last_seq
        if self.snapshots is not None:
            # Taken at the same point of the log as the state: nothing runs in between.
            journals = self.state.journals
            for agent_id, taken in self.snapshots().items():
                journal = journals.get(agent_id)
                if journal is None:
                    continue
                try:
                    # A resumed agent gets what replay would hand it: what the log holds.
                    journal.rebase(self.redactor.event(orjson.dumps(taken)) if self.redactor is not None
                                   else orjson.loads(orjson.dumps(taken)))
                except TypeError:
                    continue  # not JSON (orjson's error is one): the journal stays whole
        # Encoded now: the snapshot shares the state's lists (journals), which go on growing
        # while this waits for the log; a later effect in a checkpoint of an earlier seq is
        # folded twice on resume, and the agent's replay never ends.
        snapshot = orjson.dumps(_snapshot(self.state))
        self._since = 0
        self._due = anyio.Event()
        await self.durable(seq)
        try:
            path = await anyio.to_thread.run_sync(write_checkpoint, self.run_dir, seq, snapshot)
        except OSError as exc:
            # A checkpoint only saves resume time: the log has everything, so the run goes on.
            self.failed += 1
            self.last_error = f"cannot write a checkpoint in {self.run_dir / DIR}: {exc}"
            return None
        self.written += 1
        return path
