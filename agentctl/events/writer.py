"""The event log's writer: the loop that appends queued events in group commits, and durability.

Part of :class:`agentctl.events.log.EventLog` (a base class of it, so that ``emit`` on the
hot path reads the queue and the writer's flags directly); :func:`~agentctl.events.log.open_event_log`
runs :meth:`Writer.run` in a task and closes the log with :meth:`Writer.aclose`, and callers
that need write-ahead wait on :meth:`Writer.flushed`.

``emit`` queues each event as an encoded line; the writer takes everything queued at once
and appends it with one ``write``. Durability follows ``docs/events.md``:

* ``none``: write to the OS, never ``fsync``.
* ``batch``: ``fsync`` each batch off the event loop (:mod:`agentctl.events.syncer`), so
  that events emitted meanwhile gather into the next batch (group commit: many
  :meth:`Writer.flushed` waiters share one ``fsync``).
* ``always``: ``fsync`` after every event (slow by design).

Backpressure: an agent that emits faster than the writer writes would pile encoded lines up
in memory (orjson's buffers are ~4 KB each, whatever the line's length). Producers ask
:meth:`Writer.behind` (more than ``high_water`` bytes pending) and, if so, wait in
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

#: Encoded bytes pending for the writer above which producers wait (:meth:`Writer.behind`).
HIGH_WATER = 256 * 1024

Durability = Literal["none", "batch", "always"]
_DURABILITIES = ("none", "batch", "always")


class Writer:
    """Commits the events ``emit`` queued to the file, and closes it.

    Relies on the rest of the log for ``_path``, ``_run_id`` and ``last_seq``.
    """

    def _init_writer(self, path: Path | None, durability: Durability, max_batch: int, start_seq: int) -> None:
        if durability not in _DURABILITIES:
            raise UsageError(f"durability must be one of {_DURABILITIES}, not {durability!r}")
        if max_batch < 1:
            raise UsageError("max_batch must be at least 1")
        self._durability: Durability = durability
        self._max_batch = max_batch
        self._file_seq = start_seq - 1  # every seq up to this one is in the file
        self._durable_seq = start_seq - 1  # ... and synced, per durability
        # Encoded lines, in seq order: pending[i] is event file_seq + 1 + i. Bytes rather
        # than dicts: a batch of thousands of live dicts makes the cyclic GC rescan them
        # (a third of the append rate), and the line is fixed the moment it is emitted.
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._taken = anyio.Event()  # set and replaced each time the writer takes the backlog
        self._throttled = 0
        self._throttled_s = 0.0
        self._wake = anyio.Event()
        self._writer_waiting = False
        self._writer_running = False
        self._writer_done = anyio.Event()
        self._progress = anyio.Event()  # set and replaced after each commit
        self._drain_lock = anyio.Lock()
        self._closing = False
        self._closed = False
        self._error: LogError | None = None
        self._written = 0
        self._batches = 0
        self._fsyncs = 0
        self._bytes = 0
        self._fd: int | None = None
        if path is not None:
            self._fd = open_log_file(path)
        self._syncer = Syncer(self._fd) if self._fd is not None and durability != "none" else None

    def _unusable(self) -> LogError:
        if self._error is not None:
            return LogError(f"event log {self._path} failed earlier: {self._error}")
        return LogError(f"event log for run {self._run_id} is closed")

    async def flushed(self, seq: int | None = None) -> None:
        """Wait until event ``seq`` (default: the last emitted) is written and synced.

        "Synced" follows the durability: fsynced for ``batch`` and ``always``, handed to
        the OS for ``none``. Returns at once for a closed log (closing flushes everything).

        Raises:
            LogError: writing failed before the event reached the file.
            ValueError: ``seq`` was never emitted.
        """
        if seq is None:
            seq = self.last_seq
        if seq > self.last_seq:
            raise UsageError(f"seq {seq} has not been emitted (last is {self.last_seq})")
        while self._durable_seq < seq:
            if self._error is not None:
                raise self._unusable()
            if self._closed:
                return
            if not self._writer_running:
                # Nobody runs the writer loop (a log used without `run`): drain inline.
                await self._drain()
                continue
            await self._progress.wait()

    def behind(self) -> bool:
        """Whether producers should wait: more than :data:`HIGH_WATER` bytes pending for a running writer."""
        return self._pending_bytes > HIGH_WATER and self._writer_running

    async def caught_up(self) -> None:
        """Wait until the writer has taken the backlog (or stopped); counted in the statistics."""
        start = time.perf_counter()
        self._throttled += 1
        while self._pending_bytes > HIGH_WATER and self._writer_running and self._error is None:
            await self._taken.wait()
        self._throttled_s += time.perf_counter() - start

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The writer loop: commit queued events until the log is closed or fails.

        Start it in a task group (``await tg.start(log.run)``); :func:`~agentctl.events.log.open_event_log`
        does this. It returns when :meth:`aclose` is called or a write fails (the failure
        then reaches ``emit`` and ``flushed`` callers as :class:`LogError`).
        """
        if self._writer_running:
            raise UsageError("the writer loop is already running")
        self._writer_running = True
        self._writer_done = anyio.Event()
        if self._syncer is not None:
            await self._syncer.start()  # its interpreter boots while the run starts up
        task_status.started()
        try:
            while not self._closing and self._error is None:
                if not self._pending:
                    self._wake = anyio.Event()
                    self._writer_waiting = True
                    await self._wake.wait()
                    continue
                await self._drain()
        finally:
            self._writer_waiting = False
            self._writer_running = False
            self._writer_done.set()
            self._progress.set()  # waiters re-check: they may need to drain themselves
            self._taken.set()  # and producers stop waiting for it

    async def _drain(self) -> None:
        """Commit everything queued now as one group commit (one write, one fsync)."""
        async with self._drain_lock:
            batch, self._pending, self._pending_bytes = self._pending, [], 0
            self._taken.set()
            self._taken = anyio.Event()
            before = self._file_seq
            if self._error is not None:
                return
            try:
                if batch:
                    if self._durability == "always" and self._fd is not None:
                        await self._commit_each(batch)
                    else:
                        await self._commit_group(batch)
                    self._batches += 1
                if self._file_seq > self._durable_seq:  # written but not yet synced
                    await self._fsync()
                    self._mark_durable(self._file_seq)
            except OSError as exc:
                self._error = LogError(f"cannot write event log {self._path}: {exc}")
            except BaseException:
                # Cancelled mid-batch: queue again, in order, what did not reach the file so
                # that aclose (or the next drain) writes it exactly once.
                unwritten = batch[self._file_seq - before :]
                self._pending = unwritten + self._pending
                self._pending_bytes += sum(map(len, unwritten))
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
                self._bytes += len(data)
            self._file_seq += len(chunk)
            if self._durability == "none" or self._fd is None:
                self._mark_durable(self._file_seq)

    async def _commit_each(self, batch: list[bytes]) -> None:
        assert self._fd is not None
        for data in batch:
            write_all(self._fd, data)
            self._bytes += len(data)
            self._file_seq += 1
            await self._fsync()
            self._mark_durable(self._file_seq)
            self._progress.set()  # release this event's waiters before the next fsync
            self._progress = anyio.Event()

    def _mark_durable(self, seq: int) -> None:
        self._written += seq - self._durable_seq
        self._durable_seq = seq

    async def _fsync(self) -> None:
        assert self._syncer is not None
        # The loop keeps running while the disk syncs; events emitted meanwhile form the next batch.
        await self._syncer.sync()
        self._fsyncs += 1

    async def aclose(self) -> None:
        """Write and sync everything pending, stop the writer loop and close the file.

        Emitting afterwards raises :class:`LogError`. Calling it again does nothing.

        Raises:
            LogError: the log could not be written (now or earlier); events were lost.
        """
        if self._closed:
            return
        self._closing = True
        try:
            await self._drain()
            if self._writer_running:
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
            raise self._unusable()
