"""autogen-core's ``SingleThreadedAgentRuntime`` as a messaging peer.

No ``from __future__ import annotations`` here: autogen-core reads handler type hints at
class creation and needs real classes, not strings.
"""

import asyncio
import time
from dataclasses import dataclass

from autogen_core import (
    AgentId,
    MessageContext,
    RoutedAgent,
    SingleThreadedAgentRuntime,
    TopicId,
    TypeSubscription,
    message_handler,
)


@dataclass
class Ping:
    """The message bounced around."""

    i: int


class Echo(RoutedAgent):
    """Answers every ping with itself."""

    def __init__(self) -> None:
        super().__init__("echo")

    @message_handler
    async def on_ping(self, message: Ping, ctx: MessageContext) -> Ping:
        return message


def rate(n: int, round_trips: bool) -> float:
    """``send_message`` round trips/s, or ``publish_message`` messages/s until idle."""

    async def main() -> float:
        runtime = SingleThreadedAgentRuntime()
        await Echo.register(runtime, "echo", Echo)
        await runtime.add_subscription(TypeSubscription("bench", "echo"))
        runtime.start()
        start = time.perf_counter()
        if round_trips:
            for i in range(n):
                await runtime.send_message(Ping(i), AgentId("echo", "default"))
            result = n / (time.perf_counter() - start)
            await runtime.stop()
            return result
        for i in range(n):
            await runtime.publish_message(Ping(i), TopicId("bench", "default"))
        await runtime.stop_when_idle()
        return n / (time.perf_counter() - start)

    return asyncio.run(main())
