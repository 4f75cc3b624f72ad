"""Sending a run's spans to an OTLP receiver: ``agentctl run --otel`` and ``agentctl export otel``.

Invoked from :mod:`agentctl.cli.run` and :mod:`agentctl.cli.session` (live, as the log's
subscriber) and :mod:`agentctl.cli.export` (a whole log). The spans come from
:mod:`agentctl.views.otel`; this is the only module that imports the OpenTelemetry SDK and its
OTLP/HTTP exporter (the ``otel`` extra), and only once an export is asked for.

The SDK does the sending: a ``BatchSpanProcessor`` exports from its own thread, so a slow or
absent receiver never holds up an agent. Failures become one warning line; at the end of a
run, spans still queued get at most :data:`RUN_GRACE` seconds to leave.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .. import __version__
from ..views.otel import SpanRecord, TraceBuilder
from .errors import fail_usage

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = ["MAX_QUEUED", "RUN_GRACE", "LiveTrace", "OtelConfig", "SpanSender", "otel_config", "require_sdk", "sdk_installed"]

INSTALL_HINT = 'OpenTelemetry export needs the otel extra: pip install "agentctl[otel]"'
#: Seconds the end of a run waits for spans still queued (a receiver that is up takes milliseconds).
RUN_GRACE = 2.0
#: Events a live trace holds before it drops them (a few MB of events already in memory).
MAX_QUEUED = 65_536
#: Seconds to wait for the exporter's thread once its retries are cut short.
_ABORT_WAIT = 1.0
_DEFAULT_ENDPOINT = "http://localhost:4318"
_TRACES_PATH = "/v1/traces"
#: The variable OpenTelemetry's GenAI instrumentations read to record message content.
CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


@dataclass(frozen=True, slots=True)
class OtelConfig:
    """Where spans go and what they carry.

    Attributes:
        endpoint: the OTLP/HTTP traces URL (``.../v1/traces``).
        content: also send tool arguments and results and model replies (as logged, redacted).
    """

    endpoint: str
    content: bool = False


def _traces_url(base: str, what: str) -> str:
    """``base`` as a traces URL: ``/v1/traces`` appended unless it is there; one line, exit 2 if not http(s)."""
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        fail_usage(f"{what}: expected an http(s) URL such as http://127.0.0.1:4318, got {base!r}")
    return base if parts.path.rstrip("/").endswith(_TRACES_PATH) else base.rstrip("/") + _TRACES_PATH


def otel_config(flag: bool, endpoint: str | None, content: bool, environ: Mapping[str, str]) -> OtelConfig | None:
    """What ``--otel``, ``--otel-endpoint``, ``--otel-content`` and the standard variables ask for.

    Export is on with the flag, an endpoint, or ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`` in the
    environment, unless ``OTEL_SDK_DISABLED=true``. The endpoint is the one given, else
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (as is), else ``OTEL_EXPORTER_OTLP_ENDPOINT`` plus
    ``/v1/traces``, else ``http://localhost:4318/v1/traces``, as the SDK resolves them.
    """
    traces_env = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    base_env = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not (flag or endpoint or traces_env or base_env):
        return None
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true" and not (flag or endpoint):
        return None
    if endpoint:
        url = _traces_url(endpoint, "--otel-endpoint")
    elif traces_env:
        url = traces_env
    else:
        url = _traces_url(base_env or _DEFAULT_ENDPOINT, "OTEL_EXPORTER_OTLP_ENDPOINT")
    content = content or environ.get(CONTENT_ENV, "").strip().lower() == "true"
    return OtelConfig(url, content)


def sdk_installed() -> bool:
    """Whether the OpenTelemetry SDK and its OTLP/HTTP exporter import."""
    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        return False
    return True


def require_sdk() -> None:
    """One line saying how to install the extra, exit 2, when the SDK is not installed."""
    if not sdk_installed():
        fail_usage(INSTALL_HINT)


class _Reasons(logging.Handler):
    """Keeps the first failure the SDK logs, for the warning line (and keeps the SDK's lines off stderr)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.first: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        # The exporter's failures, and the processor's queue overflowing (a receiver too slow);
        # the SDK's other remarks are kept off stderr too, but are no reason for a failure.
        if record.name.startswith("opentelemetry.exporter") or "dropping" in message.lower():
            self.note(message)

    def note(self, message: str) -> None:
        """Keep ``message`` if it is the first failure."""
        if self.first is None:
            self.first = _short_reason(message)


@dataclass(slots=True)
class _Counts:
    """Spans the exporter got accepted and dropped (written by the SDK's threads, under ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: int = 0
    dropped: int = 0
    closed: bool = False


def _short_reason(message: str) -> str:
    """The cause in an exporter's log line: ``[Errno 111] Connection refused`` rather than its wrapping."""
    errno = re.search(r"\[Errno -?\d+\] [^\"')]*", message)
    if errno is not None:
        return errno.group(0).strip()
    transient = re.match(r"Transient error (.*) encountered while exporting", message)
    return transient.group(1) if transient is not None else message


def _warn_line(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")
    sys.stderr.flush()


def _counting_exporter(inner: SpanExporter, counts: _Counts, reasons: _Reasons, endpoint: str,
                       live: bool) -> SpanExporter:
    """``inner``, counting what it sent and dropped; ``live``: a warning line on the first failure."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class Counting(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            try:
                result = inner.export(spans)
            except Exception as exc:  # a broken exporter must not end the processor's thread
                reasons.note(str(exc))
                result = SpanExportResult.FAILURE
            with counts.lock:
                if result is SpanExportResult.SUCCESS:
                    counts.sent += len(spans)
                    return result
                first = counts.dropped == 0
                counts.dropped += len(spans)
            if first and live:
                _warn_line(f"otel: could not export spans to {endpoint} ({reasons.first or 'export failed'}); "
                           "the run goes on without them")
            return result

        def shutdown(self) -> None:
            with counts.lock:  # called by the closing thread, the processor, or both
                closed, counts.closed = counts.closed, True
            if not closed:
                inner.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return inner.force_flush(timeout_millis)

    return Counting()


@dataclass(frozen=True, slots=True)
class SendStatistics:
    """What a :class:`SpanSender` did: spans handed to it, of those sent, and the first
    failure the exporter reported."""

    spans: int
    sent: int
    failure: str | None = None


#: Seconds between looks at the SDK's queue while an export waits for room in it.
_ROOM_POLL = 0.002


def _queue_size(environ: Mapping[str, str]) -> int:
    """The SDK batch processor's queue bound, read as the SDK reads it (``OTEL_BSP_MAX_QUEUE_SIZE``)."""
    try:
        size = int(environ.get("OTEL_BSP_MAX_QUEUE_SIZE", _SDK_QUEUE_SIZE))
    except ValueError:
        return _SDK_QUEUE_SIZE
    return size if size > 0 else _SDK_QUEUE_SIZE


#: The SDK's default queue bound (``OTEL_BSP_MAX_QUEUE_SIZE`` unset).
_SDK_QUEUE_SIZE = 2048


class SpanSender:
    """Spans to an OTLP/HTTP receiver through the OpenTelemetry SDK's batch processor and exporter.

    Each :class:`SpanRecord` is handed over as the SDK's finished span (``ReadableSpan``, what
    processors and exporters take) with the ids, times and status it carries: the spans are
    already over when the log says so, and a ``Tracer`` would draw ids of its own and cost
    several times as much per span. So what reaches the receiver is exactly the translator's
    trace; sampling (``OTEL_TRACES_SAMPLER``) does not apply. :meth:`send` never raises.

    The SDK's queue holds ``OTEL_BSP_MAX_QUEUE_SIZE`` spans (2048 by default) and drops what
    it is handed while full. Sending live, :meth:`send` never waits (the run must not wait
    for a receiver): a receiver slower than the run loses spans, counted. Otherwise (an
    export of a log) it waits for room, until the exporter fails, so that a long log
    reaches a working receiver whole.

    Args:
        config: where to send.
        live: sending while a run goes on: the first failure is a warning line at once, and
            :meth:`send` never waits for the receiver.
        exporter: the SDK exporter to hand the spans to [default: OTLP/HTTP to
            ``config.endpoint``]; tests give the SDK's ``InMemorySpanExporter``.
    """

    def __init__(self, config: OtelConfig, *, live: bool, exporter: SpanExporter | None = None) -> None:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import Event, ReadableSpan
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.util import BoundedList
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        self.config = config
        self._reasons = _Reasons()
        otel_log = logging.getLogger("opentelemetry")
        otel_log.addHandler(self._reasons)
        self._propagated = otel_log.propagate
        otel_log.propagate = False  # its own lines (with tracebacks) would garble the view
        self._counts = _Counts()
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=config.endpoint)
        self._exporter = _counting_exporter(exporter, self._counts, self._reasons, config.endpoint, live)
        self._processor = BatchSpanProcessor(self._exporter)
        self._live = live
        self._room = _queue_size(os.environ)
        resource = Resource.create({"service.version": __version__})
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: "agentctl"}))  # OTEL_SERVICE_NAME wins
        self._resource = resource
        self._scope = InstrumentationScope("agentctl", __version__)
        self._spans = 0
        self._sampled = TraceFlags(TraceFlags.SAMPLED)
        self._unset = Status(StatusCode.UNSET)
        # Imported once: send is called for every span that ends.
        self._sdk = (Event, ReadableSpan, BoundedList, SpanContext, SpanKind, Status, StatusCode)

    def send(self, spans: Iterable[SpanRecord]) -> None:
        """Queue spans for export (the SDK's thread sends them in batches)."""
        Event, ReadableSpan, BoundedList, SpanContext, SpanKind, Status, StatusCode = self._sdk  # noqa: N806
        sampled, unset = self._sampled, self._unset
        for r in spans:
            parent = None if r.parent_id is None else SpanContext(r.trace_id, r.parent_id, False, sampled)
            events: Sequence[Any] = ()
            if r.events or r.dropped_events:
                # A BoundedList, as a tracer's span holds them: the exporter reads its dropped count.
                bounded = BoundedList.from_seq(None, [Event(e.name, dict(e.attributes), e.time_ns) for e in r.events])
                bounded.dropped = r.dropped_events
                events = bounded
            span = ReadableSpan(
                r.name, context=SpanContext(r.trace_id, r.span_id, False, sampled), parent=parent,
                resource=self._resource, attributes=dict(r.attributes), instrumentation_scope=self._scope,
                kind=SpanKind.CLIENT if r.kind == "client" else SpanKind.INTERNAL,
                status=unset if r.error is None else Status(StatusCode.ERROR, r.error),
                start_time=r.start_ns, end_time=r.end_ns, events=events)
            if not self._live:
                self._wait_for_room()
            self._processor.on_end(span)
            self._spans += 1

    def _wait_for_room(self) -> None:
        """Until the SDK's queue has room for one more span, or the exporter has failed or
        stopped (then waiting is over: what does not fit is dropped and counted)."""
        counts = self._counts
        # Spans handed over and not yet exported are in the queue or in the batch being sent.
        while self._spans - counts.sent - counts.dropped >= self._room and not counts.dropped and not counts.closed:
            time.sleep(_ROOM_POLL)

    def close(self, grace: float) -> SendStatistics:
        """Send what is queued, waiting at most ``grace`` seconds, then stop the exporter.

        Spans not sent by then are dropped; the statistics say how many were sent.
        """
        # The SDK's flush exports in the caller's thread for as long as the exporter retries
        # (OTEL_EXPORTER_OTLP_TIMEOUT, 10 s): it gets a thread of its own, waited for `grace`.
        closing = threading.Thread(target=self._flush_and_stop, name="agentctl-otel-close", daemon=True)
        closing.start()
        closing.join(grace)
        if closing.is_alive():
            self._exporter.shutdown()  # ends the retries; what is still queued is dropped
            closing.join(_ABORT_WAIT)
        otel_log = logging.getLogger("opentelemetry")
        otel_log.removeHandler(self._reasons)
        otel_log.propagate = self._propagated
        return self.statistics()

    def _flush_and_stop(self) -> None:
        self._processor.force_flush()
        self._processor.shutdown()

    def statistics(self) -> SendStatistics:
        """Spans handed over and sent so far."""
        return SendStatistics(self._spans, self._counts.sent, self._reasons.first)


