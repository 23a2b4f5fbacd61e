"""`/metrics`: the gateway's metrics in the Prometheus text format, from its own registry.

The OpenTelemetry Prometheus reader is registered with a `CollectorRegistry` of the gateway's,
never the `prometheus_client` default one, so two gateways (or a gateway and a test) in one process
never see each other's series, and nothing else in the process leaks into the scrape.
"""

from __future__ import annotations

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response


def prometheus_reader() -> tuple[PrometheusMetricReader, CollectorRegistry]:
    registry = CollectorRegistry(auto_describe=False)
    return PrometheusMetricReader(registry=registry), registry


def render(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """The scrape body and its content type (OpenMetrics when the scraper asks for it)."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


def metrics_response(registry: CollectorRegistry | None, request: Request) -> Response:
    if registry is None:
        return PlainTextResponse("metrics are disabled: [telemetry] metrics_enabled = false\n", status_code=404)
    body, content_type = render(registry, request.headers.get("accept"))
    return Response(body, headers={"content-type": content_type})
