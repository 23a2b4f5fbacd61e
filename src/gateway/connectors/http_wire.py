"""The wire for `kind = "mcp-http"`: a remote MCP server over streamable HTTP.

The SDK transport (on httpx2) negotiates, lists, pings and holds the GET stream for change
notifications. Calls go out on one pooled keep-alive aiohttp session of their own: on this
path aiohttp costs about a third of httpx2's client CPU per request (0.7 ms against 2.0 ms in
the same run), and the body is read and parsed once. Calls carry what the SDK would send: the
session id the backend gave the handshake (2025-11-25), or the stateless 2026-07-28 shape with
its `_meta` keys and `Mcp-Method`/`Mcp-Name` headers, both from the session's own stamp.

The backend sees only the headers from its connector file, never the agent's token.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import anyio
import httpx2
import yarl
from mcp.client import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from gateway.connectors.base import JsonObject, ProgressCallback
from gateway.connectors.jsonrpc import FIRST_ID, RemoteError, decode, encode, outcome, progress_args
from gateway.connectors.negotiated_revision import NegotiatedRevision
from gateway.connectors.wire import WireLost, WireTimeout
from gateway.mcp_sdk import TransportStreams
from gateway.settings.connectors import McpHttpConnector

logger = logging.getLogger(__name__)

_SESSION_HEADER = "mcp-session-id"
_CANCEL_POST_SECONDS = 1.0
_MAX_REDIRECTS = 3
_INVALID_REQUEST = -32600
_METHOD_NOT_FOUND = -32601
_INTERNAL_ERROR = -32603
_LIST_CHANGED_SUFFIX = "/list_changed"


class HttpWire:
    """One connection to a streamable-HTTP backend; a call is a POST, answered by one JSON body or an SSE stream."""

    def __init__(self, settings: McpHttpConnector, on_list_changed: Callable[[], None]) -> None:
        self._settings = settings
        self._on_list_changed = on_list_changed
        self._headers = {key: value.get_secret_value() for key, value in settings.headers.items()}
        #: Parsed once: aiohttp parses a string URL again on every request.
        self._url = yarl.URL(settings.url)
        self._http: aiohttp.ClientSession | None = None
        self._revision: NegotiatedRevision | None = None
        self._modern = False
        self._ids = itertools.count(FIRST_ID)
        self._session_id: str | None = None

    @asynccontextmanager
    async def open(self) -> AsyncIterator[TransportStreams]:
        settings = self._settings
        timeout = httpx2.Timeout(settings.connect_timeout, read=max(settings.timeout, 300.0))
        hooks = {"response": [self._remember_session]}
        async with (
            httpx2.AsyncClient(headers=self._headers, timeout=timeout, event_hooks=hooks) as sdk_http,
            aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=settings.connect_timeout),
                proxy=_environment_proxy(settings.url),
                # One connection serves every agent: a cookie one call's answer set must not ride
                # along with another agent's calls (and no jar is consulted on every request).
                cookie_jar=aiohttp.DummyCookieJar(),
            ) as http,
            # Large results pass through whole: no per-event cap below the gateway's own limits.
            streamable_http_client(settings.url, http_client=sdk_http, max_sse_event_size=None) as streams,
        ):
            self._http = http
            try:
                yield streams
            finally:
                self._http = None

    async def _remember_session(self, response: httpx2.Response) -> None:
        """The handshake's answer names the session; calls must carry it too."""
        if session_id := response.headers.get(_SESSION_HEADER):
            self._session_id = session_id

    def adopt(self, session: ClientSession) -> None:
        if self._http is None:
            raise WireLost("not connected")
        self._revision = NegotiatedRevision(session)
        self._modern = self._revision.version in MODERN_PROTOCOL_VERSIONS

    def _request_headers(self, extra: dict[str, str]) -> dict[str, str]:
        headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        if self._session_id:  # as the SDK transport does: whenever the backend named one
            headers[_SESSION_HEADER] = self._session_id
        headers.update(extra)
        return headers

    async def request(
        self, method: str, params: JsonObject, *, time_limit: float, on_progress: ProgressCallback | None
    ) -> JsonObject:
        http, revision = self._http, self._revision
        if http is None or revision is None:
            raise WireLost("not connected")
        request_id = next(self._ids)
        message, stamped = revision.request(request_id, method, params, progress=on_progress is not None)
        headers = self._request_headers(stamped)
        body = encode(message)
        try:
            # asyncio's timeout rather than anyio's: the same TimeoutError for half the cost (4 us against 9).
            async with asyncio.timeout(time_limit):
                for _ in range(_MAX_REDIRECTS + 1):
                    async with http.post(self._url, data=body, headers=headers, allow_redirects=False) as response:
                        if (moved := self._same_origin_redirect(response)) is not None:
                            self._url = moved
                            continue
                        try:
                            answer = await self._answer(response, request_id, on_progress)
                        except BaseException:
                            # Closing the connection is how a 2026-07-28 backend learns the call is abandoned.
                            response.close()
                            raise
                        break
                else:
                    raise RemoteError(_INVALID_REQUEST, f"more than {_MAX_REDIRECTS} redirects")
        except aiohttp.ClientError as exc:  # before TimeoutError: aiohttp's own timeouts subclass both
            raise WireLost(f"HTTP request failed: {exc.__class__.__name__}") from None
        except TimeoutError:
            await self._cancel(request_id, f"timed out after {time_limit:g}s")
            raise WireTimeout from None
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._cancel(request_id, "caller cancelled")
            raise
        return revision.result(method, outcome(answer))

    def _same_origin_redirect(self, response: aiohttp.ClientResponse) -> yarl.URL | None:
        """Where a 307/308 points, when it stays on the endpoint's origin (as the SDK transport follows it).

        Servers mounted under a path often redirect `/mcp` to `/mcp/`; the wire remembers the new URL.
        Other redirects are not followed: the connector's credentials must not travel elsewhere.
        """
        if response.status not in (307, 308) or not (location := response.headers.get("location")):
            return None
        current = self._url
        target = current.join(yarl.URL(location))
        if target.origin() != current.origin():
            return None
        return target

    async def _answer(
        self, response: aiohttp.ClientResponse, request_id: int, on_progress: ProgressCallback | None
    ) -> JsonObject:
        status = response.status
        content_type = response.headers.get("content-type", "").lower()
        if status == 202:
            raise RemoteError(_INVALID_REQUEST, "server answered a request with 202 Accepted")
        if 300 <= status < 400:
            raise RemoteError(_INVALID_REQUEST, f"redirect to {response.headers.get('location')} not followed")
        if status >= 400:
            if content_type.startswith("application/json"):
                with suppress(ValueError):
                    body = decode(await response.read())
                    if isinstance(body, dict) and isinstance(body.get("error"), dict):
                        return body
            if status == 404 and self._session_id:
                raise WireLost("the backend ended the session")
            raise RemoteError(_INTERNAL_ERROR, f"Server returned an error response (HTTP {status})")
        if content_type.startswith("application/json"):
            try:
                body = decode(await _read_body(response))
            except ValueError:
                raise RemoteError(-32700, "backend sent a response body that is not JSON") from None
            if not isinstance(body, dict):
                raise RemoteError(-32700, "backend sent a response that is not a JSON-RPC message")
            return body
        if content_type.startswith("text/event-stream"):
            async for data in _sse_data(response):
                try:
                    event = decode(data)
                except ValueError:
                    logger.warning("backend sent an SSE event that is not JSON; ignored", extra=self._log_extra)
                    continue
                if not isinstance(event, dict):
                    continue
                if "method" not in event:
                    if event.get("id") in (request_id, str(request_id)):
                        return event
                    continue
                await self._on_server_message(event, request_id, on_progress)
            raise WireLost("the backend's SSE stream ended without a response")
        raise RemoteError(_INVALID_REQUEST, f"Unexpected content type: {content_type}")

    async def _on_server_message(
        self, event: JsonObject, request_id: int, on_progress: ProgressCallback | None
    ) -> None:
        method = event["method"]
        if method == "notifications/progress":
            args = progress_args(event.get("params"))
            if args is not None and on_progress is not None and args[0] in (request_id, str(request_id)):
                try:
                    await on_progress(args[1], args[2], args[3])
                except Exception:  # boundary: a caller's progress sink failing must not fail the call
                    logger.warning("progress relay failed", extra=self._log_extra, exc_info=True)
        elif method.endswith(_LIST_CHANGED_SUFFIX):
            self._on_list_changed()
        elif "id" in event and method == "ping":
            await self._post_quietly({"jsonrpc": "2.0", "id": event["id"], "result": {}})
        elif "id" in event:
            # The gateway offers a backend no sampling, elicitation or roots: say so, as the SDK would.
            refusal = {
                "jsonrpc": "2.0",
                "id": event["id"],
                "error": {"code": _METHOD_NOT_FOUND, "message": f"{method} is not supported by this client"},
            }
            await self._post_quietly(refusal)

    async def _cancel(self, request_id: int, reason: str) -> None:
        """A 2025-11-25 backend hears `notifications/cancelled`; at 2026-07-28 the closed stream said it."""
        if self._modern:
            return
        notice = {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": request_id, "reason": reason},
        }
        await self._post_quietly(notice)

    async def _post_quietly(self, message: JsonObject) -> None:
        """Post a message that needs no answer; on a connection already gone there is no one to tell."""
        http, revision = self._http, self._revision
        if http is None or revision is None:
            return
        headers = self._request_headers({"mcp-protocol-version": revision.version})
        with anyio.move_on_after(_CANCEL_POST_SECONDS), suppress(aiohttp.ClientError, OSError):
            async with http.post(self._url, data=encode(message), headers=headers, allow_redirects=False):
                pass

    @property
    def _log_extra(self) -> dict[str, Any]:
        return {"connector": self._settings.name}


