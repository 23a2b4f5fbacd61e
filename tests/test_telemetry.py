"""Traces, metrics and log correlation as an operator sees them.

Spans and metrics are read back through the OpenTelemetry SDK's in-memory exporter and reader,
`/metrics` through a real Prometheus text parser, OTLP export through a real HTTP collector on
127.0.0.1, and the nesting with the `mcp` SDK's own spans through a real SDK server and client
talking streamable HTTP.
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from opentelemetry import trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Metric
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from pydantic import TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway.calls import Call, Origin
from gateway.errors import BackendError, BackendTimeout, ConfigError, PolicyDenied, UnknownTool
from gateway.identity.principal import Principal
from gateway.logs import JsonFormatter
from gateway.request_kinds import forwardable_meta
from gateway.settings.telemetry import TelemetrySettings
from gateway.telemetry import (
    Telemetry,
    extract_context,
    inject_headers,
    inject_meta,
    install_log_correlation,
)
from harness import eventually, wait_until

CLIENT_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN_ID = "00f067aa0ba902b7"
CLIENT_TRACEPARENT = f"00-{CLIENT_TRACE_ID}-{CLIENT_SPAN_ID}-01"
CANARY = "canary-secret-7f3a91c2"


# -- fixtures and helpers ------------------------------------------------------------------------


class Recorded:
    """One installed `Telemetry` with in-memory destinations, and ways to read them back."""

    def __init__(self, settings: TelemetrySettings | None = None, **kwargs: Any) -> None:
        self.exporter = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()
        self.telemetry = Telemetry(
            settings or TelemetrySettings(), span_exporters=[self.exporter], metric_readers=[self.reader], **kwargs
        )
        assert self.telemetry.install()

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def span(self, name: str) -> ReadableSpan:
        matching = [s for s in self.spans() if s.name == name]
        assert len(matching) == 1, f"expected one span named {name!r}, got {[s.name for s in self.spans()]}"
        return matching[0]

    def metrics(self) -> dict[str, Metric]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return {
            metric.name: metric
            for resource_metrics in data.resource_metrics
            for scope_metrics in resource_metrics.scope_metrics
            for metric in scope_metrics.metrics
        }

    def points(self, name: str) -> list[Any]:
        return list(self.metrics()[name].data.data_points)


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    recorded = Recorded()
    yield recorded
    recorded.telemetry.shutdown()


def a_call(
    method: str,
    name: str | None,
    *,
    request_id: str | int | None,
    session_id: str | None,
    protocol_version: str | None,
    agent: str = "agent",
    transport: str | None = None,
    meta: dict[str, Any] | None = None,
) -> Call:
    """The call a request span is opened for, as the pipeline builds it."""
    origin = Origin(
        Principal(agent, ()),
        request_id=request_id,
        session_id=session_id,
        protocol_version=protocol_version,
        transport=transport,
    )
    return Call.of(method, origin, name, meta=meta)


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def hex_trace(span: ReadableSpan) -> str:
    return format(span.context.trace_id, "032x")


def simulate_call(
    telemetry: Telemetry,
    *,
    tool: str = "crm.update_record",
    arguments: Any = None,
    backend_failure: BaseException | None = None,
    backend_result: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The stages of one `tools/call` the way the pipeline runs them; returns the `_meta` sent on."""
    sent: dict[str, Any] | None = None
    with telemetry.request_span(
        a_call(
            "tools/call",
            tool,
            request_id=7,
            session_id="session-1",
            protocol_version="2025-11-25",
            agent="billing-agent",
            transport="tcp",
            meta=meta,
        )
    ) as call:
        call.resolved("crm")
        call.record_arguments(arguments or {})
        with telemetry.policy_span("tools/call", tool) as policy:
            policy.decided("allow", policy_ids=("access/crm.cedar#0",))
        with telemetry.audit_span("tools/call", tool, entry_id="entry-1"):
            pass
        with telemetry.backend_span("crm", "update_record") as backend:
            sent = inject_meta(forwardable_meta(meta))
            if backend_failure is not None:
                raise backend_failure
            result = backend_result or {"content": [{"type": "text", "text": "done"}]}
            backend.record_result(result)
        call.record_result(result)
    return sent


