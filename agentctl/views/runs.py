"""Runs as their logs tell them: what ``agentctl ps``, ``logs``, ``send``, ``stop`` and ``prune`` read.

Everything here comes from a run's ``events.jsonl`` (the fold, plus the ``pid`` and the
``control`` socket path that ``run/started`` and ``run/resumed`` record) and from asking the
operating system whether that pid is still alive. Nothing here touches a running process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentctl.errors import LogError
from agentctl.events.check import blame_the_log, first_misfit
from agentctl.events.fold import RunState, fold
from agentctl.events.outcomes import Finished
from agentctl.events.reader import last_event, read_events, read_run_events
from agentctl.events.types import RunFinished

__all__ = ["EXIT_DEAD", "RunEnd", "RunInfo", "exit_code", "list_runs", "process_alive", "read_run", "read_run_end", "run_phase"]

#: The exit code of ``watch`` / ``logs -f`` for a run whose process died without ``run/finished``.
EXIT_DEAD = 1


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One run directory, as of the last event on disk.

    Attributes:
        dir: the run directory.
        pid: the process of the latest start or resume (None in logs that do not say).
        control: the control socket path that process serves (None in older logs).
        state: the fold of the whole log (no journals).
    """

    dir: Path
    pid: int | None
    control: str | None
    state: RunState

    @property
    def finished(self) -> Finished | None:
        """How the run finished (its ``run/finished``), None while it has not."""
        return self.state.finished

    @property
    def alive(self) -> bool:
        """Whether the run has not finished and its process still exists."""
        return self.finished is None and self.pid is not None and process_alive(self.pid)

    @property
    def duration_ms(self) -> int | None:
        """From the first event to the last one on disk."""
        s = self.state
        return None if s.started_t is None or s.last_t is None else s.last_t - s.started_t


def read_run(run_dir: Path) -> RunInfo:
    """Fold a run directory's log and note the process and channel it records.

    Raises:
        LogError: no log there, or a corrupt line in it, or (:class:`~agentctl.errors.CorruptLogError`) an
            event whose fields do not fit its definition where the fold or these views trip on it.
    """
    path = read_run_events(run_dir)
    with blame_the_log(path):
        state = fold(read_events(path), journals=False)
    _check_fields(state, path)
    return RunInfo(Path(run_dir), state.pid, state.control, state)


@dataclass(frozen=True, slots=True)
class RunEnd:
    """One run directory as the last event of its log tells it, read from the end of the
    file (:func:`~agentctl.events.reader.last_event`): whether and how the run finished and
    when it last logged, at the same cost whatever the log's length.

    ``run/finished`` is always a run's last event (a resume logs ``run/resumed`` after it),
    so a log that ends with one is of a finished run, as its fold would say.

    Attributes:
        dir: the run directory.
        event: its log's last event (None: the log has none).
    """

    dir: Path
    event: dict[str, Any] | None

    @property
    def finished(self) -> Finished | None:
        """How the run finished (its ``run/finished``), None while it has not."""
        e = self.event
        if e is None or e.get("type") != "run/finished":
            return None
        return Finished(e.get("reason"), e.get("status"))

    @property
    def run_id(self) -> str | None:
        """The run id its last event names."""
        found = None if self.event is None else self.event.get("run_id")
        return found if isinstance(found, str) else None

    @property
    def last_t(self) -> int | None:
        """When it logged its last event (ms since the epoch)."""
        t = None if self.event is None else self.event.get("t")
        return t if type(t) is int else None


def read_run_end(run_dir: Path) -> RunEnd:
    """Read a run directory's last event from the end of its log.

    Raises:
        LogError: no log there, or (:class:`~agentctl.errors.CorruptLogError`) its last
            line, torn lines aside, is not a JSON object.
    """
    path = read_run_events(run_dir)
    end = RunEnd(Path(run_dir), last_event(path))
    if end.finished is not None:
        for name in ("reason", "status"):
            value = getattr(end.finished, name)
            if value is not None and type(value) is not str:
                raise first_misfit(path) or LogError(f"{path}: the run's {name} is {type(value).__name__} {value!r:.40}")
    return end


#: What the run views read from a run's fold as it came from the log, with its type (and
#: the reason and status of its run/finished: strings).
_FIELDS = {"run_id": (str,), "plan_name": (str,), "plan_file": (str,), "started_t": (int,), "last_t": (int,),
           "pid": (int,), "control": (str,)}


def _check_fields(state: RunState, path: Path) -> None:
    """Name the event to blame if a field the run views show has a type no log of agentctl
    gives it (the fold copies these from events as they are)."""
    finished = state.finished
    values = {name: getattr(state, name) for name in _FIELDS}
    if finished is not None:
        values.update(reason=finished.reason, status=finished.status)
    for name, value in values.items():
        if value is not None and type(value) not in _FIELDS.get(name, (str,)):
            raise first_misfit(path) or LogError(f"{path}: the run's {name} is {type(value).__name__} {value!r:.40}")


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists and has not exited (one of another user counts).

    An exited process its parent has not reaped yet (a zombie) is not alive. A pid of 0 or
    below (which ``kill`` takes for a process group, or for every process) or one too large
    for ``kill`` names no process: a log that records one is damaged, its run not alive.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return True  # no procfs: the signal check is all there is
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] not in (b"Z", b"X")


def run_phase(info: RunInfo) -> str:
    """``running``, ``dead`` (gone without ``run/finished``) or how it finished (``ok``, ``failed``, ``stopped``)."""
    if info.finished is None:
        return "running" if info.alive else "dead"
    return str(info.finished.status or "finished")


def exit_code(finished: Finished | RunFinished | None) -> int:
    """The exit code ``agentctl run`` ended with, from its ``run/finished`` fields.

    0 when every task finished ok, 130 when it was interrupted or stopped, 1 otherwise
    (and for a run that never logged ``run/finished``).
    """
    if finished is None:
        return EXIT_DEAD
    if finished.reason in ("interrupted", "stopped"):
        return 130
    return 0 if finished.status == "ok" else 1


def list_runs(root: Path) -> list[Path]:
    """Run directories under ``root`` (those with an ``events.jsonl``), sorted by name."""
    try:
        return sorted(d for d in Path(root).iterdir() if (d / "events.jsonl").is_file())
    except (FileNotFoundError, NotADirectoryError):
        return []
