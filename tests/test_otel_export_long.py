"""``agentctl export otel`` of a log with more spans than the SDK's queue holds (2048 by default).

The SDK's batch processor drops what it is handed while its queue is full; an export of a
long log used to hand it every span at once, so a 100,000-event log reached a receiver with
4,163 of its 16,041 spans ("Queue full, dropping Span"). Here the spans go through the real
SDK to a slow exporter in this process (default suite), and, under ``-m otel``, a real run's
log goes through ``agentctl export otel`` and the OTLP/HTTP exporter to a receiver on
127.0.0.1 that decodes what it gets and counts the spans.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import AGENTCTL, cli

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace.export import SpanExportResult  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from agentctl.cli.otel import OtelConfig, SpanSender  # noqa: E402
from agentctl.views.otel import SpanRecord  # noqa: E402

#: More spans than the SDK's queue holds by default.
SPANS = 5000


class SlowExporter(InMemorySpanExporter):
    """Keeps what it is sent, a few milliseconds per batch: a receiver slower than a loop that hands spans over."""

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        time.sleep(0.005)
        return super().export(spans)


class DeadExporter(InMemorySpanExporter):
    """Fails every batch, as an exporter whose receiver is down does after its retries."""

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.FAILURE


def records(n: int) -> list[SpanRecord]:
    return [SpanRecord(f"execute_tool t{i}", 7, i + 2, 1, 1_000 + i, 2_000 + i, "internal", {}) for i in range(n)]


def test_an_export_hands_a_slow_receiver_every_span_of_a_long_log() -> None:
    exporter = SlowExporter()
    sender = SpanSender(OtelConfig("http://127.0.0.1:1/v1/traces"), live=False, exporter=exporter)
    sender.send(records(SPANS))
    stats = sender.close(30)
    assert (stats.spans, stats.sent, stats.failure) == (SPANS, SPANS, None)
    assert sorted(s.context.span_id for s in exporter.get_finished_spans()) == list(range(2, SPANS + 2))


def test_an_export_stops_waiting_for_room_once_the_exporter_fails() -> None:
    sender = SpanSender(OtelConfig("http://127.0.0.1:1/v1/traces"), live=False, exporter=DeadExporter())
    sending = threading.Thread(target=sender.send, args=(records(SPANS),), daemon=True)
    sending.start()
    sending.join(60)
    assert not sending.is_alive()  # it did not wait for a receiver that will never take them
    stats = sender.close(5)
    assert stats.spans == SPANS and stats.sent == 0


# ------------------------------------------------------------------ the CLI, to a real receiver


class Receiver(http.server.ThreadingHTTPServer):
    """An OTLP/HTTP receiver on 127.0.0.1: decodes each request and keeps the span ids,
    taking 0.2 s over each (a receiver across a network, slower than a log is read)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.span_ids: list[bytes] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        time.sleep(0.2)
        request = ExportTraceServiceRequest()
        request.ParseFromString(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.span_ids += [s.span_id for r in request.resource_spans for ss in r.scope_spans for s in ss.spans]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.otel
def test_export_otel_of_a_run_with_more_spans_than_the_sdks_queue_sends_every_one(
        tmp_path: Path, receiver: Receiver) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    writes = "\n".join(f"      - write: {{path: out/f{i}.txt, content: x}}" for i in range(1500))
    (tmp_path / "plan.yaml").write_text(f"""\
name: long
defaults: {{tools: [fs/write], budget: {{max_steps: 2000, max_seconds: 300}}}}
tasks:
  - id: writer
    agent: script
    steps:
{writes}
""")
    ran = cli("run", "plan.yaml", "--no-ui", "--no-watch-plan", "--run-dir", "run", cwd=tmp_path, timeout=300)
    assert ran.returncode == 0, ran.stderr
    # The SDK's queue made smaller than the log's spans, as the SDK's own variable does.
    env = {**os.environ, "OTEL_BSP_MAX_QUEUE_SIZE": "600"}
    exported = subprocess.run([AGENTCTL, "export", "otel", "run", "--endpoint", receiver.url], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
    assert exported.returncode == 0, exported.stderr
    spans = int(exported.stdout.split()[1])  # "exported N spans (trace ...) to URL"
    assert spans > 1500  # a span per write, the agents' and the run's
    assert len(receiver.span_ids) == len(set(receiver.span_ids)) == spans
