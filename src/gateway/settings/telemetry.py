"""What an operator configures about traces and metrics: the `[telemetry]` table of gateway.toml.

Nothing leaves the process unless `otlp_endpoint` is set: a gateway sees every agent's calls, so
exporting them is a decision the operator makes, never a default. Argument values stay out of
spans for the same reason unless `record_arguments` is on, and even then only redacted.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from gateway.settings.base import SettingsModel


class TelemetrySettings(SettingsModel):
    service_name: str = Field(default="autonomy-gateway", min_length=1, description="`service.name` of every span.")
    otlp_endpoint: str | None = Field(
        default=None,
        description=(
            "Base URL of an OTLP collector, e.g. http://collector:4318 (http/protobuf: /v1/traces and "
            "/v1/metrics are appended) or http://collector:4317 (grpc). Unset: nothing is exported."
        ),
    )
    otlp_protocol: Literal["http/protobuf", "grpc"] = Field(
        default="http/protobuf",
        description="How to reach the collector; `grpc` needs the OTLP gRPC exporter installed.",
    )
    otlp_headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Headers sent with every export, e.g. a vendor's API key (`${ENV}`)."
    )
    record_arguments: bool = Field(
        default=False,
        description="Put the call's arguments, redacted, on the request span (`gen_ai.tool.call.arguments`).",
    )
    trace_sample_ratio: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="Share of requests traced whose agent sent no trace context; an agent's own choice is kept.",
    )
    metrics_enabled: bool = Field(default=True, description="Serve /metrics and export metrics over OTLP.")
    metrics_export_interval: float = Field(
        default=60.0, gt=0, description="Seconds between OTLP metric exports (Prometheus scrapes pull instead)."
    )

    @field_validator("otlp_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value.startswith(("http://", "https://")):
            raise ValueError("otlp_endpoint must be an http:// or https:// URL, e.g. http://collector:4318")
        return value.rstrip("/")
