"""Spans around one agent request and its stages, and the metrics recorded when each ends.

Each trace object is its own context manager (no generator machinery on the hot path). On an
exception it sets `error.type` to the exception's class name (`PolicyDenied`, `BackendTimeout`,
...) and the span status to ERROR, and lets the exception go on. Exception messages are not put on
spans: a backend's message may echo argument values, and arguments stay out of telemetry unless the
operator asks for them, redacted.
"""

from __future__ import annotations

import asyncio  # `call_soon`: a measurement recorded after the answer
from collections.abc import Callable, Mapping, Sequence
from contextvars import Token
from time import perf_counter
from types import TracebackType
from typing import Any

import orjson
from opentelemetry import context, trace
from opentelemetry.context import Context
from opentelemetry.metrics import Counter, Histogram
from opentelemetry.trace import SpanKind, StatusCode

from gateway.telemetry.propagation import extract_context

ERROR_TYPE = "error.type"
TOOL_ERROR = "tool_error"

#: Which attribute names a method's target; resource URIs are never in span names or metrics
#: (unbounded, and they may identify records).
_TARGET_ATTRIBUTE = {
    "tools/call": "gen_ai.tool.name",
    "prompts/get": "gen_ai.prompt.name",
    "resources/read": "mcp.resource.uri",
    "resources/subscribe": "mcp.resource.uri",
    "resources/unsubscribe": "mcp.resource.uri",
}
_URI = "mcp.resource.uri"

Redact = Callable[[Any], Any]
"""Turns call arguments into what may be shown: the audit log's redaction."""


