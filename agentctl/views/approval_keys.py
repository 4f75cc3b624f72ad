"""The live view's approval panel: the calls approval gates hold, one selected, answered by a key.

Used by :class:`~agentctl.views.live.LiveView` (drawn below the agent table) and fed keys by
the CLI (:mod:`agentctl.cli.keys`, which reads the terminal). What is held comes from the
view's :class:`~agentctl.events.run_state.RunState` (``approval/*`` events); answering is a
callback the CLI gives, ``answer(call_id, granted, text) -> error or None`` (the run's own
approval service in ``agentctl run``, the control channel in ``agentctl watch``), so this
module sees events only and never reaches the runtime.

Keys: up/down (or ``k``/``j``) select a call; ``a`` approves it; ``d`` asks for a reason,
typed on the panel's last line, sent with Enter (Esc cancels; a denial needs a reason).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from agentctl.events.run_state import RunState

__all__ = ["ApprovalKeys", "Answer", "decode_keys"]

#: ``answer(call_id, granted, note_or_reason)``: None when done, else why not (one line).
Answer = Callable[[str, bool, "str | None"], "str | None"]

_ESCAPES = {b"\x1b[A": "up", b"\x1b[B": "down", b"\x1bOA": "up", b"\x1bOB": "down"}
_NAMED = {b"\r": "enter", b"\n": "enter", b"\x7f": "backspace", b"\x08": "backspace", b"\x1b": "escape"}


def decode_keys(data: bytes) -> list[str]:
    """Key names in what the terminal sent: ``up``, ``down``, ``enter``, ``backspace``,
    ``escape``, or the character typed. Other escape sequences are dropped."""
    keys: list[str] = []
    i = 0
    while i < len(data):
        seq = next((s for s in _ESCAPES if data.startswith(s, i)), None)
        if seq is not None:
            keys.append(_ESCAPES[seq])
            i += len(seq)
            continue
        if data.startswith(b"\x1b[", i):  # another sequence (arrows left/right, F-keys): skipped
            j = i + 2
            while j < len(data) and not 0x40 <= data[j] <= 0x7E:
                j += 1
            i = j + 1
            continue
        byte = data[i:i + 1]
        if byte in _NAMED:
            keys.append(_NAMED[byte])
        elif byte >= b" ":
            # A multi-byte character arrives whole in one read: decode the rest of it along.
            end = i + 1
            while end < len(data) and 0x80 <= data[end] < 0xC0:
                end += 1
            keys.append(data[i:end].decode("utf-8", "replace"))
            i = end
            continue
        i += 1
    return keys


class ApprovalKeys:
    """Which held call is selected, the reason being typed, and what the last answer did."""

    def __init__(self, answer: Answer) -> None:
        self._answer = answer
        self.selected = 0
        #: The denial reason being typed; None when not typing one.
        self.reason: str | None = None
        #: What the last key did (an answer given, or why it was not), shown on the panel.
        self.message: str | None = None

    def key(self, state: RunState, key: str) -> None:
        """Act on one key (a name from :func:`decode_keys`) against the calls held in ``state``."""
        held = state.held()
        if not held:
            self.reason = None
            return
        self.selected = min(self.selected, len(held) - 1)
        call = held[self.selected]["call_id"]
        if self.reason is not None:
            self._typing(call, key)
        elif key in ("up", "k"):
            self.selected = max(0, self.selected - 1)
        elif key in ("down", "j"):
            self.selected = min(len(held) - 1, self.selected + 1)
        elif key == "a":
            self._give(call, True, None)
        elif key == "d":
            self.reason, self.message = "", None

    def _typing(self, call: str, key: str) -> None:
        assert self.reason is not None
        if key == "escape":
            self.reason = None
        elif key == "backspace":
            self.reason = self.reason[:-1]
        elif key == "enter":
            if self.reason.strip():
                reason, self.reason = self.reason.strip(), None
                self._give(call, False, reason)
            else:
                self.message = "a denial needs a reason (Esc cancels)"
        elif len(key) == 1:
            self.reason += key

    def _give(self, call: str, granted: bool, text: str | None) -> None:
        error = self._answer(call, granted, text)
        verb = "approved" if granted else "denied"
        self.message = f"{verb} {call}" if error is None else f"not {verb}: {error}"

    def render(self, state: RunState) -> RenderableType | None:
        """The panel, or None when no call is held and there is nothing to say."""
        held = state.held()
        if not held:
            return Text(self.message, style="dim") if self.message else None
        self.selected = min(self.selected, len(held) - 1)
        lines: list[Text] = [Text(f"waiting for approval ({len(held)}):  ↑/↓ select  a approve  d deny",
                                  style="bold yellow")]
        for i, h in enumerate(held):
            mark = "›" if i == self.selected else " "
            lines.append(Text(f"{mark} {h['call_id']}  {h['agent_id']}  {h['tool']}  {_args(h.get('arguments'))}"
                              f"  (gate {h['gate']})", style="reverse" if i == self.selected else "",
                              no_wrap=True, overflow="ellipsis"))
        if self.reason is not None:
            lines.append(Text(f"deny {held[self.selected]['call_id']}, reason: {self.reason}▏  (Enter sends, Esc cancels)"))
        elif self.message:
            lines.append(Text(self.message, style="dim"))
        return Group(*lines)


def _args(arguments: Any) -> str:
    if not isinstance(arguments, dict):
        return ""
    return " ".join(f"{k}={v!r}" for k, v in arguments.items())[:120]
