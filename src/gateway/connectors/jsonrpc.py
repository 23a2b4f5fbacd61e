"""JSON-RPC messages as the wires write and read them: encoded once, parsed once.

A call is one dict encoded once, and a response is one `orjson.loads` whose result dict goes to
the agent as it is; a large result is never decoded and re-encoded on the way.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from gateway.connectors.base import JsonObject

#: Our request ids start far above the SDK session's own counter, so responses to both can share
#: one connection and still be told apart by id alone.
FIRST_ID = 1 << 40


class RemoteError(Exception):
    """The backend answered with a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


def encode(message: JsonObject) -> bytes:
    """One compact JSON document; integers beyond 64 bits (rare, but valid JSON) take the stdlib path."""
    try:
        return orjson.dumps(message)
    except orjson.JSONEncodeError:
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


#: From this size on a message is parsed with the stdlib from text, its raw bytes released first.
LARGE_MESSAGE = 1 << 20


def decode(data: bytes | bytearray | memoryview) -> Any:
    """Parse one JSON document once; raises `ValueError` (orjson's error subclasses it) on garbage.

    orjson is the faster parser, but it copies its input, so a large message would be held three
    times at once (raw, copy, parsed). A large `bytearray` is decoded to text and emptied in place
    instead, then parsed: at most twice the message at any moment, for a few ms more per 10 MB.
    """
    if len(data) < LARGE_MESSAGE or not isinstance(data, bytearray):
        return orjson.loads(data)
    text = data.decode()
    data.clear()
    return json.loads(text)


def outcome(message: JsonObject) -> JsonObject:
    """The result of a response message, or `RemoteError` for an error response."""
    result = message.get("result")
    if isinstance(result, dict):
        return result
    error = message.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        raise RemoteError(
            code if isinstance(code, int) else -32603, str(error.get("message") or "backend error"), error.get("data")
        )
    raise RemoteError(-32603, "backend sent a response with neither a result object nor an error")


def progress_args(params: Any) -> tuple[Any, float, float | None, str | None] | None:
    """(token, progress, total, message) of a `notifications/progress`, or None if malformed."""
    if not isinstance(params, dict):
        return None
    token = params.get("progressToken")
    progress = params.get("progress")
    if isinstance(token, bool) or not isinstance(token, int | str):
        return None
    if isinstance(progress, bool) or not isinstance(progress, int | float):
        return None
    total = params.get("total")
    message = params.get("message")
    return (
        token,
        float(progress),
        float(total) if isinstance(total, int | float) and not isinstance(total, bool) else None,
        message if isinstance(message, str) else None,
    )
