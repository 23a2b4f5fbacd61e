"""Building the tracer and meter providers, and making ours the one the `mcp` SDK uses.

The SDK creates its own spans (a SERVER span per request it serves, a CLIENT span per request it
sends) through OpenTelemetry's process-wide tracer provider, and it binds to that provider on its
first span, for good. So the gateway sets a small forwarding provider process-wide once and points
it at the installed `Telemetry`: the SDK's spans land in the same provider, sampler and exporters as
the gateway's own, and a test or a second app in the same process can install another.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased
from opentelemetry.util.types import Attributes

from gateway.errors import ConfigError
from gateway.settings.telemetry import TelemetrySettings

logger = logging.getLogger(__name__)

_GRPC_PACKAGE = "opentelemetry-exporter-otlp-proto-grpc"


def build_tracer_provider(
    resource: Resource, *, otlp: SpanExporter | None, extra: Sequence[SpanExporter], sample_ratio: float
) -> trace.TracerProvider:
    """An SDK provider when something will export spans; otherwise OpenTelemetry's no-op one.

    Recording spans nobody exports would cost about 20 µs each on the hot path for nothing. The
    no-op tracer still carries the agent's trace context forward as the current span, so log lines
    get the agent's trace id and backends receive the agent's `traceparent`, unchanged.
    Sampling is parent-based: an agent that sampled its trace gets the gateway's spans in it.
    """
    if otlp is None and not extra:
        return trace.NoOpTracerProvider()
    root = ALWAYS_ON if sample_ratio >= 1.0 else TraceIdRatioBased(sample_ratio)
    provider = TracerProvider(resource=resource, sampler=ParentBased(root))
    if otlp is not None:
        provider.add_span_processor(BatchSpanProcessor(otlp))
    for exporter in extra:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def otlp_span_exporter(settings: TelemetrySettings) -> SpanExporter | None:
    if settings.otlp_endpoint is None:
        return None
    headers = _headers(settings)
    if settings.otlp_protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
        except ImportError as exc:
            raise _grpc_missing() from exc
        exporter: SpanExporter = GrpcSpanExporter(endpoint=settings.otlp_endpoint, headers=headers)
        return exporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=f"{settings.otlp_endpoint}/v1/traces", headers=headers)


def otlp_metric_reader(settings: TelemetrySettings) -> MetricReader | None:
    if settings.otlp_endpoint is None:
        return None
    headers = _headers(settings)
    if settings.otlp_protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter as GrpcMetricExporter,
            )
        except ImportError as exc:
            raise _grpc_missing() from exc
        exporter: Any = GrpcMetricExporter(endpoint=settings.otlp_endpoint, headers=headers)
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        exporter = OTLPMetricExporter(endpoint=f"{settings.otlp_endpoint}/v1/metrics", headers=headers)
    return PeriodicExportingMetricReader(exporter, export_interval_millis=settings.metrics_export_interval * 1000)


def _headers(settings: TelemetrySettings) -> dict[str, str]:
    return {name: value.get_secret_value() for name, value in settings.otlp_headers.items()}


def _grpc_missing() -> ConfigError:
    return ConfigError(
        f"[telemetry] otlp_protocol = 'grpc' needs the {_GRPC_PACKAGE} package, which is not installed; "
        "install it, or use otlp_protocol = 'http/protobuf' (port 4318 on most collectors)"
    )


# -- the process-wide provider the SDK binds to ---------------------------------------------------


class _ForwardingTracer(trace.Tracer):
    """Starts each span on the tracer of whichever provider is installed at that moment."""

    def __init__(self, process: _ProcessTracerProvider, key: tuple[Any, ...]) -> None:
        self._process = process
        self._key = key
        self._for: trace.TracerProvider | None = None
        self._tracer: trace.Tracer = trace.NoOpTracer()

    def _current(self) -> trace.Tracer:
        target = self._process.target
        if target is not self._for:
            self._tracer = target.get_tracer(*self._key)
            self._for = target
        return self._tracer

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        return self._current().start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:  # the target's context manager
        return self._current().start_as_current_span(*args, **kwargs)


class _ProcessTracerProvider(trace.TracerProvider):
    def __init__(self) -> None:
        self.target: trace.TracerProvider = trace.NoOpTracerProvider()

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes | Mapping[str, Any] | None = None,
    ) -> trace.Tracer:
        return _ForwardingTracer(
            self, (instrumenting_module_name, instrumenting_library_version, schema_url, attributes)
        )


def install_tracer_provider(provider: trace.TracerProvider) -> bool:
    """Make `provider` the one every library's spans (the SDK's included) go to; False if another owns it."""
    process = trace.get_tracer_provider()
    if not isinstance(process, _ProcessTracerProvider):
        trace.set_tracer_provider(_ProcessTracerProvider())
        process = trace.get_tracer_provider()
        if not isinstance(process, _ProcessTracerProvider):
            logger.warning(
                "another OpenTelemetry tracer provider is installed in this process; the mcp SDK's spans "
                "go to it and will not nest with the gateway's"
            )
            return False
    process.target = provider
    return True


def uninstall_tracer_provider(provider: trace.TracerProvider) -> None:
    """Stop sending process-wide spans to `provider` (when it is still the installed one)."""
    process = trace.get_tracer_provider()
    if isinstance(process, _ProcessTracerProvider) and process.target is provider:
        process.target = trace.NoOpTracerProvider()
