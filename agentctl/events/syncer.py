"""``fsync`` of the event log off the event loop, in a helper process.

Used by :class:`agentctl.events.log.EventLog` for its group commits. Why a process and not
``anyio.to_thread.run_sync(os.fsync, fd)``: after ``fsync`` returns, a worker thread must take
the GIL back before it can report, and a busy event loop gives it up and takes it again on
every turn (its ``epoll`` call), each time restarting the waiter's switch timer. With the loop
busy, a 0.2 ms ``fsync`` of 100 KB was seen to report 0.1-3.4 s late; the log's batches then
grow to most of the run (appending 1M events: 342k-671k events/s from run to run with the
thread, 664k-703k/s with the helper). A child process has an interpreter of its own; the
loop waits on a pipe. Idle, both take about 0.2 ms.

The child inherits the log's file descriptor (``fsync`` syncs the file, whoever wrote to it),
reads one byte per request and answers ``b"\\x00\\x00"``, or ``b"\\x01"`` and the errno. It
ignores SIGINT (Ctrl-C reaches the whole foreground process group; the run decides what
Ctrl-C means) and exits when its stdin closes, also when the parent dies. Where no child can
be started (not POSIX, or spawning failed) or it died, ``fsync`` runs in a worker thread.
"""

from __future__ import annotations

import os
import subprocess
import sys

import anyio
import anyio.abc

__all__ = ["Syncer"]

_CHILD = """\
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
fd = int(sys.argv[1])
requests, replies = sys.stdin.buffer.raw, sys.stdout.buffer.raw
while requests.read(1):
    try:
        os.fsync(fd)
        replies.write(b"\\x00\\x00")
    except OSError as exc:
        replies.write(bytes((1, exc.errno & 0xFF)))
"""


class Syncer:
    """``fsync`` one file descriptor without blocking the event loop.

    Args:
        fd: the open file to sync; it stays owned by the caller (close it after
            :meth:`aclose`).

    Calls to :meth:`sync` are serialised. Call :meth:`aclose` when done.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._process: anyio.abc.Process | None = None
        self._tried = False
        self._lock = anyio.Lock()

    @property
    def pid(self) -> int | None:
        """The helper process's pid, or ``None`` while syncs run in a worker thread."""
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        """Start the helper process now rather than at the first :meth:`sync` (idempotent)."""
        if self._tried:
            return
        self._tried = True
        if os.name != "posix":
            return
        try:
            self._process = await anyio.open_process(
                [sys.executable, "-I", "-S", "-c", _CHILD, str(self._fd)],
                pass_fds=(self._fd,),
                stderr=subprocess.DEVNULL,
            )
        except OSError:
            self._process = None  # the thread fallback is slower under load, never wrong

    async def sync(self) -> None:
        """Flush the file to disk; returns once ``fsync`` did.

        Not cancellable once started (like ``fsync`` in a thread): a half-finished exchange
        would pair the next request with this one's reply.

        Raises:
            OSError: ``fsync`` failed.
        """
        async with self._lock:
            await self.start()
            with anyio.CancelScope(shield=True):
                if self._process is not None and await self._sync_in_child(self._process):
                    return
                await anyio.to_thread.run_sync(os.fsync, self._fd)

    async def _sync_in_child(self, process: anyio.abc.Process) -> bool:
        """One request and its reply; False (and the child is dropped) if the child is gone."""
        assert process.stdin is not None and process.stdout is not None
        try:
            await process.stdin.send(b"s")
            reply = b""
            while len(reply) < 2:
                reply += await process.stdout.receive(2 - len(reply))
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            self._process = None
            await process.aclose()
            return False
        if reply[0]:
            raise OSError(reply[1], os.strerror(reply[1]))
        return True

    async def aclose(self) -> None:
        """Stop the helper process (it exits when its stdin closes)."""
        process, self._process = self._process, None
        if process is not None:
            with anyio.CancelScope(shield=True):
                await process.aclose()  # closes its pipes and waits; EOF on stdin ends the child
