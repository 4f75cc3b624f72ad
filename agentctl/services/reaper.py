"""A cluster worker's reaper: when the worker dies, the processes its tool calls started die too.

Started once per Ray worker process by :mod:`agentctl.services.ray_plane` (``python -m
agentctl.services.reaper TOKEN``), in a session of its own, with a pipe from the worker
on its stdin; it forks and its first process exits, so it is no child of the worker. The worker puts ``TOKEN`` in its environment, so every process a tool call
starts carries it (``shell/run`` starts its command in a new session, which the worker's
death alone would not end). When the pipe closes (the worker exited, was killed by
``ray.cancel(force=True)`` on a timeout, or crashed), the reaper kills every process of
this user whose environment holds the token, and exits. Linux only (``/proc``); elsewhere
it only waits.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

__all__ = ["ENV", "marked", "reap"]

#: The environment variable that marks a worker's descendants.
ENV = "AGENTCTL_REAP"


def marked(token: str) -> list[int]:
    """Pids of this user's processes (but this one) whose environment holds ``ENV=token``."""
    needle = f"{ENV}={token}".encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours
            continue
        if needle in environ:
            found.append(int(entry.name))
    return found


def reap(token: str, *, rounds: int = 3) -> int:
    """Kill every process marked with ``token``; a few rounds, for children forked meanwhile. Returns how many."""
    killed = 0
    for _ in range(rounds):
        pids = marked(token)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
        if not pids:
            break
        time.sleep(0.05)
    return killed


def main(argv: list[str]) -> int:
    """Leave the worker's children, wait for its pipe to close, then reap."""
    token = argv[1]
    # Ray kills a worker's direct children when it exits: the reaper must not be one.
    if os.fork() > 0:
        return 0
    while sys.stdin.buffer.read(4096):
        pass
    if Path("/proc/self/environ").exists():
        reap(token)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