async def _read_body(response: aiohttp.ClientResponse) -> bytearray:
    """The body in one buffer the parser may empty (aiohttp's own `read()` keeps a copy on the response)."""
    body = bytearray()
    async for chunk in response.content.iter_any():
        body += chunk
    return body


async def _sse_data(response: aiohttp.ClientResponse) -> AsyncIterator[bytes | bytearray]:
    """The `data` of each SSE `message` event, read line by line without rescanning a long event.

    A long line is collected in a `bytearray` and trimmed in place, so the parser can empty it.
    """
    partial = bytearray()
    data: list[bytes | bytearray] = []
    event_type = b""
    async for chunk in response.content.iter_any():
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            line: bytes | bytearray
            if partial:
                partial += memoryview(chunk)[start:end]
                line, partial = partial, bytearray()
            else:
                line = chunk[start:end]
            start = end + 1
            if line.endswith(b"\r"):
                line = _trimmed(line, 0, 1)
            if not line:
                if data and event_type in (b"", b"message"):
                    yield data[0] if len(data) == 1 else bytearray(b"\n".join(data))
                data = []
                event_type = b""
            elif line.startswith(b"data:"):
                data.append(_trimmed(line, 6 if line.startswith(b"data: ") else 5, 0))
            elif line.startswith(b"event:"):
                event_type = bytes(line[6:]).strip()
        if start < len(chunk):
            partial += memoryview(chunk)[start:] if start else chunk


def _trimmed(line: bytes | bytearray, head: int, tail: int) -> bytes | bytearray:
    """`line` without `head` leading and `tail` trailing bytes; a `bytearray` is trimmed in place, not copied."""
    if isinstance(line, bytearray):
        if tail:
            del line[len(line) - tail :]
        if head:
            del line[:head]
        return line
    return line[head : len(line) - tail]


def _environment_proxy(url: str) -> str | None:
    """The proxy the environment names for `url`, decided once per connection.

    aiohttp's `trust_env` would re-read the proxy variables and `~/.netrc` on every call (measured
    at about 2% of the gateway's busy time), and would send `.netrc` credentials to backends.
    """
    proxies = urllib.request.getproxies()
    parts = urlsplit(url)
    if not proxies or (parts.hostname and urllib.request.proxy_bypass(parts.hostname)):
        return None
    return proxies.get(parts.scheme)
