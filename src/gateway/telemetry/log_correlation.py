"""Trace ids on log lines, so an operator can go from a log line to its trace and back.

The filter belongs on handlers, not loggers: a logger's filters do not see records that propagate
up from child loggers, a handler's filters see every record it writes. It runs in the thread and
task that logged, where the current span is the right one.
"""

from __future__ import annotations

import logging

from opentelemetry import trace


class TraceContextFilter(logging.Filter):
    """Adds `trace_id` (32 hex) and `span_id` (16 hex) of the current span to every record.

    Records logged outside any span get neither attribute, so JSON lines carry no empty fields.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            record.trace_id = format(span_context.trace_id, "032x")
            record.span_id = format(span_context.span_id, "016x")
        return True


def install_log_correlation(logger: logging.Logger | None = None) -> None:
    """Add a `TraceContextFilter` to every handler of `logger` (the root logger by default), once.

    Call it after the handlers are set up (`gateway.logs.configure_logging`).
    """
    target = logger if logger is not None else logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(existing, TraceContextFilter) for existing in handler.filters):
            handler.addFilter(TraceContextFilter())