# -- spans ---------------------------------------------------------------------------------------


def test_request_span_is_named_and_attributed_per_the_mcp_conventions(recorded: Recorded) -> None:
    simulate_call(recorded.telemetry)

    request = recorded.span("tools/call crm.update_record")
    assert request.kind is SpanKind.SERVER
    assert dict(request.attributes or {}) == {
        "mcp.method.name": "tools/call",
        "mcp.protocol.version": "2025-11-25",
        "network.transport": "tcp",
        "jsonrpc.request.id": "7",
        "mcp.session.id": "session-1",
        "gateway.agent": "billing-agent",
        "gen_ai.tool.name": "crm.update_record",
        "gen_ai.operation.name": "execute_tool",
        "gateway.connector": "crm",
    }
    assert request.status.status_code is StatusCode.UNSET
    assert request.resource.attributes["service.name"] == "autonomy-gateway"


def test_resource_uris_stay_out_of_span_names(recorded: Recorded) -> None:
    uri = "crm://customers/4711"
    with recorded.telemetry.request_span(
        a_call("resources/read", uri, request_id="r-1", session_id=None, protocol_version="2025-11-25")
    ):
        pass
    with recorded.telemetry.request_span(
        a_call("prompts/get", "crm.summary", request_id=2, session_id=None, protocol_version="2025-11-25")
    ):
        pass

    read = recorded.span("resources/read")
    assert read.attributes is not None
    assert read.attributes["mcp.resource.uri"] == uri
    assert read.attributes["jsonrpc.request.id"] == "r-1"
    prompt = recorded.span("prompts/get crm.summary")
    assert prompt.attributes is not None
    assert prompt.attributes["gen_ai.prompt.name"] == "crm.summary"
    assert "gen_ai.operation.name" not in prompt.attributes


def test_stage_spans_are_children_of_the_request_span(recorded: Recorded) -> None:
    simulate_call(recorded.telemetry)
    with recorded.telemetry.request_span(
        a_call("tools/call", "crm.delete_record", request_id=8, session_id="session-1", protocol_version="2025-11-25")
    ):
        with recorded.telemetry.hold_span("tools/call", "crm.delete_record", approval_id="appr-9") as hold:
            hold.set_attribute("gateway.approval.outcome", "approved")

    request = recorded.span("tools/call crm.update_record")
    policy = recorded.span("gateway.policy")
    audit = recorded.span("gateway.audit")
    backend = recorded.span("tools/call update_record")
    for child in (policy, audit, backend):
        assert child.parent is not None
        assert child.parent.span_id == request.context.span_id
        assert child.context.trace_id == request.context.trace_id
    assert policy.kind is SpanKind.INTERNAL
    assert audit.kind is SpanKind.INTERNAL
    assert backend.kind is SpanKind.CLIENT
    assert policy.attributes is not None and audit.attributes is not None and backend.attributes is not None
    assert policy.attributes["gateway.policy.decision"] == "allow"
    assert tuple(policy.attributes["gateway.policy.ids"]) == ("access/crm.cedar#0",)
    assert audit.attributes["gateway.audit.entry_id"] == "entry-1"
    assert backend.attributes["gateway.connector"] == "crm"
    assert backend.attributes["gen_ai.tool.name"] == "update_record"
    assert backend.attributes["mcp.method.name"] == "tools/call"

    held = recorded.span("gateway.hold")
    assert held.parent is not None
    assert held.parent.span_id == recorded.span("tools/call crm.delete_record").context.span_id
    assert held.attributes is not None
    assert held.attributes["gateway.approval.id"] == "appr-9"
    assert held.attributes["gateway.approval.outcome"] == "approved"


