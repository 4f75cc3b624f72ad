"""The event log writer: one batching, group-committing appender of ``events.jsonl``.

The runtime opens one :class:`EventLog` per run (through :func:`open_event_log`) and hands
its bound :meth:`EventLog.emit` to every service. ``emit`` is on the hot path (called per
message), so it only numbers the event, queues it and calls the in-process subscribers
(the live view); a single writer task serialises queued events in batches with orjson and
appends them with one ``write``. Durability follows ``docs/events.md``:

* ``none``: write to the OS, never ``fsync``.
* ``batch``: ``fsync`` each batch off the event loop (:mod:`agentctl.events.syncer`), so
  that events emitted meanwhile gather into the next batch (group commit: many
  :meth:`EventLog.flushed` waiters share one ``fsync``).
* ``always``: ``fsync`` after every event (slow by design).

Write-ahead works by ``ev = emit("tool/requested", ...)`` then ``await log.flushed(ev["seq"])``
before running the tool.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path, PurePath
from time import time_ns as _time_ns
from typing import Any, Literal

import anyio
import anyio.abc
import anyio.lowlevel
import msgspec
import orjson

from agentctl.errors import LogError
from agentctl.events.syncer import Syncer

__all__ = ["Durability", "EventLog", "EventLogStatistics", "open_event_log"]

Durability = Literal["none", "batch", "always"]
_DURABILITIES = ("none", "batch", "always")
_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS
# Non-str keys are rare and make every dump ~10% slower: the first attempt goes without them.
_FAST = orjson.OPT_APPEND_NEWLINE
_COMMON = ("seq", "t", "run_id")  # `type` and `agent_id` cannot collide: they are parameters


@dataclass(frozen=True, slots=True)
class EventLogStatistics:
    """A snapshot of an :class:`EventLog`'s counters.

    Attributes:
        emitted: events emitted since the log was created.
        written: events handed to the OS (and fsynced, per durability).
        batches: group commits the writer made (one ``write``, at most one ``fsync`` each
            in ``batch`` mode).
        fsyncs: ``fsync`` calls made.
        pending: events emitted but not yet written.
        last_seq: the seq of the last emitted event (``start_seq - 1`` before any).
        bytes_written: bytes appended to the file.
    """

    emitted: int
    written: int
    batches: int
    fsyncs: int
    pending: int
    last_seq: int
    bytes_written: int


def _default(value: Any) -> Any:
    """Turn what orjson cannot encode into something it can; never raises."""
    if isinstance(value, (set, frozenset)):
        try:
            return sorted(value)
        except TypeError:  # mixed types do not sort; order is then arbitrary
            return list(value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, msgspec.Struct):
        return msgspec.structs.asdict(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return repr(value)


def _safe_value(value: Any) -> Any:
    try:
        orjson.dumps(value, default=_default, option=_OPTIONS)
    except (TypeError, ValueError, RecursionError):
        return repr(value)
    return value


def _encode(event: dict[str, Any]) -> bytes:
    """One event as a JSON line, falling back to ``repr`` of any field orjson rejects.

    orjson rejects a few things ``default`` cannot fix (ints over 64 bits, cycles, very deep
    nesting); the seq must still appear in the file, so the bad fields are repr'd instead.
    """
    try:
        return orjson.dumps(event, default=_default, option=_OPTIONS)
    except (TypeError, ValueError, RecursionError):
        return orjson.dumps(
            {str(k): _safe_value(v) for k, v in event.items()}, default=_default, option=_OPTIONS
        )


_dumps = orjson.dumps


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _repair_tail(fd: int) -> None:
    """Make an existing file end in a newline before we append to it.

    A crash mid-write leaves a torn final line; appending straight after it would glue the
    next event onto it and turn a reportable torn tail into a corrupt middle line. A tail
    that parses gets its newline; one that does not is cut off.
    """
    size = os.lseek(fd, 0, os.SEEK_END)
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    start = size
    while start > 0:
        chunk_start = max(0, start - 65536)
        newline = os.pread(fd, start - chunk_start, chunk_start).rfind(b"\n")
        if newline >= 0:
            start = chunk_start + newline + 1
            break
        start = chunk_start
    tail = os.pread(fd, size - start, start)
    try:
        complete = isinstance(orjson.loads(tail), dict)
    except orjson.JSONDecodeError:
        complete = False
    if complete:
        _write_all(fd, b"\n")
    else:
        os.ftruncate(fd, start)


class EventLog:
    """One writer that batches appends to events.jsonl (orjson, one object per line).

    Args:
        path: the events file, opened in append mode (parent directories created), or
            ``None`` to keep nothing (tests, benchmarks); subscribers still get events.
        run_id: the run every event belongs to.
        durability: ``none``, ``batch`` or ``always`` (see the module docstring).
        start_seq: the seq of the first event (a resumed run continues its count).
        max_batch: most events serialised per ``write``, so a backlog does not stall the
            event loop in one go.

    ``emit`` must be called from the event loop's thread.
    """

    def __init__(
        self,
        path: Path | None,
        run_id: str,
        *,
        durability: Durability = "batch",
        start_seq: int = 1,
        max_batch: int = 4096,
    ) -> None:
        if durability not in _DURABILITIES:
            raise ValueError(f"durability must be one of {_DURABILITIES}, not {durability!r}")
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._path = Path(path) if path is not None else None
        self._run_id = run_id
        self._durability: Durability = durability
        self._max_batch = max_batch
        self._start_seq = start_seq
        self._next_seq = start_seq
        self._file_seq = start_seq - 1  # every seq up to this one is in the file
        self._durable_seq = start_seq - 1  # ... and synced, per durability
        # Encoded lines, in seq order: pending[i] is event file_seq + 1 + i. Bytes rather
        # than dicts: a batch of thousands of live dicts makes the cyclic GC rescan them
        # (a third of the append rate), and the line is fixed the moment it is emitted.
        self._pending: list[bytes] = []
        self._subscribers: tuple[Callable[[dict[str, Any]], None], ...] = ()
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
        if self._path is not None:
            self._fd = self._open(self._path)
        self._syncer = Syncer(self._fd) if self._fd is not None and durability != "none" else None

    @staticmethod
    def _open(path: Path) -> int:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LogError(f"cannot open event log {path}: {exc}") from exc
        try:
            _repair_tail(fd)
        except OSError as exc:
            os.close(fd)
            raise LogError(f"cannot repair the end of event log {path}: {exc}") from exc
        return fd

    @property
    def path(self) -> Path | None:
        """The events file, or ``None`` for a memory-only log."""
        return self._path

    @property
    def run_id(self) -> str:
        """The run every event belongs to."""
        return self._run_id

    @property
    def durability(self) -> Durability:
        """The fsync policy: ``none``, ``batch`` or ``always``."""
        return self._durability

    @property
    def last_seq(self) -> int:
        """The seq of the last emitted event (``start_seq - 1`` before the first)."""
        return self._next_seq - 1

    def emit(
        self, type: str, agent_id: str | None = None, fields: dict[str, Any] | None = None, /, **more: Any
    ) -> dict[str, Any]:
        """Record one event and return it (with its ``seq``).

        Fields come as keywords, or as one dict (the hot paths' form, and the way to name a
        field ``from``), or both. The event is queued for the writer and passed to every
        subscriber before this returns. If a subscriber raises, the others still get the
        event and the first error is re-raised; the event stays logged.

        Raises:
            LogError: the log is closed or writing it failed.
            ValueError: a field would overwrite ``seq``, ``t`` or ``run_id``.
        """
        # The hot path of the whole runtime (an event per message): few attribute reads, and a
        # dict passed as is, since keywords cost a dict built twice when a caller unpacks one.
        if self._closing or self._error is not None:
            raise self._unusable()
        if fields is None:
            fields = more
        elif more:
            fields = {**fields, **more}
        seq = self._next_seq
        event = {"seq": seq, "t": _time_ns() // 1_000_000, "run_id": self._run_id, "type": type, "agent_id": agent_id,
                 **fields}
        if len(event) != 5 + len(fields):  # a field took the place of a common one
            raise ValueError(f"event fields may not override {_COMMON}")
        self._next_seq = seq + 1
        if self._fd is None:
            self._pending.append(b"")
        else:
            try:
                self._pending.append(_dumps(event, default=_default, option=_FAST))
            except (TypeError, ValueError, RecursionError):
                self._pending.append(_encode(event))
        if self._writer_waiting:
            self._writer_waiting = False
            self._wake.set()
        if self._subscribers:
            self._notify(event)
        return event

    def _notify(self, event: dict[str, Any]) -> None:
        first: BaseException | None = None
        for fn in self._subscribers:
            try:
                fn(event)
            except Exception as exc:  # one broken view must not hide the event from the rest
                first = first or exc
        if first is not None:
            raise first

    def _unusable(self) -> LogError:
        if self._error is not None:
            return LogError(f"event log {self._path} failed earlier: {self._error}")
        return LogError(f"event log for run {self._run_id} is closed")

    def subscribe(self, fn: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``fn(event)`` synchronously for every event emitted from now on.

        Returns:
            A function that unsubscribes ``fn`` (calling it twice is harmless).
        """
        self._subscribers = (*self._subscribers, fn)

        def unsubscribe() -> None:
            subs = list(self._subscribers)
            if fn in subs:
                subs.remove(fn)
                self._subscribers = tuple(subs)

        return unsubscribe

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
            raise ValueError(f"seq {seq} has not been emitted (last is {self.last_seq})")
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

    def statistics(self) -> EventLogStatistics:
        """Return a snapshot of the counters."""
        emitted = self._next_seq - self._start_seq
        return EventLogStatistics(
            emitted=emitted,
            written=self._written,
            batches=self._batches,
            fsyncs=self._fsyncs,
            pending=emitted - self._written,
            last_seq=self.last_seq,
            bytes_written=self._bytes,
        )

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The writer loop: commit queued events until the log is closed or fails.

        Start it in a task group (``await tg.start(log.run)``); :func:`open_event_log`
        does this. It returns when :meth:`aclose` is called or a write fails (the failure
        then reaches ``emit`` and ``flushed`` callers as :class:`LogError`).
        """
        if self._writer_running:
            raise RuntimeError("the writer loop is already running")
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

    async def _drain(self) -> None:
        """Commit everything queued now as one group commit (one write, one fsync)."""
        async with self._drain_lock:
            batch, self._pending = self._pending, []
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
                _write_all(self._fd, data)
                self._bytes += len(data)
            self._file_seq += len(chunk)
            if self._durability == "none" or self._fd is None:
                self._mark_durable(self._file_seq)

    async def _commit_each(self, batch: list[bytes]) -> None:
        assert self._fd is not None
        for data in batch:
            _write_all(self._fd, data)
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


@asynccontextmanager
async def open_event_log(
    path: Path | str | None,
    run_id: str,
    *,
    durability: Durability = "batch",
    start_seq: int = 1,
) -> AsyncIterator[EventLog]:
    """Open an event log with its writer running; flush and close it on the way out.

    On any exit (normal, exception or cancellation) everything emitted so far is written
    and synced, shielded from cancellation, before the file is closed. If the body raised,
    that exception wins over a :class:`LogError` from closing.

    Args:
        path: the events file (``None``: memory only).
        run_id: the run every event belongs to.
        durability: ``none``, ``batch`` or ``always``.
        start_seq: the seq of the first event.

    Yields:
        The open :class:`EventLog`.
    """
    log = EventLog(Path(path) if path is not None else None, run_id, durability=durability, start_seq=start_seq)
    body_error: Exception | None = None
    close_error: LogError | None = None
    async with anyio.create_task_group() as tg:
        await tg.start(log.run)
        try:
            yield log
        except Exception as exc:
            # Re-raised below, outside the task group, so callers see their own exception
            # rather than an ExceptionGroup around it.
            body_error = exc
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await log.aclose()
                except LogError as exc:
                    close_error = exc
    if body_error is not None:
        raise body_error  # it wins over a LogError from closing
    if close_error is not None:
        raise close_error
