"""The event log's writer: the loop that appends queued events in group commits, and durability.

A part that :class:`agentctl.events.log.EventLog` owns: ``emit`` puts encoded lines on the
writer's queue (:attr:`Writer.pending`) and wakes it; :func:`~agentctl.events.log.open_event_log`
runs :meth:`Writer.run` in a task (through the log) and closes it with :meth:`Writer.aclose`,
and callers that need write-ahead wait on :meth:`Writer.flushed`.

``emit`` queues each event as an encoded line; the writer takes everything queued at once
and appends it with one ``write``. Durability follows ``docs/events.md``:

* ``none``: write to the OS, never ``fsync``.
* ``batch``: ``fsync`` each batch off the event loop (:mod:`agentctl.events.syncer`), so
  that events emitted meanwhile gather into the next batch (group commit: many
  :meth:`Writer.flushed` waiters share one ``fsync``).
* ``always``: ``fsync`` after every event (slow by design).

Backpressure: an agent that emits faster than the writer writes would pile encoded lines up
in memory (orjson's buffers are ~4 KB each, whatever the line's length). Producers ask
:meth:`EventLog.behind <agentctl.events.log.EventLog.behind>` (more than :data:`HIGH_WATER` bytes pending) and, if so, wait in
:meth:`Writer.caught_up` until the writer has taken the backlog; the runtime's scheduler
does so between agents' turns, so memory stays bounded whatever the flood.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Literal

import anyio
import anyio.abc
import anyio.lowlevel

from agentctl.errors import LogError, UsageError
from agentctl.events.logfile import open_log_file, write_all
from agentctl.events.syncer import Syncer

__all__ = ["HIGH_WATER", "Durability", "Writer"]

#: Encoded bytes pending for the running writer above which producers wait (``EventLog.behind``).
HIGH_WATER = 256 * 1024

Durability = Literal["none", "batch", "always"]
_DURABILITIES = ("none", "batch", "always")


class Writer:
    """Commits the events ``emit`` queued to the file, and closes it.

    ``emit`` is the producer: while :attr:`accepting`, it appends each encoded line to
    :attr:`pending` (adding its length to :attr:`pending_bytes`) and calls :meth:`wake_up`
    if the writer is :attr:`idle`. The counters (:attr:`written`, :attr:`batches`,
    :attr:`fsyncs`, :attr:`bytes_written`, :attr:`throttled`, :attr:`throttled_s`) feed the
    log's statistics. ``path`` and ``run_id`` name the log in errors.
    """

    def __init__(self, path: Path | None, run_id: str, durability: Durability, max_batch: int, start_seq: int) -> None:
        if durability not in _DURABILITIES:
            raise UsageError(f"durability must be one of {_DURABILITIES}, not {durability!r}")
        if max_batch < 1:
            raise UsageError("max_batch must be at least 1")
        self._path = path
        self._run_id = run_id
        self.durability: Durability = durability
        self._max_batch = max_batch
        self._file_seq = start_seq - 1  # every seq up to this one is in the file
        self._durable_seq = start_seq - 1  # ... and synced, per durability
        # Encoded lines, in seq order: pending[i] is event file_seq + 1 + i. Bytes rather
        # than dicts: a batch of thousands of live dicts makes the cyclic GC rescan them
        # (a third of the append rate), and the line is fixed the moment it is emitted.
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        #: False once the log is closing or a write failed: ``emit`` must then raise :meth:`unusable`.
        self.accepting = True
        #: Whether the writer loop sleeps until :meth:`wake_up`.
        self.idle = False
        self._taken = anyio.Event()  # set and replaced each time the writer takes the backlog
        self.throttled = 0
        self.throttled_s = 0.0
        self._wake = anyio.Event()
        #: Whether the writer loop (:meth:`run`) is running.
        self.running = False
        self._writer_done = anyio.Event()
        self._progress = anyio.Event()  # set and replaced after each commit
        self._drain_lock = anyio.Lock()
        self._closing = False
        self._closed = False
        self._error: LogError | None = None
        self.written = 0
        self.batches = 0
        self.fsyncs = 0
        self.bytes_written = 0
        self._fd: int | None = None
        if path is not None:
            self._fd = open_log_file(path)
        self._syncer = Syncer(self._fd) if self._fd is not None and durability != "none" else None

    def wake_up(self) -> None:
        """Tell the idle writer loop that lines are pending."""
        self.idle = False
        self._wake.set()

    def unusable(self) -> LogError:
        """The error for a producer of a log that is closed or failed."""
        if self._error is not None:
            return LogError(f"event log {self._path} failed earlier: {self._error}")
        return LogError(f"event log for run {self._run_id} is closed")

    async def flushed(self, seq: int) -> None:
        """Wait until emitted event ``seq`` is written and synced (see :meth:`EventLog.flushed`).

        Raises:
            LogError: writing failed before the event reached the file.
        """
        while self._durable_seq < seq:
            if self._error is not None:
                raise self.unusable()
            if self._closed:
                return
            if not self.running:
                # Nobody runs the writer loop (a log used without `run`): drain inline.
                await self._drain()
                continue
            await self._progress.wait()

    async def caught_up(self) -> None:
        """Wait until the writer has taken the backlog (or stopped); counted in the statistics."""
        start = time.perf_counter()
        self.throttled += 1
        while self.pending_bytes > HIGH_WATER and self.running and self._error is None:
            await self._taken.wait()
        self.throttled_s += time.perf_counter() - start

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The writer loop: commit queued events until the log is closed or fails.

        Start it in a task group (``await tg.start(log.run)``); :func:`~agentctl.events.log.open_event_log`
        does this. It returns when :meth:`aclose` is called or a write fails (the failure
        then reaches ``emit`` and ``flushed`` callers as :class:`LogError`).
        """
        if self.running:
            raise UsageError("the writer loop is already running")
        self.running = True
        self._writer_done = anyio.Event()
        if self._syncer is not None:
            await self._syncer.start()  # its interpreter boots while the run starts up
        task_status.started()
        try:
            while not self._closing and self._error is None:
                if not self.pending:
                    self._wake = anyio.Event()
                    self.idle = True
                    await self._wake.wait()
                    continue
                await self._drain()
        finally:
            self.idle = False
            self.running = False
            self._writer_done.set()
            self._progress.set()  # waiters re-check: they may need to drain themselves
            self._taken.set()  # and producers stop waiting for it

    async def _drain(self) -> None:
        """Commit everything queued now as one group commit (one write, one fsync)."""
        async with self._drain_lock:
            batch, self.pending, self.pending_bytes = self.pending, [], 0
            self._taken.set()
            self._taken = anyio.Event()
            before = self._file_seq
            if self._error is not None:
                return
            try:
                if batch:
                    if self.durability == "always" and self._fd is not None:
                        await self._commit_each(batch)
                    else:
                        await self._commit_group(batch)
                    self.batches += 1
                if self._file_seq > self._durable_seq:  # written but not yet synced
                    await self._fsync()
                    self._mark_durable(self._file_seq)
            except OSError as exc:
                self._error = LogError(f"cannot write event log {self._path}: {exc}")
                self.accepting = False
            except BaseException:
                # Cancelled mid-batch: queue again, in order, what did not reach the file so
                # that aclose (or the next drain) writes it exactly once.
                unwritten = batch[self._file_seq - before :]
                self.pending = unwritten + self.pending
                self.pending_bytes += sum(map(len, unwritten))
                raise
            finally:
                self._progress.set()
                self._progress = anyio.Event()

    async def _commit_group(self, batch: list[bytes]) -> None:
        step = self._max_batch
        for start in range(0, len(batch), step):
            if start:
                await anyio.lowlevel.checkpoint()  # let the loop breathe between chunks
            chunk = batch[start : start + step]
            if self._fd is not None:
                data = b"".join(chunk)
                write_all(self._fd, data)
                self.bytes_written += len(data)
            self._file_seq += len(chunk)
            if self.durability == "none" or self._fd is None:
                self._mark_durable(self._file_seq)

    async def _commit_each(self, batch: list[bytes]) -> None:
        assert self._fd is not None
        for data in batch:
            write_all(self._fd, data)
            self.bytes_written += len(data)
            self._file_seq += 1
            await self._fsync()
            self._mark_durable(self._file_seq)
            self._progress.set()  # release this event's waiters before the next fsync
            self._progress = anyio.Event()

    def _mark_durable(self, seq: int) -> None:
        self.written += seq - self._durable_seq
        self._durable_seq = seq

    async def _fsync(self) -> None:
        assert self._syncer is not None
        # The loop keeps running while the disk syncs; events emitted meanwhile form the next batch.
        await self._syncer.sync()
        self.fsyncs += 1

    async def aclose(self) -> None:
        """Write and sync everything pending, stop the writer loop and close the file.

        Emitting afterwards raises :class:`LogError`. Calling it again does nothing.

        Raises:
            LogError: the log could not be written (now or earlier); events were lost.
        """
        if self._closed:
            return
        self._closing = True
        self.accepting = False
        try:
            await self._drain()
            if self.running:
                self._wake.set()
                await self._writer_done.wait()
            await self._drain()  # whatever a cancelled writer put back
        finally:
            self._closed = True
            if self._syncer is not None:
                await self._syncer.aclose()
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._progress.set()
        if self._error is not None:
            raise self.unusable()
