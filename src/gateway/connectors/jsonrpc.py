"""The raw JSON-RPC hop every forwarded call takes: shape a request once, parse a response once.

The SDK client keeps the control plane (handshake, listings, pings, change notifications); calls
go around it. Its request models, per-result schema validation and stream plumbing cost more than
the backend itself on a fast tool, and a large result was decoded and re-encoded several times on
the way. Here a call is one dict encoded once, and a response is one `orjson.loads` whose result
dict goes to the agent as it is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import orjson
from mcp.client._transport import TransportStreams
from mcp.client.session import ClientSession

from gateway.connectors.base import JsonObject, ProgressCallback

try:  # Result keys a later revision added, which the SDK strips on older sessions; same rule here.
    from mcp.client.session import _later_revision_fields as _sdk_later_revision_fields
except ImportError:  # pragma: no cover - a newer SDK without the helper: pass results through untouched

    def _sdk_later_revision_fields(method: str, version: str) -> frozenset[str]:
        return frozenset()


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


class HopLost(Exception):
    """The connection broke (process exit, stream closed mid-response): the backend needs a restart."""


class HopTimeout(Exception):
    """No answer within the connector's timeout; the backend was told to stop."""


class Hop(Protocol):
    """Sends one request on a connection the SDK client already negotiated."""

    async def request(
        self, method: str, params: JsonObject, *, time_limit: float, on_progress: ProgressCallback | None
    ) -> JsonObject: ...


class Shaper:
    """Gives a request the shape the negotiated revision wants, exactly as the SDK session would.

    2026-07-28 requests carry the protocol version, client info and capabilities in `_meta` and
    `Mcp-Method`/`Mcp-Name` (plus any `Mcp-Param-*`) headers; 2025-11-25 ones carry the
    `Mcp-Protocol-Version` header. The session's own stamp function produces both, so the two
    paths cannot drift apart.
    """

    def __init__(self, session: ClientSession) -> None:
        self._stamp: Callable[[dict[str, Any], dict[str, Any]], None] = session._stamp
        self.version: str = session.protocol_version or "2025-11-25"
        self._foreign: dict[str, frozenset[str]] = {}

    def request(
        self, request_id: int, method: str, params: JsonObject, *, progress: bool = False
    ) -> tuple[JsonObject, dict[str, str]]:
        """The wire message and the HTTP headers for one request; `params` is not mutated.

        With `progress`, the request id doubles as the progress token, so progress notifications
        find their call by the same number its answer will carry.
        """
        params = dict(params)
        meta = params.get("_meta")
        if meta is not None or progress:
            params["_meta"] = dict(meta or {})
            if progress:
                params["_meta"]["progressToken"] = request_id
        data: dict[str, Any] = {"method": method, "params": params}
        opts: dict[str, Any] = {}
        self._stamp(data, opts)
        message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": data["params"]}
        return message, opts.get("headers") or {}

    def result(self, method: str, raw: JsonObject) -> JsonObject:
        """Apply the SDK's two cheap result rules: floor a negative `ttlMs`, drop a later revision's keys."""
        ttl = raw.get("ttlMs")
        if isinstance(ttl, int | float) and not isinstance(ttl, bool) and ttl < 0:
            raw["ttlMs"] = 0
        foreign = self._foreign.get(method)
        if foreign is None:
            foreign = self._foreign[method] = _sdk_later_revision_fields(method, self.version)
        if foreign and not foreign.isdisjoint(raw):
            raw = {key: value for key, value in raw.items() if key not in foreign}
        return raw


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


class Link(Protocol):
    """One connection attempt to a backend: streams for the SDK client, then a hop for calls."""

    def transport(self) -> AbstractAsyncContextManager[TransportStreams]: ...

    def hop(self, session: ClientSession) -> Hop: ...


LinkFactory = Callable[[Callable[[str], None], Callable[[], None]], Link]
"""Builds a link for one attempt, given how to report the connection lost (with a reason) and a changed listing."""
