"""What a running ``agentctl run`` shows: the live view on a terminal, plain lines elsewhere.

Invoked from :mod:`agentctl.cli.session`; both outputs are fed events only.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import anyio
from rich.console import Console

from ..events.fold import RunState
from ..views.plain import PlainPrinter


class PlainOutput:
    """One line per notable event, printed as it happens (for pipes, CI and ``--no-ui``)."""

    def __init__(self) -> None:
        self.printer = PlainPrinter(sys.stdout)

    def feed(self, event: dict[str, Any]) -> None:
        self.printer.feed(event)

    async def run(self) -> None:
        await anyio.sleep_forever()

    async def close(self) -> None:
        sys.stdout.flush()


class LiveOutput:
    """The Rich live view, re-rendered from folded events at most ten times a second; with
    ``answer``, its approval panel answers held calls by key (see :mod:`agentctl.cli.keys`)."""

    def __init__(self, state: RunState, answer: Callable[[str, bool, str | None], str | None] | None = None) -> None:
        from ..views.approval_keys import ApprovalKeys
        from ..views.live import LiveView, wall_clock_ms

        keys = ApprovalKeys(answer) if answer is not None else None
        self.view = LiveView(Console(), state=state, clock=wall_clock_ms, approvals=keys)

    def feed(self, event: dict[str, Any]) -> None:
        # The session folds each event once, into the state shared with the checkpointer.
        self.view.noted(event)

    async def run(self) -> None:
        from .keys import read_keys

        async with anyio.create_task_group() as tg:
            if self.view.approvals is not None:
                tg.start_soon(read_keys, self.view.press)
            await self.view.run(fps=10)
            tg.cancel_scope.cancel()

    async def close(self) -> None:
        close = getattr(self.view, "close", None)
        if close is not None:
            await close()


def open_view(*, ui: bool, state: RunState,
              answer: Callable[[str, bool, str | None], str | None] | None = None) -> PlainOutput | LiveOutput:
    """The live view of ``state`` when ``ui`` (a terminal, no ``--no-ui``), else plain lines.

    ``state`` is folded by its owner; the view only draws it. ``answer(call_id, granted,
    text)`` answers a held call from the view's keys (None, or why not).
    """
    return LiveOutput(state, answer) if ui else PlainOutput()
