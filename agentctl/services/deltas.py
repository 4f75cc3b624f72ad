"""Streamed reply fragments, coalesced into ``llm/delta`` events.

Invoked from the work plane (:meth:`agentctl.services.workers.LocalWorkPlane.call_llm`),
which makes a :class:`ReplyStream` per streaming call and awaits the provider's call
through :meth:`Flusher.follow`: the provider calls :meth:`ReplyStream.feed` with every
fragment it reads, and the final flush comes once the reply is whole, right before
``llm/result``. One :class:`Flusher` per work plane logs what its calls hold meanwhile:
one task for all of them (run by the runtime through the plane's
``serve``), not a task per call, which cost a pool of quick calls more than the rest of
streaming together.

What reaches the log, and when:

* **Coalesced.** A fragment is only put aside as it comes (no clock read, no timer, no copy
  of what came before: a reply of thousands of fragments costs one list append each). The
  flusher's one task logs what a call has put aside once per ``interval`` (0.1 s), from
  when the call is an interval old, and the final flush logs the rest. So a call logs at
  most one ``llm/delta`` per interval, plus the final one; text waits at most about two
  intervals (while the flusher runs); and the deltas of a call, joined, are its whole
  streamed reply (unless cut, below).
* **Not for quick calls.** A call whose reply is whole within its first interval logs no
  ``llm/delta`` at all: its ``llm/result``, right after, holds the whole text, and a delta
  would only have said it twice (for a pool of quick calls, that was most of what
  streaming cost).
* **Redacted.** Events are redacted when they are written, but a known secret split across
  two fragments would slip past a per-event redaction. So an end of the text that is the
  start of a known secret is held back until the secret is whole or the text goes another
  way, and every secret inside what is logged is ``***``.
* **Bounded.** Model output is untrusted: one event carries at most ``max_chars`` characters
  of text and of tool-call text each; what a flood leaves out of an event is counted in its
  ``cut`` (the views show a tail; ``llm/result`` holds the whole reply).

Deltas are for the views only: the fold keeps just a tail per agent, and crash resume and
replay ignore them (the call's ``llm/result`` is what they read).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from ..events.emit import Emit
from ..redact import Redactor

__all__ = ["DELTA_INTERVAL", "MAX_DELTA_CHARS", "Flusher", "ReplyStream"]

#: Seconds between two ``llm/delta`` events of one call.
DELTA_INTERVAL = 0.1
#: Characters of text (and, apart, of tool-call text) one ``llm/delta`` event carries at most.
MAX_DELTA_CHARS = 4096

T = TypeVar("T")


class ReplyStream:
    """One call's streamed fragments on their way to the log as ``llm/delta`` events.

    Args:
        emit: the event sink.
        agent_id, call_id: whose call it is.
        redactor: hides the secrets the run knows (see the module docstring).
        interval: how old the call must be before its first event (the flusher, which logs
            what a stream holds, ticks once per interval).
        max_chars: the most text (and tool-call text) one event carries.
        clock: monotonic seconds (injectable for tests).
    """

    __slots__ = ("_agent_id", "_call_id", "_clock", "_content", "_emit", "_first", "_logged", "_max_chars",
                 "_redactor", "_tools")

    def __init__(self, emit: Emit, agent_id: str, call_id: str, *, redactor: Redactor | None = None,
                 interval: float = DELTA_INTERVAL, max_chars: int = MAX_DELTA_CHARS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._emit = emit
        self._agent_id, self._call_id = agent_id, call_id
        self._redactor = redactor
        self._max_chars, self._clock = max_chars, clock
        self._content: list[str] = []  # raw text not logged yet, as it came
        self._tools: list[str] = []
        self._first = clock() + interval  # nothing is logged before the call is an interval old
        self._logged = False

    def feed(self, content: str, tool_calls: str) -> None:
        """Take one fragment (either part may be ""); the next :meth:`tick` or :meth:`close` logs it."""
        if content:
            self._content.append(content)
        if tool_calls:
            self._tools.append(tool_calls)

    def tick(self) -> None:
        """Log what is held, once the call is an interval old (the flusher's turn, once per interval)."""
        if (self._content or self._tools) and self._clock() >= self._first:
            self._log(final=False)

    def close(self) -> None:
        """The reply is whole: log what is left, unless the call logged nothing and is still in
        its first interval (a call that streamed nothing logs nothing either)."""
        if self._logged or self._clock() >= self._first:
            self._log(final=True)

    def _log(self, *, final: bool) -> None:
        content, self._content = self._ready(self._content, final)
        tools, self._tools = self._ready(self._tools, final)
        if not content and not tools:
            return
        cut = max(0, len(content) - self._max_chars) + max(0, len(tools) - self._max_chars)
        self._logged = True
        # The tail, not the head: views show what the model is saying now.
        self._emit("llm/delta", self._agent_id, call_id=self._call_id, content=content[-self._max_chars:],
                   tool_calls=tools[-self._max_chars:], cut=cut)

    def _ready(self, pieces: list[str], final: bool) -> tuple[str, list[str]]:
        """``(what may be logged now, redacted; what is held back, raw)``."""
        if not pieces:
            return "", pieces
        raw = "".join(pieces)
        cut = len(raw) if final else self._safe_cut(raw)
        ready = raw[:cut]
        if self._redactor is not None:
            ready = self._redactor.text(ready)
        return ready, [raw[cut:]] if cut < len(raw) else []

    def _safe_cut(self, raw: str) -> int:
        """Where ``raw`` may be cut without logging part of a secret.

        An end of ``raw`` that is the start of a known secret may be a secret still
        arriving: it is held back. A secret already whole that straddles the cut moves the
        cut to its start, so it is logged whole (and so redacted) next time.
        """
        cut = len(raw)
        if self._redactor is None:
            return cut
        for secret in self._redactor.secrets:
            for start in range(max(0, len(raw) - len(secret) + 1), len(raw)):
                if secret.startswith(raw[start:]):
                    cut = min(cut, start)
                    break
        moved = True
        while moved:
            moved = False
            for secret in self._redactor.secrets:
                start = raw.find(secret, max(0, cut - len(secret) + 1))
                if 0 <= start < cut < start + len(secret):
                    cut, moved = start, True
        return cut


class Flusher:
    """One task that ticks every live :class:`ReplyStream` of a work plane once per interval.

    Without it, what a stream holds waits for the end of the reply. :meth:`run` sleeps on
    an event while no call streams, so an idle plane costs nothing.
    """

    def __init__(self, interval: float = DELTA_INTERVAL) -> None:
        self.interval = interval
        self._streams: set[ReplyStream] = set()
        self._wake: anyio.Event | None = None

    async def follow(self, stream: ReplyStream, call: Awaitable[T]) -> T:
        """Await the provider's ``call`` with ``stream`` ticked meanwhile, then log the rest.

        Raises what ``call`` raises (nothing more is logged then).
        """
        self._streams.add(stream)
        if self._wake is not None:
            self._wake.set()
        try:
            result = await call
        finally:
            self._streams.discard(stream)
        stream.close()
        return result

    async def run(self) -> None:
        """Tick the live streams once per interval until cancelled."""
        while True:
            if not self._streams:
                self._wake = anyio.Event()
                await self._wake.wait()
                self._wake = None
            await anyio.sleep(self.interval)
            for stream in tuple(self._streams):
                stream.tick()
