"""The event log: numbering events, queuing them for the writer, and telling subscribers.

The runtime opens one :class:`EventLog` per run (through :func:`open_event_log`) and hands
its bound :meth:`EventLog.emit` to every service. ``emit`` is on the hot path (called per
message), so it only numbers the event, encodes it (:mod:`agentctl.events.encoding`), redacts
it (:mod:`agentctl.redact`: a walk over the keys of the fields that carry outside data,
:mod:`agentctl.events.payload`, and one search of the line for the known secrets; a rewrite
only when those find something), queues it and calls the in-process subscribers (the live
view); the writer (:mod:`agentctl.events.writer`, a part each :class:`EventLog` owns)
appends queued events in group commits, with the durability ``docs/events.md`` describes.

Write-ahead works by ``ev = emit("tool/requested", ...)`` then ``await log.flushed(ev["seq"])``
before running the tool.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from time import time_ns as _time_ns
from typing import Any

import anyio
import anyio.abc
import orjson

from agentctl.errors import LogError, UsageError
from agentctl.events.encoding import FAST_OPTIONS, encode_event, to_jsonable
from agentctl.events.payload import PAYLOAD_FIELDS
from agentctl.events.types import Event, loose
from agentctl.events.writer import HIGH_WATER, Durability, Writer
from agentctl.redact import Redactor

__all__ = ["Durability", "EventLog", "EventLogStatistics", "open_event_log"]

_COMMON = ("seq", "t", "run_id")  # `type` and `agent_id` cannot collide: they are parameters
# Module globals save emit an attribute read per event.
_dumps = orjson.dumps
_payload_fields = PAYLOAD_FIELDS.get


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
        pending_bytes: encoded bytes of the events not yet taken by the writer.
        throttled: times a producer waited for the writer (:meth:`EventLog.caught_up`).
        throttled_ms: milliseconds producers spent waiting, in all.
    """

    emitted: int
    written: int
    batches: int
    fsyncs: int
    pending: int
    last_seq: int
    bytes_written: int
    pending_bytes: int = 0
    throttled: int = 0
    throttled_ms: float = 0.0


