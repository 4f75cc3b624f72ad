"""Fault injection for crash tests: kill or freeze this process at a chosen event.

Invoked from :mod:`agentctl.cli.session`, which subscribes the hook to the event log when
``AGENTCTL_FAULT`` is set (``AGENTCTL_CRASH_AT_SEQ=N`` is the older spelling of
``kill@N``). The spec is ``ACTION@WHEN``:

* ``ACTION``: ``kill`` (SIGKILL itself) or ``stop`` (SIGSTOP itself, so that a test can
  send the SIGKILL from outside, at a moment it chose, as a real crash would come);
* ``WHEN``: a seq (the first event with at least that seq), or ``TYPE#N`` (the N-th event
  of that type this process emits, e.g. ``tool/result#3``).

The hook runs when the event is emitted, before it is necessarily on disk, so a kill
there loses whatever the writer had not yet committed, as a real crash would.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import UsageError

ENV = "AGENTCTL_FAULT"
_SIGNALS = {"kill": signal.SIGKILL, "stop": signal.SIGSTOP}


def fault_hook(environ: Mapping[str, str]) -> Callable[[dict[str, Any]], None] | None:
    """The log subscriber ``environ`` asks for, if any; ``ValueError`` for a bad spec."""
    spec = environ.get(ENV) or (f"kill@{environ['AGENTCTL_CRASH_AT_SEQ']}" if environ.get("AGENTCTL_CRASH_AT_SEQ") else "")
    if not spec:
        return None
    action, _, when = spec.partition("@")
    if action not in _SIGNALS or not when:
        raise UsageError(f"{ENV}: expected kill@WHEN or stop@WHEN, got {spec!r}")
    signum = _SIGNALS[action]
    kind, _, nth = when.rpartition("#")
    if not kind:
        at = int(when)

        def at_seq(event: dict[str, Any]) -> None:
            if event["seq"] >= at:
                os.kill(os.getpid(), signum)

        return at_seq
    wanted, seen = int(nth), 0

    def at_count(event: dict[str, Any]) -> None:
        nonlocal seen
        if event["type"] == kind:
            seen += 1
            if seen == wanted:
                os.kill(os.getpid(), signum)

    return at_count