def after_answer(record: Callable[..., None], *args: Any) -> None:
    """Record a measurement once the request's task yields, so recording it (about 5 us through the
    SDK's aggregation) does not delay the answer; at once when no event loop runs."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        record(*args)
        return
    loop.call_soon(record, *args)


def span_name(method: str, target: str | None) -> str:
    """`{mcp.method.name} {target}` per the MCP conventions; the method alone when the target is a URI."""
    if target and _TARGET_ATTRIBUTE.get(method) != _URI:
        return f"{method} {target}"
    return method


def target_attributes(method: str, target: str | None, attributes: dict[str, Any]) -> None:
    key = _TARGET_ATTRIBUTE.get(method)
    if key is not None and target:
        attributes[key] = target
    if method == "tools/call":
        attributes["gen_ai.operation.name"] = "execute_tool"


class StageTrace:
    """A child span around one pipeline stage (decide, hold, record, forward)."""

    __slots__ = ("_attributes", "_error_type", "_kind", "_name", "_span", "_started", "_token", "_tracer")

    def __init__(self, tracer: trace.Tracer, name: str, kind: SpanKind, attributes: dict[str, Any]) -> None:
        self._tracer = tracer
        self._name = name
        self._kind = kind
        self._attributes = attributes
        self._error_type: str | None = None
        self._span: trace.Span = trace.INVALID_SPAN
        self._token: Token[Context] | None = None
        self._started = 0.0

    def __enter__(self) -> StageTrace:
        self._started = perf_counter()
        if type(self._tracer) is trace.NoOpTracer:
            # Its span would be the current one's context again: attaching it changes nothing that
            # logs or backends see, and skipping it saves about 6 µs a stage on every call.
            return self
        self._span = self._tracer.start_span(self._name, kind=self._kind, attributes=self._attributes)
        self._token = context.attach(trace.set_span_in_context(self._span))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None and self._error_type is None:
            self._error_type = exc_type.__name__
        span = self._span
        if self._error_type is not None:
            span.set_attribute(ERROR_TYPE, self._error_type)
            span.set_status(StatusCode.ERROR, self._error_type)
        if self._token is not None:
            context.detach(self._token)
        span.end()
        self._finished(perf_counter() - self._started)

    def _finished(self, seconds: float) -> None:
        """Subclasses record their metrics here."""

    @property
    def span(self) -> trace.Span:
        return self._span

    def set_attribute(self, key: str, value: Any) -> None:
        self._span.set_attribute(key, value)

    def fail(self, error_type: str) -> None:
        """Mark the stage failed without an exception (e.g. a result that says it failed)."""
        self._error_type = error_type


class PolicyTrace(StageTrace):
    """The decide stage: its span, and the decision counter."""

    __slots__ = ("_decisions", "_method")

    def __init__(self, tracer: trace.Tracer, decisions: Counter, method: str, attributes: dict[str, Any]) -> None:
        super().__init__(tracer, "gateway.policy", SpanKind.INTERNAL, attributes)
        self._decisions = decisions
        self._method = method

    def __enter__(self) -> PolicyTrace:
        super().__enter__()
        return self

    def decided(self, decision: str, *, policy_ids: Sequence[str] = ()) -> None:
        """Record the decision (allow, deny or hold) and the policies that made it."""
        self._span.set_attribute("gateway.policy.decision", decision)
        if policy_ids:
            self._span.set_attribute("gateway.policy.ids", tuple(policy_ids))
        after_answer(self._decisions.add, 1, {"gateway.policy.decision": decision, "mcp.method.name": self._method})


class BackendTrace(StageTrace):
    """The forward stage: a CLIENT span for the call to the backend, and its duration by outcome."""

    __slots__ = ("_duration", "_metric_attributes")

    def __init__(
        self,
        tracer: trace.Tracer,
        duration: Histogram,
        name: str,
        attributes: dict[str, Any],
        metric_attributes: dict[str, Any],
    ) -> None:
        super().__init__(tracer, name, SpanKind.CLIENT, attributes)
        self._duration = duration
        self._metric_attributes = metric_attributes

    def __enter__(self) -> BackendTrace:
        super().__enter__()
        return self

    def record_result(self, result: Mapping[str, Any]) -> None:
        """A result with `isError: true` is a tool error (`error.type = tool_error`), not a success."""
        if result.get("isError") is True:
            self._error_type = TOOL_ERROR

    def _finished(self, seconds: float) -> None:
        self._metric_attributes["gateway.outcome"] = self._error_type or "ok"
        after_answer(self._duration.record, seconds, self._metric_attributes)


class AuditWrite:
    """Times one group commit of audit entries (metrics only: a batch serves many traces)."""

    __slots__ = ("_batch_size", "_duration", "_size", "_started")

    def __init__(self, duration: Histogram, size: Histogram, batch_size: int) -> None:
        self._duration = duration
        self._size = size
        self._batch_size = batch_size
        self._started = 0.0

    def __enter__(self) -> AuditWrite:
        self._started = perf_counter()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        outcome = "ok" if exc_type is None else exc_type.__name__
        self._duration.record(perf_counter() - self._started, {"gateway.outcome": outcome})
        self._size.record(self._batch_size, {"gateway.outcome": outcome})


class RequestTrace:
    """One agent request: its SERVER span and its `mcp.server.operation.duration` measurement.

    Inside the `mcp` SDK's request handling the SDK has already opened the SERVER span for this
    request (`tools/call {name}`, parented on the agent's `_meta.traceparent`). Then that span is
    enriched with what only the gateway knows (session, agent, connector, arguments when allowed)
    and stays current, so the stage spans become its children; the SDK ends it. Outside the SDK
    (or with the SDK's tracing not installed) a SERVER span of the same name and attributes is
    opened here, parented on the agent's trace context from `_meta` or the HTTP headers.

    The target (tool or prompt name) joins the metric's attributes only once `resolved()` is
    called: a name the catalog does not know is the agent's input, and must not mint time series.
    """

    __slots__ = (
        "_attributes",
        "_duration",
        "_error_type",
        "_headers",
        "_meta",
        "_method",
        "_metric_attributes",
        "_name",
        "_owned",
        "_redact",
        "_span",
        "_started",
        "_token",
        "_tracer",
    )

    def __init__(
        self,
        tracer: trace.Tracer,
        duration: Histogram,
        redact: Redact | None,
        method: str,
        target: str | None,
        attributes: dict[str, Any],
        metric_attributes: dict[str, Any],
        meta: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
    ) -> None:
        self._tracer = tracer
        self._duration = duration
        self._redact = redact
        self._method = method
        self._name = span_name(method, target)
        self._attributes = attributes
        self._metric_attributes = metric_attributes
        self._meta = meta
        self._headers = headers
        self._error_type: str | None = None
        self._span: trace.Span = trace.INVALID_SPAN
        self._owned = False
        self._token: Token[Context] | None = None
        self._started = 0.0

    def __enter__(self) -> RequestTrace:
        self._started = perf_counter()
        current = trace.get_current_span()
        if _is_server_span_for(current, self._method):
            current.set_attributes(self._attributes)
            self._span = current
            return self
        parent = extract_context(self._meta, self._headers)
        self._span = self._tracer.start_span(
            self._name, context=parent, kind=SpanKind.SERVER, attributes=self._attributes
        )
        self._owned = True
        self._token = context.attach(trace.set_span_in_context(self._span))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None and self._error_type is None:
            self._error_type = exc_type.__name__
        span = self._span
        metric_attributes = self._metric_attributes
        if self._error_type is not None:
            # On the SDK's span the SDK later replaces this with the JSON-RPC code the agent receives.
            span.set_attribute(ERROR_TYPE, self._error_type)
            span.set_status(StatusCode.ERROR, self._error_type)
            metric_attributes[ERROR_TYPE] = self._error_type
        if self._owned:
            if self._token is not None:
                context.detach(self._token)
            span.end()
        after_answer(self._duration.record, perf_counter() - self._started, metric_attributes)

    @property
    def span(self) -> trace.Span:
        return self._span

    def resolved(self, connector: str) -> None:
        """The catalog knows the target: name its connector, and let the target into the metric."""
        self._span.set_attribute("gateway.connector", connector)
        key = _TARGET_ATTRIBUTE.get(self._method)
        if key is not None and key != _URI and key in self._attributes:
            self._metric_attributes[key] = self._attributes[key]

    def record_arguments(self, arguments: Any) -> None:
        """Put the redacted arguments on the span, if the operator enabled `record_arguments`; else nothing."""
        if self._redact is None or not self._span.is_recording():
            return
        redacted = orjson.dumps(self._redact(arguments), default=str, option=orjson.OPT_SORT_KEYS).decode()
        self._span.set_attribute("gen_ai.tool.call.arguments", redacted)

    def record_result(self, result: Mapping[str, Any]) -> None:
        """A result with `isError: true` counts as failed with `error.type = tool_error`."""
        if result.get("isError") is True:
            self._error_type = TOOL_ERROR

    def fail(self, error_type: str) -> None:
        self._error_type = error_type


def _is_server_span_for(span: trace.Span, method: str) -> bool:
    """Whether `span` is a live SERVER span already opened for this MCP request (the SDK's)."""
    if not span.is_recording() or getattr(span, "kind", None) is not SpanKind.SERVER:
        return False
    attributes = getattr(span, "attributes", None)
    return attributes is not None and attributes.get("mcp.method.name") == method