class EventLog:
    """One writer that batches appends to events.jsonl (orjson, one object per line).

    Args:
        path: the events file, opened in append mode (parent directories created), or
            ``None`` to keep nothing (tests, benchmarks); subscribers still get events.
        run_id: the run every event belongs to.
        durability: ``none``, ``batch`` or ``always`` (see :mod:`agentctl.events.writer`).
        start_seq: the seq of the first event (a resumed run continues its count).
        max_batch: most events serialised per ``write``, so a backlog does not stall the
            event loop in one go.
        redactor: hides secrets in every event before it is written or passed on
            (default: secret keys, and the values of environment variables with secret names).

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
        redactor: Redactor | None = None,
    ) -> None:
        self._redactor = redactor if redactor is not None else Redactor.for_run(os.environ)
        self._path = Path(path) if path is not None else None
        self._run_id = run_id
        self._start_seq = start_seq
        self._next_seq = start_seq
        self._subscribers: tuple[Callable[[dict[str, Any]], None], ...] = ()
        self._writer = Writer(self._path, run_id, durability, max_batch, start_seq)

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
        return self._writer.durability

    @property
    def last_seq(self) -> int:
        """The seq of the last emitted event (``start_seq - 1`` before the first)."""
        return self._next_seq - 1

    def emit(
        self, type: str | Event, agent_id: str | None = None, fields: dict[str, Any] | None = None, /, **more: Any
    ) -> dict[str, Any]:
        """Record one event and return it (with its ``seq``).

        The event is a typed value (:mod:`agentctl.events.types`, its ``seq``, ``t`` and
        ``run_id`` left out), or a type, an agent and fields: as keywords, or as one dict (the
        hot paths' form, and the way to name a field ``from``), or both. The event is queued
        for the writer and passed to every subscriber before this returns. If a subscriber raises, the others still get the
        event and the first error is re-raised; the event stays logged. Where the redactor
        hid something, the event written, passed on and returned is a redacted copy.

        Raises:
            LogError: the log is closed or writing it failed.
            ValueError: a field would overwrite ``seq``, ``t`` or ``run_id``.
        """
        # The hot path of the whole runtime (an event per message): few attribute reads, and a
        # dict passed as is, since keywords cost a dict built twice when a caller unpacks one.
        w = self._writer
        if not w.accepting:
            raise w.unusable()
        if not isinstance(type, str):
            type, agent_id, fields = loose(type)
        elif fields is None:
            fields = more
        elif more:
            fields = {**fields, **more}
        seq = self._next_seq
        event = {"seq": seq, "t": _time_ns() // 1_000_000, "run_id": self._run_id, "type": type, "agent_id": agent_id,
                 **fields}
        if len(event) != 5 + len(fields):  # a field took the place of a common one
            raise UsageError(f"event fields may not override {_COMMON}")
        self._next_seq = seq + 1
        if self._path is None and not self._subscribers:
            w.pending.append(b"")  # nothing leaves the process
        else:
            try:
                line = _dumps(event, default=to_jsonable, option=FAST_OPTIONS)
            except (TypeError, ValueError, RecursionError):
                line = encode_event(event)
                # Subscribers (the checkpointer's fold, the views) get what the file holds: an
                # integer beyond 64 bits in a model's reply would stop every checkpoint's encoding.
                event = orjson.loads(line)
            if self._redactor.suspects(fields, line, _payload_fields(type)):
                event = self._redactor.event(line)
                line = encode_event(event)
            if self._path is None:
                line = b""  # encoded only to be checked: a memory log writes nothing
            w.pending.append(line)
            w.pending_bytes += len(line)
        if w.idle:
            w.wake_up()
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

    def statistics(self) -> EventLogStatistics:
        """Return a snapshot of the counters."""
        emitted = self._next_seq - self._start_seq
        w = self._writer
        return EventLogStatistics(
            emitted=emitted,
            written=w.written,
            batches=w.batches,
            fsyncs=w.fsyncs,
            pending=emitted - w.written,
            last_seq=self.last_seq,
            bytes_written=w.bytes_written,
            pending_bytes=w.pending_bytes,
            throttled=w.throttled,
            throttled_ms=round(w.throttled_s * 1000, 3),
        )

    # ------------------------------------------------------------------ the writer's side

    async def flushed(self, seq: int | None = None) -> None:
        """Wait until event ``seq`` (default: the last emitted) is written and synced.

        "Synced" follows the durability: fsynced for ``batch`` and ``always``, handed to
        the OS for ``none``. Returns at once for a closed log (closing flushes everything).

        Raises:
            LogError: writing failed before the event reached the file.
            ValueError: ``seq`` was never emitted.
        """
        last = self.last_seq
        if seq is None:
            seq = last
        if seq > last:
            raise UsageError(f"seq {seq} has not been emitted (last is {last})")
        await self._writer.flushed(seq)

    def behind(self) -> bool:
        """Whether producers should wait for the writer now: more than
        :data:`~agentctl.events.writer.HIGH_WATER` bytes pending for a running writer."""
        # Called per action by the scheduler: read the writer's counters rather than call it.
        w = self._writer
        return w.pending_bytes > HIGH_WATER and w.running

    async def caught_up(self) -> None:
        """Wait until the writer has taken the backlog (:meth:`Writer.caught_up`)."""
        await self._writer.caught_up()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The writer loop (:meth:`Writer.run`); :func:`open_event_log` starts it."""
        await self._writer.run(task_status=task_status)

    async def aclose(self) -> None:
        """Write and sync everything pending, stop the writer and close the file (:meth:`Writer.aclose`).

        Emitting afterwards raises :class:`LogError`. Calling it again does nothing.

        Raises:
            LogError: the log could not be written (now or earlier); events were lost.
        """
        await self._writer.aclose()


@asynccontextmanager
async def open_event_log(
    path: Path | str | None,
    run_id: str,
    *,
    durability: Durability = "batch",
    start_seq: int = 1,
    redactor: Redactor | None = None,
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
        redactor: see :class:`EventLog`.

    Yields:
        The open :class:`EventLog`.
    """
    log = EventLog(Path(path) if path is not None else None, run_id, durability=durability, start_seq=start_seq,
                   redactor=redactor)
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
