"""Whether a POSTed body is a JSON-RPC message at all, decided before anything acts on it.

The SDK answers a malformed message with a pydantic dump under -32602, and takes a request
whose id is an object, an array, null or a boolean for a notification (answered 202, never
answered again). The gateway answers each such body itself: -32700 for bytes that are not JSON,
-32600 Invalid Request with one line saying what is wrong for JSON that is not one request,
notification or response, with the request's id when it has a usable one and `null` otherwise.
Batches are refused, as they always were here: 2025-06-18 removed them from the protocol and
2026-07-28 has none; a 2025-03-26 client that batches is told to send one message per request.

JSON can also spell text that no UTF-8 can carry: a lone UTF-16 surrogate such as `"\\ud800"`.
Python's decoder accepts it and every encoder after it fails, so `decode` finds where such
text sits; the endpoint answers it as invalid arguments when it is in a call's arguments (the
model can correct them) and as an invalid request anywhere else.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

#: An escape of a UTF-16 surrogate in the raw body: only a body holding one can decode to a lone one.
#: Searched only in bodies with a backslash at all, which `bytes.find` (memchr) rules out at about
#: 10 µs per MB; the pattern costs about 1 ms per MB, a `bytes` substring search three times that.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
#: How many places holding unencodable text are noted; the first is named, the rest only counted.
_MAX_BAD_TEXT = 16


@dataclass(frozen=True, slots=True)
class Body:
    """A POSTed body decoded once: the message, or that it was not JSON, and where any unencodable text is."""

    message: Any
    is_json: bool
    bad_text_at: tuple[tuple[str | int, ...], ...] = ()


def decode(body: bytes) -> Body:
    try:
        # orjson parses a typical request in a third of the time. It refuses what the stdlib
        # takes (lone surrogates, NaN, integers past 64 bits, UTF-16, a BOM, deep nesting), so
        # those bodies go on to the stdlib, whose reading of them is the one this module defines.
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            message = json.loads(body)
        except (ValueError, RecursionError):
            return Body(None, is_json=False)
    if body.find(b"\\") != -1 and _SURROGATE_ESCAPE.search(body) is not None:
        return Body(message, is_json=True, bad_text_at=_unencodable_text(message))
    return Body(message, is_json=True)


def usable_id(message: Any) -> str | int | None:
    """The message's id when it is one MCP allows (a string or an integer), else None."""
    request_id = message.get("id") if isinstance(message, dict) else None
    if isinstance(request_id, str) or (isinstance(request_id, int) and not isinstance(request_id, bool)):
        return request_id
    return None


def problem(message: Any) -> str | None:
    """Why `message` is not a JSON-RPC request, notification or response; None when it is one."""
    if isinstance(message, list):
        return "Invalid Request: JSON-RPC batches are not supported; send each message in its own HTTP request"
    if not isinstance(message, dict):
        return f"Invalid Request: the body must be a JSON-RPC message object, not {_kind(message)}"
    if message.get("jsonrpc") != "2.0":
        return 'Invalid Request: the message must carry "jsonrpc": "2.0"'
    if "id" in message and usable_id(message) is None:
        return f"Invalid Request: the id must be a string or an integer, not {_kind(message['id'])}"
    if "method" in message:
        if not isinstance(message["method"], str):
            return f"Invalid Request: the method must be a string, not {_kind(message['method'])}"
        params = message.get("params")
        if params is not None and not isinstance(params, dict):
            return f"Invalid Request: params must be an object, not {_kind(params)}"
        return None
    if "id" in message and ("result" in message or "error" in message):
        return None  # a response to a request of the server's
    return "Invalid Request: the message has no method (a request needs a method, a response a result or error)"


def describe_path(path: tuple[str | int, ...]) -> str:
    """`params.arguments.text` or `items[2]`, with names that are not plain text escaped."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            name = part if part.isidentifier() else json.dumps(part)
            text += f".{name}" if text else name
    return text


def _unencodable_text(message: Any) -> tuple[tuple[str | int, ...], ...]:
    """Where keys or strings that UTF-8 cannot encode sit, in document order; walked with a stack, not recursion."""
    found: list[tuple[str | int, ...]] = []
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), message)]
    while stack and len(found) < _MAX_BAD_TEXT:
        path, value = stack.pop()
        if isinstance(value, str):
            if not _encodable(value):
                found.append(path)
        elif isinstance(value, dict):
            for key, item in reversed(value.items()):
                if not _encodable(key):
                    found.append((*path, key))
                else:
                    stack.append(((*path, key), item))
        elif isinstance(value, list):
            stack.extend(((*path, index), item) for index, item in reversed(list(enumerate(value))))
    return tuple(found)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
