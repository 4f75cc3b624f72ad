"""What commands that steer or read a run share: finding it, reading it, asking it.

Used by ``send``, ``stop``, ``ps``, ``logs``, ``describe`` and ``prune``. A request goes to
the run's control channel (:mod:`agentctl.cli.control`) found through the socket path its
log records; a run that has finished or whose process is gone is refused with the reason.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..errors import AgentctlError
from ..views.runs import RunInfo, list_runs, process_alive, read_run
from .control import ControlError, NotListening, request
from .errors import fail_usage, print_error


def load_run(run_dir: Path) -> RunInfo:
    """Read a run directory's log; a missing or corrupt log is a usage error (exit 2)."""
    try:
        return read_run(run_dir)
    except AgentctlError as exc:
        fail_usage(str(exc))


def readable_runs(root: Path) -> list[RunInfo]:
    """The runs under ``root`` whose logs can be read, oldest first; each one that cannot
    is named on stderr and left out (one damaged run does not hide the others)."""
    infos = []
    for run_dir in list_runs(root):
        try:
            infos.append(read_run(run_dir))
        except AgentctlError as exc:
            print_error(f"skipped {run_dir}: {exc}")
    return sorted(infos, key=lambda i: i.state.started_t or 0)


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


def ask_run(info: RunInfo, message: dict[str, Any], *, startup: float = 10.0) -> dict[str, Any]:
    """Send one request to a live run and return its successful reply; a refusal is exit 2.

    A run binds its socket once its runtime is up: while its process lives, a socket not
    listening yet is retried for up to ``startup`` seconds.
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
        except ControlError as exc:
            fail_usage(str(exc))
    if not reply.get("ok"):
        fail_usage(str(reply.get("error") or f"the run refused {message.get('op')!r}"))
    return reply
