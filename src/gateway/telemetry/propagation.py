"""W3C trace context in and out of MCP `_meta` and HTTP headers.

MCP carries trace context per message, unprefixed in `params._meta` (`traceparent`, `tracestate`;
SEP-414 and the OpenTelemetry MCP conventions), because one HTTP request may carry many MCP
messages and one message may be retried over several HTTP requests. The gateway reads it from the
agent's request and writes its own span into what it sends on, so one trace runs agent → gateway →
backend. Values that are not strings are ignored: `_meta` is client input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACE_CONTEXT_KEYS = ("traceparent", "tracestate")

_PROPAGATOR = TraceContextTextMapPropagator()


class _StringGetter(Getter[Mapping[str, Any]]):
    """Reads a carrier key only when it is a string; a number or object there is no trace context."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return [key for key in carrier if isinstance(key, str)]


_GETTER = _StringGetter()


def extract_context(meta: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None) -> Context | None:
    """The agent's trace context: from the request's `_meta` first, else from the HTTP headers.

    `None` when neither carries a valid `traceparent`, so callers fall back to the current context
    rather than starting from an empty one.
    """
    for carrier in (meta, headers):
        if not carrier or not isinstance(carrier, Mapping):
            continue
        context = _PROPAGATOR.extract(carrier, getter=_GETTER)
        if trace.get_current_span(context).get_span_context().is_valid:
            return context
    return None


def inject_meta(meta: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A copy of an outgoing `_meta` whose trace context names the current span as the parent.

    The agent's own `traceparent`/`tracestate` are replaced, so the backend's spans hang under the
    gateway's, not beside them. Without a current span (telemetry off) the meta passes unchanged.
    Returns `None` for an empty result, so a request carries no empty `_meta`.
    """
    carrier = dict(meta) if meta else {}
    if trace.get_current_span().get_span_context().is_valid:
        for key in TRACE_CONTEXT_KEYS:
            carrier.pop(key, None)
        _PROPAGATOR.inject(carrier)
    return carrier or None


def inject_headers(headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """Outgoing HTTP headers for a REST backend, with `traceparent`/`tracestate` of the current span."""
    carrier = {key: value for key, value in (headers or {}).items() if key.lower() not in TRACE_CONTEXT_KEYS}
    _PROPAGATOR.inject(carrier)
    return carrier
