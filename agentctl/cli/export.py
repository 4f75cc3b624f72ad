"""``agentctl export otel EVENTS``: a run's log, finished, crashed or old, as an OpenTelemetry trace.

``otel`` is the one format so far; it is an argument (not a subcommand) so that ``export``
stays one command, with one usage line and the error boundary every command has.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from ..errors import AgentctlError
from .complete import complete_run
from .errors import fail_usage, print_error

#: Seconds to wait for the receiver, past the exporter's own timeout (OTEL_EXPORTER_OTLP_TIMEOUT).
_EXPORT_GRACE = 15.0


FORMATS = ("otel",)


def export_command(
    format: str = typer.Argument(..., metavar="FORMAT", help="otel: an OpenTelemetry trace sent over OTLP/HTTP."),
    run: Optional[Path] = typer.Argument(None, help="A run directory, its events.jsonl or a run id [default: the newest run].", autocompletion=complete_run),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", metavar="URL", help="The OTLP/HTTP receiver, e.g. http://127.0.0.1:6006 (/v1/traces is appended) [default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT, else http://localhost:4318]."),
    content: bool = typer.Option(False, "--content", help="Also send tool arguments and results and model replies (as logged: redacted). Off by default."),
) -> None:
    """Export a run's log (otel: as an OpenTelemetry trace).

    `export otel RUN` sends the log as one trace to an OTLP/HTTP receiver.

    The trace is the one `agentctl run --otel` sends live, with the same ids: exporting a
    log again sends the same spans, not a second tree. Exit 0 when every span was
    accepted, 1 when the receiver did not take them all, 2 for bad input.
    """
    from ..events.reader import read_events
    from ..views.otel import trace_of
    from .otel import SpanSender, otel_config, require_sdk
    from .views import blame_the_log, events_file

    if format not in FORMATS:
        fail_usage(f"FORMAT: expected one of {', '.join(FORMATS)}, got {format!r}")
    config = otel_config(True, endpoint, content, os.environ)
    assert config is not None  # the flag is given
    require_sdk()
    path = events_file(run)
    try:
        with blame_the_log(path):
            spans = trace_of(read_events(path), content=config.content)
    except AgentctlError as exc:
        fail_usage(str(exc))
    if not spans:
        fail_usage(f"{path}: no events to export")
    sender = SpanSender(config, live=False)
    sender.send(spans)
    stats = sender.close(_EXPORT_GRACE)
    trace = f"{spans[-1].trace_id:032x}"
    if stats.sent < stats.spans:
        why = f": {stats.failure}" if stats.failure else f" within {_EXPORT_GRACE:g} s"
        print_error(f"exported {stats.sent} of {stats.spans} spans (trace {trace}) to {config.endpoint}{why}")
        raise typer.Exit(1)
    typer.echo(f"exported {stats.spans} spans (trace {trace}) to {config.endpoint}")
