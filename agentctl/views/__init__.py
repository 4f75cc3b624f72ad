"""Views of a run, built from its events only: live, plain lines, summary, replay, watch.

The CLI (``agentctl run``, ``watch``, ``replay``) picks one; every view reads events (or
a :class:`~agentctl.events.fold.RunState` folded from them), never runtime objects.
``replay`` and ``watch`` are imported from their modules (:mod:`.replay`, :mod:`.watch`)
so that the submodule names stay modules.
"""

from agentctl.views.live import LiveView, LiveViewStatistics, render_run
from agentctl.views.plain import PlainPrinter, format_event
from agentctl.views.summary import Summary, render_summary, summarize

__all__ = [
    "LiveView",
    "LiveViewStatistics",
    "PlainPrinter",
    "Summary",
    "format_event",
    "render_run",
    "render_summary",
    "summarize",
]
