"""Bytes on the wire of streamable HTTP: bodies in, JSON and SSE out, with no model in between.

The hot path builds responses straight from dicts; everything here is a plain function over
ASGI so the front modules stay about decisions, not framing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import anyio
import orjson
from starlette.types import Message, Receive, Scope, Send

from gateway.errors import BodyTooLarge

JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"connection", b"keep-alive"),
    (b"x-accel-buffering", b"no"),
]
SSE_PING = b": ping\r\n\r\n"
_TRACE_HEADERS = (b"traceparent", b"tracestate")

_fallback = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, refused as soon as it is known to be over `limit` bytes."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                if int(value) > limit:
                    raise BodyTooLarge("the request body is over server.max_body_bytes")
            except ValueError:
                pass
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge("the request body is over server.max_body_bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that yields the already-read body once, then the client's own messages."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def encode(message: Mapping[str, Any]) -> bytes:
    """UTF-8 JSON in one buffer: orjson writes bytes directly, so a large result is not copied twice."""
    try:
        return orjson.dumps(message)
    except (orjson.JSONEncodeError, TypeError):
        # Integers beyond 64 bits or non-string keys: valid for Python's encoder, refused by orjson.
        return _fallback(message).encode()


def response_message(request_id: Any, result: Mapping[str, Any]) -> bytes:
    return encode({"jsonrpc": "2.0", "id": request_id, "result": result})


def error_message(request_id: Any, code: int, message: str, data: Any = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return encode({"jsonrpc": "2.0", "id": request_id, "error": error})


def sse_event(data: bytes) -> bytes:
    return b"event: message\r\ndata: " + data + b"\r\n\r\n"


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *(headers if headers is not None else JSON_HEADERS),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_json_error(send: Send, status: int, request_id: Any, code: int, message: str, data: Any = None) -> None:
    await send_bytes(send, status, error_message(request_id, code, message, data))


async def send_empty(send: Send, status: int, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send_bytes(send, status, b"", headers or [])


def header(scope: Scope, name: bytes) -> str | None:
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def trace_headers(scope: Scope) -> dict[str, str] | None:
    """The W3C trace context headers the client sent, if any, for the request's span."""
    found = {k.decode(): v.decode("latin-1") for k, v in scope["headers"] if k in _TRACE_HEADERS}
    return found or None


def with_header(scope: Scope, name: bytes, value: str) -> Scope:
    """A copy of `scope` whose `name` header is `value` (replacing any the client sent)."""
    headers = [(k, v) for k, v in scope["headers"] if k != name]
    headers.append((name, value.encode("latin-1")))
    return {**scope, "headers": headers}


async def cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    """Cancel `scope` when the client closes the connection: nobody is left to answer."""
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()
