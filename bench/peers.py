"""Peer runtimes for the messaging workloads (imported only where they are installed).

No ``from __future__ import annotations`` here: autogen-core reads handler type hints at
class creation and needs real classes, not strings.
"""

import asyncio
import time
from dataclasses import dataclass

import pykka  # noqa: F401  (ImportError tells the caller pykka is missing)


class Counter(pykka.ThreadingActor):
    """A pykka actor that counts and echoes."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def on_receive(self, message: object) -> object:
        self.count += 1
        return message


def pykka_rate(n: int, round_trips: bool) -> float:
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
            ref.ask("sync")
        return n / (time.perf_counter() - start)
    finally:
        ref.stop()


@dataclass
class Ping:
    """An autogen-core message."""

    i: int


def autogen_rate(n: int, round_trips: bool) -> float:
    """``send_message`` round trips/s, or ``publish_message`` messages/s until idle."""
    from autogen_core import (AgentId, MessageContext, RoutedAgent, SingleThreadedAgentRuntime, TopicId,
                              TypeSubscription, message_handler)

    class Echo(RoutedAgent):
        def __init__(self) -> None:
            super().__init__("echo")

        @message_handler
        async def on_ping(self, message: Ping, ctx: MessageContext) -> Ping:
            return message

    async def main() -> float:
        runtime = SingleThreadedAgentRuntime()
        await Echo.register(runtime, "echo", Echo)
        await runtime.add_subscription(TypeSubscription("bench", "echo"))
        runtime.start()
        start = time.perf_counter()
        if round_trips:
            for i in range(n):
                await runtime.send_message(Ping(i), AgentId("echo", "default"))
            rate = n / (time.perf_counter() - start)
            await runtime.stop()
            return rate
        for i in range(n):
            await runtime.publish_message(Ping(i), TopicId("bench", "default"))
        await runtime.stop_when_idle()
        return n / (time.perf_counter() - start)

    return asyncio.run(main())
