"""Keys pressed in the terminal of a live view, for its approval panel.

Invoked from :mod:`agentctl.cli.output` (``agentctl run``) and ``agentctl watch`` while the
live view is up and stdin is a terminal: the terminal is put in cbreak mode (keys arrive
one by one, unechoed; Ctrl-C still interrupts) and put back as it was on the way out, also
when the task is cancelled.
"""

from __future__ import annotations

import os
import sys
import termios
import tty
from collections.abc import Callable

import anyio

from ..views.approval_keys import decode_keys

__all__ = ["read_keys"]


async def read_keys(press: Callable[[str], None]) -> None:
    """Call ``press(key)`` for every key typed on stdin until cancelled; returns at once when
    stdin is not a terminal (or is closed)."""
    if not sys.stdin.isatty():
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        while True:
            await anyio.wait_readable(fd)
            data = os.read(fd, 256)
            if not data:
                return
            for key in decode_keys(data):
                press(key)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
