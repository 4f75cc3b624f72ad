"""What commands that steer or read a run share: finding it, reading it, asking it.

Used by ``send``, ``stop``, ``approve``, ``deny``, ``watch``, ``ps``, ``logs``, ``describe`` and ``prune``. A request goes to
the run's control channel (:mod:`agentctl.cli.control`) found through the socket path its
log records; a run that has finished or whose process is gone is refused with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import AgentctlError
from ..views.runs import RunEnd, RunInfo, list_runs, process_alive, read_run, read_run_end
from .control import ControlError, NoReply, NotListening, request
from .errors import fail_usage, print_error
from .locate import RUNS, resolve_run

if TYPE_CHECKING:
    from ..events.run_state import RunState
    from ..views.approval_keys import Answer


def load_run(run_dir: Path) -> RunInfo:
    """Read a run directory's log; a missing or corrupt log is a usage error (exit 2)."""
    try:
        return read_run(run_dir)
    except AgentctlError as exc:
        fail_usage(str(exc))


def readable_runs(root: Path, *, finished: bool = True) -> list[RunInfo]:
    """The runs under ``root`` whose logs can be read, oldest first; each one that cannot
    is named on stderr and left out (one damaged run does not hide the others).

    ``finished=False`` leaves out the runs whose log ends with ``run/finished`` without
    reading more of them than their last lines.
    """
    infos = []
    for run_dir in list_runs(root):
        try:
            if not finished and _ends_finished(run_dir):
                continue
            infos.append(read_run(run_dir))
        except AgentctlError as exc:
            print_error(f"skipped {run_dir}: {exc}")
    return sorted(infos, key=lambda i: i.state.started_t or 0)


def finished_runs(root: Path) -> list[RunEnd]:
    """The runs under ``root`` whose log ends with ``run/finished``, each read from the end
    of its log only; each log whose end cannot be read is named on stderr and left out."""
    ends = []
    for run_dir in list_runs(root):
        try:
            end = read_run_end(run_dir)
        except AgentctlError as exc:
            print_error(f"skipped {run_dir}: {exc}")
            continue
        if end.finished is not None:
            ends.append(end)
    return ends


def steered_run(run: Path | None) -> RunInfo:
    """The run ``send``, ``stop``, ``approve`` and ``deny`` act on: the one given (a run
    directory or id), which must be live; else the newest live run under ``.agentctl/runs``,
    so that a run that finished since does not hide one still going. Without a live one:
    why the newest unfinished one cannot be reached (its process is gone: how to resume it),
    else that the newest run has finished.
    """
    if run is not None:
        return live_run(resolve_run(run))
    dead, found = None, list_runs(RUNS)
    if not found:
        fail_usage(f"no runs under {RUNS}; pass a run directory")
    for run_dir in reversed(found):
        try:
            if _ends_finished(run_dir):
                continue
            info = read_run(run_dir)
        except AgentctlError:
            continue  # a damaged log is not a run to steer; ps names it
        why = not_live(info)
        if why is None:
            return info
        if info.finished is None:
            dead = dead or why
    if dead is not None:
        fail_usage(dead)
    newest = load_run(found[-1])
    fail_usage(f"no running run under {RUNS}; the newest, {newest.state.run_id or newest.dir.name}, "
               f"has finished ({newest.finished.reason if newest.finished else 'unreadable'})")


def _ends_finished(run_dir: Path) -> bool:
    """Whether the run's log ends with ``run/finished`` (always its last event): a finished
    run is told without reading its whole log.

    Raises:
        LogError: the log's end cannot be read.
    """
    return read_run_end(run_dir).finished is not None


def unknown_agent(run_dir: Path, agent: str) -> NoReturn:
    """Refuse an agent id the run's log does not have, naming the nearest ones it has (or all, when few)."""
    from difflib import get_close_matches

    ids = sorted(load_run(run_dir).state.agents)
    near = get_close_matches(agent, ids, n=3, cutoff=0.6)
    if near:
        hint = f"; did you mean {' or '.join(repr(a) for a in near)}?"
    elif ids:
        hint = f"; its agents: {', '.join(ids[:_LISTED])}" + (f" and {len(ids) - _LISTED} more" if len(ids) > _LISTED else "")
    else:
        hint = "; it has no agents yet"
    fail_usage(f"no agent {agent!r} in the run in {run_dir}{hint}")