def test_the_agents_traceparent_in_meta_makes_our_spans_part_of_its_trace(recorded: Recorded) -> None:
    sent = simulate_call(recorded.telemetry, meta={"traceparent": CLIENT_TRACEPARENT, "tracestate": "agent=1"})

    request = recorded.span("tools/call crm.update_record")
    assert hex_trace(request) == CLIENT_TRACE_ID
    assert request.parent is not None and request.parent.is_remote
    assert format(request.parent.span_id, "016x") == CLIENT_SPAN_ID

    backend = recorded.span("tools/call update_record")
    assert sent is not None
    version, trace_id, parent_id, flags = sent["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", CLIENT_TRACE_ID, "01")
    assert parent_id == format(backend.context.span_id, "016x")  # the backend's parent is our CLIENT span
    assert sent["tracestate"] == "agent=1"


def test_trace_context_comes_from_meta_first_then_headers_and_ignores_junk() -> None:
    other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    from_meta = extract_context({"traceparent": CLIENT_TRACEPARENT}, {"traceparent": other})
    from_headers = extract_context({"progressToken": 3}, {"traceparent": other})
    assert from_meta is not None and from_headers is not None
    assert format(trace.get_current_span(from_meta).get_span_context().trace_id, "032x") == CLIENT_TRACE_ID
    assert trace.get_current_span(from_headers).get_span_context().span_id == 0xB7AD6B7169203331
    assert extract_context({"traceparent": 12345}, None) is None
    assert extract_context({"traceparent": "00-not-a-trace-01"}, {"traceparent": "garbage"}) is None
    assert extract_context(None, None) is None


def test_junk_trace_context_starts_a_fresh_trace(recorded: Recorded) -> None:
    simulate_call(recorded.telemetry, meta={"traceparent": {"nested": "object"}})
    request = recorded.span("tools/call crm.update_record")
    assert request.parent is None


def test_injection_keeps_other_meta_and_passes_through_without_a_span() -> None:
    meta = {"traceparent": CLIENT_TRACEPARENT, "custom.example/key": "kept"}
    assert inject_meta(meta) == meta  # no current span: the agent's context goes on unchanged
    assert inject_meta(None) is None
    assert inject_meta({}) is None

    recorded = Recorded()
    try:
        with recorded.telemetry.backend_span("rest", "create_invoice") as backend:
            headers = inject_headers({"Authorization": "Bearer backend-key", "TraceParent": "stale"})
            sent = inject_meta(meta)
        span_id = format(backend.span.get_span_context().span_id, "016x")
        assert headers["Authorization"] == "Bearer backend-key"
        assert "TraceParent" not in headers
        assert headers["traceparent"].split("-")[2] == span_id
        assert sent is not None
        assert sent["custom.example/key"] == "kept"
        assert sent["traceparent"].split("-")[2] == span_id
    finally:
        recorded.telemetry.shutdown()


def test_a_failing_stage_sets_error_type_on_its_span_and_the_request(recorded: Recorded) -> None:
    with pytest.raises(BackendTimeout):
        simulate_call(recorded.telemetry, backend_failure=BackendTimeout("backend 'crm' did not answer within 30s"))

    backend = recorded.span("tools/call update_record")
    request = recorded.span("tools/call crm.update_record")
    for span in (backend, request):
        assert span.attributes is not None
        assert span.attributes["error.type"] == "BackendTimeout"
        assert span.status.status_code is StatusCode.ERROR
    assert recorded.span("gateway.policy").status.status_code is StatusCode.UNSET


