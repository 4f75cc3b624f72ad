"""pykka (thread-per-actor) as a messaging peer; importing it fails where pykka is missing."""

from __future__ import annotations

import time

import pykka


class Counter(pykka.ThreadingActor):
    """A pykka actor that counts and echoes."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def on_receive(self, message: object) -> object:
        self.count += 1
        return message


def rate(n: int, round_trips: bool) -> float:
    """``ask`` round trips/s, or ``tell`` messages/s (until the last is handled)."""
    ref = Counter.start()
    try:
        start = time.perf_counter()
        if round_trips:
            for i in range(n):
                ref.ask(i)
        else:
            for i in range(n):
                ref.tell(i)
            ref.ask("sync")  # the actor handles messages in order: this answers after the last tell
        return n / (time.perf_counter() - start)
    finally:
        ref.stop()
