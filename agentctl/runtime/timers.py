"""One task for every timer of a runtime: callbacks run when they fall due.

Invoked from :mod:`agentctl.runtime.tree` (agents' ticks and ``max_seconds``
deadlines), :mod:`agentctl.runtime.conflicts` (arbiter timeouts) and the bridge tools.
100,000 agents with a tick each cost one sleeping task and a heap, not 100,000 tasks.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable

import anyio

#: The runtime's clock: monotonic seconds. Deadlines, ticks and timeouts are all on it, and
#: the timer task waits for differences of it, so it agrees with any event loop's clock.
#: Read per spawn and step: 40 ns, where ``anyio.current_time()`` costs ~600 ns.
clock = time.monotonic


class Timers:
    """A heap of ``(due, fn)``; :meth:`run` calls each ``fn`` once its time has come."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self._changed: anyio.Event | None = None

    def call_at(self, due: float, fn: Callable[[], None]) -> None:
        """Call ``fn`` at ``due`` (:data:`clock` time) from the timer task."""
        self._seq += 1
        entry = (due, self._seq, fn)
        heapq.heappush(self._heap, entry)
        if self._changed is not None and self._heap[0] is entry:
            self._changed.set()  # the sleeping task must wake earlier than it planned

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        """Call ``fn`` after ``delay`` seconds."""
        self.call_at(clock() + delay, fn)

    def __len__(self) -> int:
        return len(self._heap)

    async def run(self) -> None:
        """Run due callbacks until cancelled; a callback must not block or raise."""
        heap = self._heap
        while True:
            now = clock()
            while heap and heap[0][0] <= now:
                heapq.heappop(heap)[2]()
            delay = heap[0][0] - now if heap else None
            self._changed = anyio.Event()
            with anyio.move_on_after(delay):
                await self._changed.wait()
            self._changed = None