def test_a_denied_call_and_a_tool_error_are_failures_too(recorded: Recorded) -> None:
    telemetry = recorded.telemetry
    with (
        pytest.raises(PolicyDenied),
        telemetry.request_span(
            a_call("tools/call", "crm.wipe", request_id=1, session_id=None, protocol_version="2025-11-25")
        ) as call,
    ):
        call.resolved("crm")
        with telemetry.policy_span("tools/call", "crm.wipe") as policy:
            policy.decided("deny", policy_ids=("access/deny-wipe.cedar#0",))
        raise PolicyDenied("wiping is not allowed", policy_ids=("access/deny-wipe.cedar#0",))
    simulate_call(telemetry, tool="crm.lookup", backend_result={"isError": True, "content": []})

    denied = recorded.span("tools/call crm.wipe")
    assert denied.attributes is not None
    assert denied.attributes["error.type"] == "PolicyDenied"
    tool_error = recorded.span("tools/call crm.lookup")
    assert tool_error.attributes is not None
    assert tool_error.attributes["error.type"] == "tool_error"
    assert tool_error.status.status_code is StatusCode.ERROR
    policy_spans = [s for s in recorded.spans() if s.name == "gateway.policy"]
    assert {attrs(s)["gateway.policy.decision"] for s in policy_spans} == {"deny", "allow"}
    assert all(s.status.status_code is StatusCode.UNSET for s in policy_spans)  # a deny is a decision, not an error


# -- metrics -------------------------------------------------------------------------------------


def test_metrics_have_the_conventional_names_units_and_attributes(recorded: Recorded) -> None:
    telemetry = recorded.telemetry
    simulate_call(telemetry)
    with pytest.raises(BackendTimeout):
        simulate_call(telemetry, backend_failure=BackendTimeout("slow"))
    with telemetry.policy_span("tools/call", "crm.delete_record") as policy:
        policy.decided("hold")
    with telemetry.audit_write(12):
        pass
    telemetry.watch_backends(lambda: {"crm": True, "erp": False})
    telemetry.watch_sessions(lambda: 3)

    metrics = recorded.metrics()
    operation = metrics["mcp.server.operation.duration"]
    assert operation.unit == "s"
    attributes = [dict(point.attributes) for point in operation.data.data_points]
    assert {
        "mcp.method.name": "tools/call",
        "mcp.protocol.version": "2025-11-25",
        "network.transport": "tcp",
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "crm.update_record",
    } in attributes
    assert any(a.get("error.type") == "BackendTimeout" for a in attributes)
    assert all("mcp.session.id" not in a and "jsonrpc.request.id" not in a for a in attributes)
    assert all(point.count == 1 and point.sum > 0 for point in operation.data.data_points)

    decisions = {
        (p.attributes["gateway.policy.decision"], p.attributes["mcp.method.name"]): p.value
        for p in metrics["gateway.policy.decisions"].data.data_points
    }
    assert decisions == {("allow", "tools/call"): 2, ("hold", "tools/call"): 1}

    backend = {
        p.attributes["gateway.outcome"]: (p.attributes["gateway.connector"], p.count)
        for p in metrics["gateway.backend.call.duration"].data.data_points
    }
    assert backend == {"ok": ("crm", 1), "BackendTimeout": ("crm", 1)}
    assert metrics["gateway.backend.call.duration"].unit == "s"

    assert metrics["gateway.audit.write.duration"].unit == "s"
    (batch,) = metrics["gateway.audit.batch.size"].data.data_points
    assert (batch.count, batch.sum) == (1, 12)
    health = {p.attributes["gateway.connector"]: p.value for p in metrics["gateway.backend.health"].data.data_points}
    assert health == {"crm": 1, "erp": 0}
    (sessions,) = metrics["gateway.sessions.active"].data.data_points
    assert sessions.value == 3


def test_an_unknown_tool_name_never_becomes_a_metric_label(recorded: Recorded) -> None:
    """Tool names an agent invents are its input; only catalog names may mint time series."""
    with (
        pytest.raises(UnknownTool),
        recorded.telemetry.request_span(
            a_call("tools/call", "made.up.tool-123", request_id=1, session_id="s", protocol_version="2025-11-25")
        ),
    ):
        raise UnknownTool("no tool named 'made.up.tool-123'")

    (point,) = recorded.points("mcp.server.operation.duration")
    assert "gen_ai.tool.name" not in point.attributes
    assert point.attributes["error.type"] == "UnknownTool"
    assert attrs(recorded.span("tools/call made.up.tool-123"))["gen_ai.tool.name"] == "made.up.tool-123"


