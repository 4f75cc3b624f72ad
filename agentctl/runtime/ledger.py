"""Reservations for calls: tokens and seconds are set aside before a call and settled after it.

Invoked from the interpreter (:mod:`agentctl.runtime.interpreter`) around every LLM and tool
call. A spawn reserves a child's whole budget out of its parent's remainder
(:meth:`~agentctl.runtime.agent.Agent.reserve_for`); within an agent, an LLM call reserves
what it may cost before it is sent, so parallel calls cannot together spend more than is
left: each one's reservation is taken before any of them is answered.

An LLM call's reservation is an upper bound on its prompt (the bytes of its messages' and
tool schemas' ``repr``, which holds all their text: a byte-level BPE tokenizer, as common
models use, never makes more tokens than bytes) plus its completion, whose ``max_tokens`` option (default
:data:`DEFAULT_COMPLETION`) is capped at what is left after the prompt. The result is charged what the provider reported, never more than
the reservation (a provider that reports more than it was allowed is not believed), and the
rest is refunded. A call's timeout is capped at the agent's time left.
"""

from __future__ import annotations

from dataclasses import replace

from ..services.llm.base import ChatRequest
from .agent import Agent

__all__ = ["DEFAULT_COMPLETION", "TokenReservation", "prompt_bound", "reserve_tokens", "time_left"]

#: The completion a call with no ``max_tokens`` option reserves (and is capped at) when its
#: agent has a token budget: enough for any answer, and within what servers accept.
DEFAULT_COMPLETION = 8192


def prompt_bound(request: ChatRequest) -> int:
    """An upper bound on the prompt tokens of ``request``: the bytes of its messages and tool specs."""
    return len(repr(request.messages).encode()) + len(repr(request.tools).encode())


class TokenReservation:
    """Tokens an LLM call set aside on its agent's ledger; :meth:`settle` charges the real cost."""

    __slots__ = ("agent", "amount", "settled")

    def __init__(self, agent: Agent, amount: int) -> None:
        self.agent = agent
        self.amount = amount
        self.settled = False
        agent.tokens += amount
        agent.reserved_tokens += amount

    def settle(self, used: int) -> None:
        """Charge ``used`` tokens (at most the reservation) and refund the rest."""
        if not self.settled:
            self.settled = True
            self.agent.tokens -= self.amount - min(max(used, 0), self.amount)
            self.agent.reserved_tokens -= self.amount


def reserve_tokens(agent: Agent, request: ChatRequest) -> tuple[ChatRequest, TokenReservation | None] | str:
    """Reserve ``request``'s cost on ``agent``'s token budget.

    Returns:
        The request with ``max_tokens`` capped at what the budget leaves for the completion,
        and its reservation (None for an unlimited budget); or why it does not fit.
    """
    left = agent.left("max_tokens")
    if left is None:
        return request, None
    prompt = prompt_bound(request)
    room = left - prompt
    if room <= 0:
        return f"max_tokens: {max(left, 0)} left, and the prompt may take up to {prompt}"
    asked = request.options.get("max_tokens")
    completion = min(int(asked) if isinstance(asked, int) and asked > 0 else DEFAULT_COMPLETION, room)
    capped = replace(request, options={**request.options, "max_tokens": completion})
    return capped, TokenReservation(agent, prompt + completion)


def time_left(agent: Agent, now: float) -> float | None:
    """The seconds ``agent`` has left before its deadline (None: no deadline); a call's timeout cap."""
    return None if agent.deadline is None else max(agent.deadline - now, 0.0)