class LiveTrace:
    """A run's spans exported while it runs: subscribe :meth:`feed` to the event log.

    The event loop only queues each event (one ``put``, nothing decoded); translating them
    (:class:`TraceBuilder`) and recreating the spans in the SDK happen in a thread of this
    object's own, and sending them in the SDK's. The queue is bounded (``max_queued``,
    :data:`MAX_QUEUED` events by default): a run that logs faster than its trace is built never waits for it; events past
    the bound are not traced (counted, and said in one warning line at the end: the trace
    may then miss spans, which ``agentctl export otel`` rebuilds from the log). A failure in
    here (a bug, an SDK error) is one warning line and ends the export, never the run: the
    log's subscribers must not raise.
    """

    def __init__(self, config: OtelConfig, *, exporter: SpanExporter | None = None,
                 max_queued: int = MAX_QUEUED) -> None:
        self._max = max_queued
        self._builder = TraceBuilder(content=config.content)
        self._sender = SpanSender(config, live=True, exporter=exporter)
        self._queue: queue.SimpleQueue[Mapping[str, Any] | None] = queue.SimpleQueue()
        self._size = self._queue.qsize
        self._put = self._queue.put
        self._failed = False
        #: Events not traced because the queue was full.
        self.dropped = 0
        self._thread = threading.Thread(target=self._trace_queued, name="agentctl-otel-spans", daemon=True)
        self._thread.start()

    def catch_up(self, events_file: Path, last_seq: int) -> None:
        """Feed what a resumed run logged before (its spans go again, with the same ids);
        before the run goes on, so this waits for room in the queue rather than drop."""
        from ..events.reader import read_events

        for event in read_events(events_file):
            if isinstance(event.get("seq"), int) and event["seq"] > last_seq:
                break
            while self._size() >= self._max and self._thread.is_alive():
                time.sleep(0.001)
            self._put(event)

    def feed(self, event: Mapping[str, Any]) -> None:
        """Take one event (the log's subscriber): queued, or counted as dropped when the queue is full."""
        if self._size() < self._max:
            self._put(event)
        else:
            self.dropped += 1

    def close(self) -> None:
        """Trace what is queued, end the run's span, send what is left within :data:`RUN_GRACE`
        (blocking: call it in a thread)."""
        self._put(None)
        self._thread.join()  # CPU work only: sending is the SDK's thread's, bounded below
        stats = self._sender.close(RUN_GRACE)
        if self.dropped:
            _warn_line(f"otel: {self.dropped} events were logged faster than they could be traced and are not in the "
                       "trace (spans may be missing or unfinished); agentctl export otel RUN sends the whole trace")
        if stats.sent < stats.spans:
            _warn_line(f"otel: {stats.spans - stats.sent} of {stats.spans} spans were not exported to "
                       f"{self._sender.config.endpoint}")

    def _trace_queued(self) -> None:
        builder, send, get = self._builder, self._sender.send, self._queue.get
        while (event := get()) is not None:
            if self._failed:
                continue
            try:
                spans = builder.feed(event)
                if spans:
                    send(spans)
            except Exception as exc:
                self._fail(exc)
        if not self._failed:
            try:
                send(builder.close())
            except Exception as exc:
                self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        if not self._failed:
            self._failed = True
            _warn_line(f"otel: export stopped: {type(exc).__name__}: {exc}; the run goes on")