def _scrape(telemetry: Telemetry, accept: str | None = None) -> Any:
    app = Starlette(routes=[Route("/metrics", endpoint=telemetry.metrics_endpoint)])
    with TestClient(app) as client:
        return client.get("/metrics", headers={"accept": accept} if accept else {})


def test_metrics_endpoint_serves_prometheus_text_that_parses(recorded: Recorded) -> None:
    simulate_call(recorded.telemetry)
    recorded.telemetry.watch_backends(lambda: {"crm": True})

    response = _scrape(recorded.telemetry)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}

    operation = families["mcp_server_operation_duration_seconds"]
    assert operation.type == "histogram"
    buckets = [s for s in operation.samples if s.name == "mcp_server_operation_duration_seconds_bucket"]
    assert {float(s.labels["le"]) for s in buckets} >= {0.001, 0.01, 0.1, 1.0, 300.0, float("inf")}
    assert all(s.labels["mcp_method_name"] == "tools/call" for s in buckets)
    assert all(s.labels["gen_ai_tool_name"] == "crm.update_record" for s in buckets)
    assert families["gateway_policy_decisions"].type == "counter"
    assert families["gateway_backend_call_duration_seconds"].type == "histogram"
    (health,) = families["gateway_backend_health"].samples
    assert (health.labels["gateway_connector"], health.value) == ("crm", 1.0)

    openmetrics = _scrape(recorded.telemetry, accept="application/openmetrics-text; version=1.0.0")
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")


def test_metrics_stay_out_of_the_default_prometheus_registry(recorded: Recorded) -> None:
    simulate_call(recorded.telemetry)
    default_names = {family.name for family in REGISTRY.collect()}
    assert not any(name.startswith(("mcp_", "gateway_")) for name in default_names)


def test_metrics_endpoint_says_when_metrics_are_disabled() -> None:
    telemetry = Telemetry(TelemetrySettings(metrics_enabled=False))
    try:
        simulate_call(telemetry)
        response = _scrape(telemetry)
        assert response.status_code == 404
        assert "metrics_enabled = false" in response.text
    finally:
        telemetry.shutdown()


# -- arguments and secrets -----------------------------------------------------------------------


def _everything_recorded(recorded: Recorded, scrape: str) -> str:
    spans = "\n".join(span.to_json() for span in recorded.spans())
    data = recorded.reader.get_metrics_data()
    assert data is not None
    return "\n".join([spans, data.to_json(), scrape])


def test_arguments_never_reach_telemetry_by_default(recorded: Recorded) -> None:
    arguments = {"account": "42", "password": CANARY}
    simulate_call(recorded.telemetry, arguments=arguments)
    with pytest.raises(BackendError):
        # A backend's own message may echo an argument: it must not land on a span either.
        simulate_call(recorded.telemetry, arguments=arguments, backend_failure=BackendError(CANARY, code=-32602))

    text = _everything_recorded(recorded, _scrape(recorded.telemetry).text)
    assert "crm.update_record" in text
    assert CANARY not in text
    assert "gen_ai.tool.call.arguments" not in text


def test_recorded_arguments_are_only_ever_the_redacted_ones() -> None:
    def redact(arguments: Any) -> Any:
        return {key: "[REDACTED]" if key == "password" else value for key, value in arguments.items()}

    recorded = Recorded(TelemetrySettings(record_arguments=True), redact=redact)
    try:
        simulate_call(recorded.telemetry, arguments={"account": "42", "password": CANARY})
        request = recorded.span("tools/call crm.update_record")
        assert request.attributes is not None
        assert json.loads(str(request.attributes["gen_ai.tool.call.arguments"])) == {
            "account": "42",
            "password": "[REDACTED]",
        }
        assert CANARY not in _everything_recorded(recorded, _scrape(recorded.telemetry).text)
    finally:
        recorded.telemetry.shutdown()


