"""OpenTelemetry traces and metrics for the gateway, following the MCP semantic conventions.

`Telemetry` is built once from `TelemetrySettings` and passed to the parts that report: the
pipeline opens a `request_span` per agent request and a span per stage inside it, the audit
recorder times its group commits, the runtime tells the gauges where backend health and session
counts come from, and the app serves `metrics_endpoint` at `/metrics`. `install()` makes the
gateway's tracer provider the one the `mcp` SDK reports to, so the SDK's own spans (the SERVER span
of each agent request, the CLIENT span of each backend request) and the gateway's share one trace:
agent → gateway (SDK server span, enriched) → policy, audit, backend stages → SDK client span →
backend.

With no OTLP endpoint (and no exporter passed in) tracing is OpenTelemetry's no-op: nothing is
recorded or sent, yet the agent's trace context still flows through as the current span, so log
lines carry the agent's trace id and backends receive the agent's `traceparent` unchanged.
Metrics are independent of that: served at `/metrics` unless `metrics_enabled = false`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import Response

from gateway import __version__
from gateway.calls import Call
from gateway.errors import ConfigError
from gateway.settings.telemetry import TelemetrySettings
from gateway.telemetry.instruments import ActiveSessionsSource, BackendHealthSource, Gauges, create_instruments
from gateway.telemetry.log_correlation import TraceContextFilter, install_log_correlation
from gateway.telemetry.prometheus import metrics_response, prometheus_reader
from gateway.telemetry.propagation import extract_context, inject_headers, inject_meta
from gateway.telemetry.providers import (
    build_tracer_provider,
    install_tracer_provider,
    otlp_metric_reader,
    otlp_span_exporter,
    uninstall_tracer_provider,
)
from gateway.telemetry.spans import (
    AuditWrite,
    BackendTrace,
    PolicyTrace,
    Redact,
    RequestTrace,
    StageTrace,
    after_answer,
    span_name,
    target_attributes,
)

__all__ = [
    "AuditWrite",
    "BackendTrace",
    "PolicyTrace",
    "Redact",
    "RequestTrace",
    "StageTrace",
    "Telemetry",
    "TraceContextFilter",
    "extract_context",
    "inject_headers",
    "inject_meta",
    "install_log_correlation",
]

_SCOPE = "gateway"


class Telemetry:
    """The gateway's tracer, meter and instruments, built once from settings.

    `span_exporters` and `metric_readers` add destinations besides OTLP (tests pass the SDK's
    in-memory ones). `redact` is required when `record_arguments` is on: arguments reach a span
    only through it.
    """

    def __init__(
        self,
        settings: TelemetrySettings,
        *,
        redact: Redact | None = None,
        span_exporters: Sequence[SpanExporter] = (),
        metric_readers: Sequence[MetricReader] = (),
    ) -> None:
        if settings.record_arguments and redact is None:
            raise ConfigError("[telemetry] record_arguments = true needs the audit log's redaction; none was given")
        self.settings = settings
        self._redact = redact if settings.record_arguments else None
        resource = Resource.create({"service.name": settings.service_name, "service.version": __version__})

        otlp_spans = otlp_span_exporter(settings)
        self.span_exporters: tuple[SpanExporter, ...] = (
            *((otlp_spans,) if otlp_spans is not None else ()),
            *span_exporters,
        )
        self.tracer_provider: trace.TracerProvider = build_tracer_provider(
            resource, otlp=otlp_spans, extra=tuple(span_exporters), sample_ratio=settings.trace_sample_ratio
        )
        self.tracer: trace.Tracer = self.tracer_provider.get_tracer(_SCOPE, __version__)

        self.prometheus_registry: CollectorRegistry | None = None
        self.metric_readers: tuple[MetricReader, ...] = ()
        if settings.metrics_enabled:
            reader, self.prometheus_registry = prometheus_reader()
            otlp_metrics = otlp_metric_reader(settings)
            self.metric_readers = (
                reader,
                *((otlp_metrics,) if otlp_metrics is not None else ()),
                *metric_readers,
            )
            self.meter_provider: metrics.MeterProvider = MeterProvider(
                resource=resource, metric_readers=self.metric_readers
            )
        else:
            self.meter_provider = metrics.NoOpMeterProvider()
        self.meter: metrics.Meter = self.meter_provider.get_meter(_SCOPE, __version__)
        self.instruments = create_instruments(self.meter)
        self._gauges = Gauges(self.meter)

    # -- lifetime ----------------------------------------------------------------------------

    def install(self) -> bool:
        """Route the process's OpenTelemetry spans (the `mcp` SDK's) here; False if another provider owns them."""
        return install_tracer_provider(self.tracer_provider)

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        """Export everything recorded so far (spans, and metrics when exported over OTLP)."""
        flushed = True
        if isinstance(self.tracer_provider, TracerProvider):
            flushed = self.tracer_provider.force_flush(timeout_millis)
        if isinstance(self.meter_provider, MeterProvider):
            flushed = self.meter_provider.force_flush(timeout_millis) and flushed
        return flushed

    def shutdown(self) -> None:
        """Flush, stop the exporters, and stop receiving the process's spans."""
        uninstall_tracer_provider(self.tracer_provider)
        if isinstance(self.tracer_provider, TracerProvider):
            self.tracer_provider.shutdown()
        if isinstance(self.meter_provider, MeterProvider):
            self.meter_provider.shutdown()

    # -- gauges ------------------------------------------------------------------------------

    def watch_backends(self, source: BackendHealthSource) -> None:
        """Report `gateway.backend.health` from `source()` ({connector: healthy?}) at each collection."""
        self._gauges.backend_health = source

    def watch_sessions(self, source: ActiveSessionsSource) -> None:
        """Report `gateway.sessions.active` from `source()` at each collection."""
        self._gauges.active_sessions = source

    # -- spans -------------------------------------------------------------------------------

    def request_span(self, call: Call) -> RequestTrace:
        """The span of one agent request (see `RequestTrace`); use as `with ... as trace:`.

        The call's `_meta` and its HTTP request's trace headers are read for the agent's trace
        context only when no SDK span already carries it.
        """
        method, target, origin = call.method, call.name, call.origin
        protocol_version, transport, request_id = origin.protocol_version, origin.transport, origin.request_id
        session_id, agent = origin.session_id, origin.principal.agent
        attributes: dict[str, Any] = {"mcp.method.name": method}
        metric_attributes: dict[str, Any] = {"mcp.method.name": method}
        if protocol_version:
            attributes["mcp.protocol.version"] = protocol_version
            metric_attributes["mcp.protocol.version"] = protocol_version
        if transport:
            attributes["network.transport"] = transport
            metric_attributes["network.transport"] = transport
        if method == "tools/call":
            metric_attributes["gen_ai.operation.name"] = "execute_tool"
        if request_id is not None:
            attributes["jsonrpc.request.id"] = str(request_id)
        if session_id:
            attributes["mcp.session.id"] = session_id
        if agent:
            attributes["gateway.agent"] = agent
        target_attributes(method, target, attributes)
        return RequestTrace(
            self.tracer,
            self.instruments.operation_duration,
            self._redact,
            method,
            target or "",
            attributes,
            metric_attributes,
            call.meta,
            origin.trace_headers,
        )

    def policy_span(self, method: str, target: str | None) -> PolicyTrace:
        """The decide stage; call `.decided(decision, policy_ids=...)` inside it."""
        attributes: dict[str, Any] = {"mcp.method.name": method}
        target_attributes(method, target, attributes)
        return PolicyTrace(self.tracer, self.instruments.policy_decisions, method, attributes)

    def hold_span(self, method: str, target: str | None, *, approval_id: str | None = None) -> StageTrace:
        """The hold stage: waiting for an approval (may last minutes; the span shows how long)."""
        attributes: dict[str, Any] = {"mcp.method.name": method}
        target_attributes(method, target, attributes)
        if approval_id:
            attributes["gateway.approval.id"] = approval_id
        return StageTrace(self.tracer, "gateway.hold", SpanKind.INTERNAL, attributes)

    def audit_span(self, method: str, target: str | None, *, entry_id: str | None = None) -> StageTrace:
        """The record stage: waiting until this call's audit entry is durable."""
        attributes: dict[str, Any] = {"mcp.method.name": method}
        target_attributes(method, target, attributes)
        if entry_id:
            attributes["gateway.audit.entry_id"] = entry_id
        return StageTrace(self.tracer, "gateway.audit", SpanKind.INTERNAL, attributes)

    def backend_span(self, connector: str, target: str | None, *, method: str = "tools/call") -> BackendTrace:
        """The forward stage: a CLIENT span `{method} {backend's tool name}` and its duration metric.

        Send `inject_meta(...)` (MCP backends) or `inject_headers(...)` (HTTP backends) from inside
        it, so the backend's spans become its children.
        """
        attributes: dict[str, Any] = {"mcp.method.name": method, "gateway.connector": connector}
        target_attributes(method, target, attributes)
        metric_attributes: dict[str, Any] = {"mcp.method.name": method, "gateway.connector": connector}
        return BackendTrace(
            self.tracer,
            self.instruments.backend_call_duration,
            span_name(method, target),
            attributes,
            metric_attributes,
        )

    def audit_write(self, batch_size: int) -> AuditWrite:
        """Time one group commit of `batch_size` audit entries: `with telemetry.audit_write(len(batch)):`."""
        return AuditWrite(self.instruments.audit_write_duration, self.instruments.audit_batch_size, batch_size)

    def audit_committed(self, batch_size: int, seconds: float) -> None:
        """Record one audit group commit measured by the recorder itself (its `on_batch` hook).

        After the callers have their answer, like every measurement on a call's path: a caller
        that writes its own entry resumes only once the recorder returns from this hook.
        """
        after_answer(self.instruments.audit_write_duration.record, seconds, {"gateway.outcome": "ok"})
        after_answer(self.instruments.audit_batch_size.record, batch_size, {"gateway.outcome": "ok"})

    # -- /metrics ----------------------------------------------------------------------------

    async def metrics_endpoint(self, request: Request) -> Response:
        """Starlette endpoint for `/metrics` (Prometheus text; OpenMetrics when asked for)."""
        return metrics_response(self.prometheus_registry, request)
