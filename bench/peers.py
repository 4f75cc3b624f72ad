"""Peer runtimes for the messaging workloads, where installed (the ``bench`` extra).

Called by ``bench.one_way`` and ``bench.ping_pong``. Each peer lives in its own module
so a missing package only skips that peer.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

INSTALL = "pip install -e '.[bench]'"


def runners(n: int, round_trips: bool) -> dict[str, Callable[[], float]]:
    """Rate runners for the installed peers: ``tell``/publish one-way, ``ask``/send round trips.

    Args:
        n: messages (or round trips) per run.
        round_trips: ping-pong (True) or one-way (False).
    """
    found: dict[str, Callable[[], float]] = {}
    try:
        from . import peer_pykka
    except ImportError:
        print(f"pykka skipped: not installed ({INSTALL})", file=sys.stderr)
    else:
        found["pykka " + ("ask" if round_trips else "tell")] = lambda: peer_pykka.rate(n, round_trips)
    try:
        from . import peer_autogen
    except ImportError:
        print(f"autogen-core skipped: not installed ({INSTALL})", file=sys.stderr)
    else:
        # autogen-core is two orders slower: a fifth of the messages keeps the run short.
        found["autogen-core " + ("send_message" if round_trips else "publish_message")] = (
            lambda: peer_autogen.rate(max(1, n // 5), round_trips))
    return found