#: How many agent ids a refusal lists, at most.
_LISTED = 8


def live_run(run_dir: Path) -> RunInfo:
    """A run that can still be steered: logged no ``run/finished`` and its process is alive."""
    info = load_run(run_dir)
    why = not_live(info)
    if why is not None:
        fail_usage(why)
    return info


def not_live(info: RunInfo) -> str | None:
    """Why the run cannot be steered (finished, its process gone, no control channel), or None."""
    run_id = info.state.run_id or info.dir.name
    if info.finished is not None:
        return f"run {run_id} has finished ({info.finished.reason}); nothing there to reach"
    if not info.alive:
        return (f"run {run_id}: its process (pid {info.pid}) is gone without run/finished; "
                f"continue it with: agentctl run --resume {info.dir}")
    if info.control is None:
        return f"run {run_id} has no control channel (started by an older agentctl)"
    return None


def ask_run(info: RunInfo, message: dict[str, Any], *, startup: float = 10.0,
            settled: Callable[[RunState], str] | None = None) -> dict[str, Any]:
    """Send one request to a live run and return its successful reply; a refusal is exit 2.

    A run binds its socket once its runtime is up: while its process lives, a socket not
    listening yet is retried for up to ``startup`` seconds. A process that dies while it
    handles the request (no reply) is exit 2 too, saying so, what came of the request
    (``settled``: what the log, read again, says of it) and how to resume the run.
    """
    deadline = time.monotonic() + startup
    while True:
        try:
            reply = request(Path(str(info.control)), message)
            break
        except NotListening as exc:
            if time.monotonic() > deadline or info.pid is None or not process_alive(info.pid):
                fail_usage(str(exc))
            time.sleep(0.05)
        except NoReply as exc:
            fail_usage(_unanswered(info, exc, settled))
        except ControlError as exc:
            fail_usage(str(exc))
    if not reply.get("ok"):
        fail_usage(str(reply.get("error") or f"the run refused {message.get('op')!r}"))
    return reply


#: Seconds a request without a reply waits for the run's process to be gone (a killed
#: process closes its sockets before it is dead).
_DYING = 2.0


def _unanswered(info: RunInfo, exc: NoReply, settled: Callable[[RunState], str] | None) -> str:
    """Why a request got no reply: the run's process died handling it (then what its log
    says came of the request), else the channel's own error."""
    deadline = time.monotonic() + _DYING
    while info.pid is not None and process_alive(info.pid):
        if time.monotonic() > deadline:
            return str(exc)
        time.sleep(0.02)
    outcome = f"; {settled(load_run(info.dir).state)}" if settled is not None else ""
    return (f"run {info.state.run_id or info.dir.name}: its process (pid {info.pid}) died before it answered"
            f"{outcome}; continue it with: agentctl run --resume {info.dir}")


def answer_request(call_id: str, granted: bool, text: str | None) -> dict[str, Any]:
    """The control channel's request that approves (``text``: a note) or denies (a reason) a call."""
    if granted:
        return {"op": "approve", "call_id": call_id, "note": text}
    return {"op": "deny", "call_id": call_id, "reason": text}


def control_answer(state: RunState) -> Answer:
    """What answers a held call from ``agentctl watch``'s keys: the request ``approve`` and
    ``deny`` send, to the socket ``state`` (the watched run, folded as it grows) names now.

    Blocking, as the keys are pressed: the run replies once the answer is logged, and a run
    that does not within 5 s gets its error shown on the panel instead.
    """
    def answer(call_id: str, granted: bool, text: str | None) -> str | None:
        if state.control is None:
            return "the run has not opened its control channel yet"
        try:
            reply = request(Path(state.control), answer_request(call_id, granted, text), timeout=5)
        except ControlError as exc:
            return str(exc)
        return None if reply.get("ok") else str(reply.get("error") or "refused by the run")

    return answer
