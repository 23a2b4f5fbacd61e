"""The gateway's metric instruments: names, units and buckets in one place.

`mcp.server.operation.duration` follows the OpenTelemetry MCP conventions (histogram in seconds, the
convention's buckets) with four finer buckets below 10 ms in front, because a gateway call that
passes through in 2 ms would otherwise be indistinguishable from one that takes 9. Everything else
is the gateway's own and named `gateway.*`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Meter, Observation

#: The MCP conventions' boundaries, preceded by sub-10 ms ones.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
AUDIT_WRITE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
AUDIT_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

BackendHealthSource = Callable[[], Mapping[str, bool]]
"""Returns {connector name: healthy?} when metrics are read."""

ActiveSessionsSource = Callable[[], int]
"""Returns how many agent sessions are open when metrics are read."""


@dataclass(frozen=True, slots=True)
class Instruments:
    operation_duration: Histogram
    policy_decisions: Counter
    audit_write_duration: Histogram
    audit_batch_size: Histogram
    backend_call_duration: Histogram
    notification_deliveries: Counter


def create_instruments(meter: Meter) -> Instruments:
    return Instruments(
        operation_duration=meter.create_histogram(
            "mcp.server.operation.duration",
            unit="s",
            description="MCP request duration as observed by the gateway, from receipt until the result is ready.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        ),
        policy_decisions=meter.create_counter(
            "gateway.policy.decisions",
            unit="{decision}",
            description="Policy decisions, by decision (allow, deny, hold) and MCP method.",
        ),
        audit_write_duration=meter.create_histogram(
            "gateway.audit.write.duration",
            unit="s",
            description="Time to make one batch of audit entries durable.",
            explicit_bucket_boundaries_advisory=AUDIT_WRITE_BUCKETS,
        ),
        audit_batch_size=meter.create_histogram(
            "gateway.audit.batch.size",
            unit="{entry}",
            description="Audit entries written per group commit.",
            explicit_bucket_boundaries_advisory=AUDIT_BATCH_BUCKETS,
        ),
        backend_call_duration=meter.create_histogram(
            "gateway.backend.call.duration",
            unit="s",
            description="Duration of calls from the gateway to a backend, by connector and outcome.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        ),
        notification_deliveries=meter.create_counter(
            "gateway.notifications.deliveries",
            unit="{attempt}",
            description="Approval webhook delivery attempts, by webhook and outcome (delivered, retried, failed).",
        ),
    )


class Gauges:
    """Observable gauges whose values come from the parts that own them, read at collection time.

    The sources are set after the parts exist (`Telemetry.watch_backends`, `watch_sessions`); until
    then the gauges report nothing rather than a made-up zero.
    """

    def __init__(self, meter: Meter) -> None:
        self.backend_health: BackendHealthSource | None = None
        self.active_sessions: ActiveSessionsSource | None = None
        meter.create_observable_gauge(
            "gateway.backend.health",
            callbacks=[self._observe_backend_health],
            description="1 when the backend's connection is healthy, 0 when it is not, per connector.",
        )
        meter.create_observable_gauge(
            "gateway.sessions.active",
            callbacks=[self._observe_active_sessions],
            unit="{session}",
            description="Agent sessions holding a standing notification stream open on this gateway process.",
        )

    def _observe_backend_health(self, options: CallbackOptions) -> Iterable[Observation]:
        source = self.backend_health
        if source is None:
            return ()
        return [Observation(1 if healthy else 0, {"gateway.connector": name}) for name, healthy in source().items()]

    def _observe_active_sessions(self, options: CallbackOptions) -> Iterable[Observation]:
        source = self.active_sessions
        if source is None:
            return ()
        return [Observation(source())]