def test_recording_arguments_without_a_redaction_is_refused() -> None:
    with pytest.raises(ConfigError, match="record_arguments"):
        Telemetry(TelemetrySettings(record_arguments=True))


# -- export --------------------------------------------------------------------------------------


class Collector:
    """A tiny OTLP/HTTP collector on 127.0.0.1 that keeps every POST it receives."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def paths(self) -> set[str]:
        return {path for path, _, _ in self.received}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    collector = Collector()
    yield collector
    collector.close()


def test_otlp_export_reaches_the_configured_collector(collector: Collector) -> None:
    settings = TelemetrySettings(
        service_name="gateway-under-test", otlp_endpoint=collector.url + "/", otlp_headers={"x-api-key": "k-123"}
    )
    telemetry = Telemetry(settings)
    try:
        assert telemetry.install()
        simulate_call(telemetry)
        assert telemetry.force_flush()
        wait_until(lambda: {"/v1/traces", "/v1/metrics"} <= collector.paths(), timeout=10, what="OTLP exports")
    finally:
        telemetry.shutdown()

    assert {"/v1/traces", "/v1/metrics"} <= collector.paths()
    traces = [(h, b) for p, h, b in collector.received if p == "/v1/traces"]
    headers, body = traces[0]
    assert headers["content-type"] == "application/x-protobuf"
    assert headers["x-api-key"] == "k-123"
    exported = ExportTraceServiceRequest.FromString(body)
    names = {span.name for rs in exported.resource_spans for ss in rs.scope_spans for span in ss.spans}
    assert {"tools/call crm.update_record", "gateway.policy", "gateway.audit", "tools/call update_record"} <= names
    service = {
        kv.value.string_value
        for rs in exported.resource_spans
        for kv in rs.resource.attributes
        if kv.key == "service.name"
    }
    assert service == {"gateway-under-test"}

    metrics_body = next(b for p, _, b in collector.received if p == "/v1/metrics")
    exported_metrics = ExportMetricsServiceRequest.FromString(metrics_body)
    metric_names = {
        metric.name for rm in exported_metrics.resource_metrics for sm in rm.scope_metrics for metric in sm.metrics
    }
    assert {
        "mcp.server.operation.duration",
        "gateway.policy.decisions",
        "gateway.backend.call.duration",
    } <= metric_names


def test_nothing_is_exported_without_an_endpoint(collector: Collector, monkeypatch: pytest.MonkeyPatch) -> None:
    # Even the standard environment variables must not switch export on behind the operator's back.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    telemetry = Telemetry(TelemetrySettings())
    try:
        assert telemetry.span_exporters == ()
        assert [type(reader) for reader in telemetry.metric_readers] == [PrometheusMetricReader]
        assert isinstance(telemetry.tracer_provider, trace.NoOpTracerProvider)
        telemetry.install()
        with telemetry.request_span(
            a_call(
                "tools/call",
                "crm.lookup",
                request_id=1,
                session_id=None,
                protocol_version="2025-11-25",
                meta={"traceparent": CLIENT_TRACEPARENT},
            )
        ) as call:
            # Not recorded, yet the agent's trace goes on: log lines and backends still see it.
            assert not call.span.is_recording()
            assert format(call.span.get_span_context().trace_id, "032x") == CLIENT_TRACE_ID
            assert inject_meta({}) == {"traceparent": CLIENT_TRACEPARENT}
        simulate_call(telemetry)
        assert telemetry.force_flush()
    finally:
        telemetry.shutdown()
    assert collector.received == []


def test_grpc_export_needs_its_package_and_says_so() -> None:
    settings = TelemetrySettings(otlp_endpoint="http://127.0.0.1:4317", otlp_protocol="grpc")
    if importlib.util.find_spec("opentelemetry.exporter.otlp.proto.grpc") is None:
        with pytest.raises(ConfigError, match="opentelemetry-exporter-otlp-proto-grpc"):
            Telemetry(settings)
    else:
        telemetry = Telemetry(settings)
        assert type(telemetry.span_exporters[0]).__module__.startswith("opentelemetry.exporter.otlp.proto.grpc")
        telemetry.shutdown()


def test_settings_are_strict() -> None:
    with pytest.raises(ValidationError):
        TelemetrySettings(otlp_endpont="http://typo:4318")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="http"):
        TelemetrySettings(otlp_endpoint="collector:4318")
    with pytest.raises(ValidationError):
        TelemetrySettings(trace_sample_ratio=1.5)
    settings = TelemetrySettings(otlp_headers={"authorization": "Bearer secret-token"})
    assert "secret-token" not in repr(settings)
    with pytest.raises(ValidationError):
        settings.service_name = "other"  # type: ignore[misc]


# -- logs ----------------------------------------------------------------------------------------


def test_log_lines_carry_the_trace_and_span_of_the_current_request(recorded: Recorded) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("gateway.test_telemetry")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    install_log_correlation(logger)
    install_log_correlation(logger)  # twice is harmless

    try:
        with recorded.telemetry.request_span(
            a_call("tools/call", "crm.lookup", request_id=1, session_id=None, protocol_version="2025-11-25")
        ) as call:
            logging.getLogger("gateway.test_telemetry").info("inside", extra={"connector": "crm"})
        logger.info("outside")
    finally:
        logger.handlers[:] = []

    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    context = call.span.get_span_context()
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert inside["connector"] == "crm"
    assert "trace_id" not in outside and "span_id" not in outside
    assert len(handler.filters) == 1


# -- with the real mcp SDK -----------------------------------------------------------------------

_RAW: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _for(protocol_version: str, result: dict[str, Any], **modern: Any) -> dict[str, Any]:
    if protocol_version in MODERN_PROTOCOL_VERSIONS:
        return {"resultType": "complete", **modern, **result}
    return result


def _tool_listing(ctx: Any, names: tuple[str, ...]) -> dict[str, Any]:
    tools = [{"name": name, "inputSchema": {"type": "object"}} for name in names]
    return _for(ctx.protocol_version, {"tools": tools}, ttlMs=0, cacheScope="private")


@asynccontextmanager
async def _gateway_and_backend(telemetry: Telemetry, mode: str) -> AsyncIterator[str]:
    """A backend MCP server and a gateway-shaped MCP server on one real local HTTP server."""
    backend_client: list[Client] = []

    async def backend_call(ctx: Any, params: types.CallToolRequestParams) -> dict[str, Any]:
        seen = {k: v for k, v in ((ctx.params or {}).get("_meta") or {}).items() if k in ("traceparent", "tracestate")}
        return _for(ctx.protocol_version, {"content": [{"type": "text", "text": json.dumps(seen)}]})

    async def backend_list(ctx: Any, params: Any) -> dict[str, Any]:
        return _tool_listing(ctx, ("lookup",))

    async def gateway_call(ctx: Any, params: types.CallToolRequestParams) -> dict[str, Any]:
        meta = (ctx.params or {}).get("_meta")
        with telemetry.request_span(
            a_call(
                "tools/call",
                params.name,
                request_id=ctx.request_id,
                session_id=ctx.request.headers.get("mcp-session-id"),
                protocol_version=ctx.protocol_version,
                agent="billing-agent",
                transport="tcp",
                meta=meta,
            )
        ) as call:
            call.resolved("crm")
            with telemetry.policy_span("tools/call", params.name) as policy:
                policy.decided("allow")
            with telemetry.audit_span("tools/call", params.name):
                await anyio.lowlevel.checkpoint()
            with telemetry.backend_span("crm", "lookup") as backend:
                request = types.CallToolRequest(
                    params=types.CallToolRequestParams(
                        name="lookup", arguments={}, _meta=inject_meta(forwardable_meta(meta))
                    )
                )
                result = await backend_client[0].session.send_request(request, _RAW)
                backend.record_result(result)
            call.record_result(result)
        return _for(ctx.protocol_version, {k: v for k, v in result.items() if k in ("content", "isError")})

    async def gateway_list(ctx: Any, params: Any) -> dict[str, Any]:
        return _tool_listing(ctx, ("crm.lookup",))

    backend_sessions = StreamableHTTPSessionManager(
        app=Server("backend", on_call_tool=backend_call, on_list_tools=backend_list)
    )
    gateway_sessions = StreamableHTTPSessionManager(
        app=Server("gateway", on_call_tool=gateway_call, on_list_tools=gateway_list)
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with backend_sessions.run(), gateway_sessions.run():
            yield

    app = Starlette(
        routes=[
            Route("/backend/mcp", endpoint=backend_sessions.asgi_app),
            Route("/gateway/mcp", endpoint=gateway_sessions.asgi_app),
        ],
        lifespan=lifespan,
    )
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(server.serve)
        await eventually(lambda: server.started, timeout=10, what="the local HTTP server to start")
        try:
            async with (
                httpx2.AsyncClient() as http,
                Client(
                    streamable_http_client(f"http://127.0.0.1:{port}/backend/mcp", http_client=http), mode=mode
                ) as backend,
            ):
                backend_client.append(backend)
                yield f"http://127.0.0.1:{port}/gateway/mcp"
        finally:
            server.should_exit = True


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_one_trace_runs_agent_to_gateway_to_backend_with_the_sdks_spans(recorded: Recorded, mode: str) -> None:
    async with _gateway_and_backend(recorded.telemetry, mode) as url:
        async with (
            httpx2.AsyncClient() as http,
            Client(streamable_http_client(url, http_client=http), mode=mode) as agent,
        ):
            recorded.exporter.clear()
            result = await agent.call_tool("crm.lookup", {})
    seen_by_backend = json.loads(result.content[0].text)  # type: ignore[union-attr]

    spans = recorded.spans()
    by_id = {span.context.span_id: span for span in spans}

    def parent(span: ReadableSpan) -> ReadableSpan:
        assert span.parent is not None, f"{span.name} has no parent"
        return by_id[span.parent.span_id]

    agent_send = recorded.span("MCP send tools/call crm.lookup")
    (gateway_server,) = [s for s in spans if s.name == "tools/call crm.lookup"]
    backend_client = recorded.span("MCP send tools/call lookup")
    ours_to_backend, backend_server = sorted(
        (s for s in spans if s.name == "tools/call lookup"), key=lambda s: s.kind is SpanKind.SERVER
    )

    # One SERVER span for the agent's request: the SDK's, enriched with what the gateway knows.
    assert gateway_server.kind is SpanKind.SERVER
    assert gateway_server.instrumentation_scope is not None
    assert gateway_server.instrumentation_scope.name == "mcp-python-sdk"
    assert gateway_server.attributes is not None
    assert gateway_server.attributes["gateway.agent"] == "billing-agent"
    assert gateway_server.attributes["gateway.connector"] == "crm"
    assert gateway_server.attributes["network.transport"] == "tcp"
    if mode == "legacy":
        assert gateway_server.attributes["mcp.session.id"]

    # agent → gateway (SDK server span) → our stages → SDK client span → backend (SDK server span)
    assert parent(gateway_server) is agent_send
    assert parent(recorded.span("gateway.policy")) is gateway_server
    assert parent(recorded.span("gateway.audit")) is gateway_server
    assert ours_to_backend.kind is SpanKind.CLIENT and parent(ours_to_backend) is gateway_server
    assert parent(backend_client) is ours_to_backend
    assert backend_server.kind is SpanKind.SERVER and parent(backend_server) is backend_client
    assert len({span.context.trace_id for span in (agent_send, gateway_server, ours_to_backend, backend_server)}) == 1

    # What reached the backend on the wire names the SDK's client span as the parent.
    assert seen_by_backend["traceparent"].split("-")[2] == format(backend_client.context.span_id, "016x")
