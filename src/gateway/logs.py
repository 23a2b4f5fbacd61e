"""Structured JSON logs: one object per line, with every `extra=` field as a key.

Operators feed these lines to their log stack as they are; nothing needs a parser of ours.
A person at a terminal reads instead one short line per record (level, message, its fields):
unless `[logging] format` says otherwise, that is what a terminal gets, and JSON goes
everywhere else (files, pipes, container log collectors).
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

_STANDARD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


#: Fields every record carries that a person at a terminal has no use for.
_NOT_FOR_PEOPLE = frozenset({"trace_id", "span_id", "taskName"})


class TextFormatter(logging.Formatter):
    """`warning  message  key=value ...`: one line a person can read, with the fields JSON would carry.

    `with_time` puts the time first, for text written to files rather than read as it happens.
    """

    def __init__(self, *, with_time: bool = False) -> None:
        super().__init__()
        self._with_time = with_time

    def format(self, record: logging.LogRecord) -> str:
        parts = [f"{record.levelname.lower():<7}", record.getMessage()]
        if self._with_time:
            parts.insert(0, datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"))
        fields = [
            f"{key}={_field_text(value)}"
            for key, value in record.__dict__.items()
            if key not in _STANDARD_ATTRIBUTES and key not in _NOT_FOR_PEOPLE and not key.startswith("_")
        ]
        if fields:
            parts.append(" ".join(fields))
        line = "  ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _field_text(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return orjson.dumps(text).decode() if not text or any(c.isspace() or c in '"=' for c in text) else text


def configure_logging(level: str = "info", fmt: str | None = None) -> None:
    """Route all logs (ours, the SDK's, uvicorn's) to stderr in one format; stdout stays free for stdio MCP.

    `fmt` None picks by where stderr goes: text for a terminal, JSON for anything else.
    """
    handler = logging.StreamHandler(sys.stderr)
    if fmt is None:
        handler.setFormatter(TextFormatter() if _is_terminal(sys.stderr) else JsonFormatter())
    elif fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter(with_time=True))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # The SDK logs every session at info; keep that for debugging only.
    logging.getLogger("mcp").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
    # httpx logs every request's full URL at info, and an API key sent as a query parameter is
    # part of it: the gateway's own logs name the calls instead, without credentials.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced by something that is not a file, or closed
        return False
