"""The `/mcp` endpoint: routes each streamable-HTTP exchange to the cheapest correct handler.

- `tools/call`, the call every agent makes all day, runs on the gateway's own path
  (`tool_calls.py`) for both protocol eras.
- Sessions of the handshake era (2025-11-25 and older) are sealed ids (`sessions.py`): this
  module answers `initialize`, the standing GET stream, DELETE and cancellations itself, and any
  worker can serve any request of any session.
- Everything else (listings, resources, prompts, `subscriptions/listen`, malformed input) goes to
  the SDK's stateless streamable-HTTP handling, with the sealed session's revision and identity
  attached, so conformance details stay the SDK's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import anyio
import mcp_types as types
import orjson
from anyio.abc import TaskGroup, TaskStatus
from mcp.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    MCP_PARAM_HEADER_PREFIX,
    InboundLadderRejection,
    classify_inbound_request,
    find_duplicated_routing_header,
    validate_mcp_param_headers,
)
from mcp_types import methods as _methods
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from gateway.calls import Origin
from gateway.catalog import ToolEntry
from gateway.errors import BodyTooLarge, GatewayError, InvalidWorkflowId
from gateway.front import envelope, wire
from gateway.front.bearer import PRINCIPAL_SCOPE_KEY
from gateway.front.ended_sessions import EndedSessions
from gateway.front.header_checks import HeaderChecks
from gateway.front.server import SESSION_SCOPE_KEY, ChangeNotifier
from gateway.front.sessions import SealedSession, SessionSealer, owner_digest
from gateway.front.tasks import HeldTasks
from gateway.front.tool_calls import InFlightCalls, ToolCalls
from gateway.front.workflow_header import workflow_header
from gateway.identity.principal import Principal
from gateway.memo import remember
from gateway.pipeline import Pipeline
from gateway.signals import Signals, Subscription

logger = logging.getLogger(__name__)

_PROTOCOL_HEADER = b"mcp-protocol-version"
_SESSION_HEADER = b"mcp-session-id"
_PING_INTERVAL = 15.0
_MODERN_VERSION_KEY = types.PROTOCOL_VERSION_META_KEY
_MCP_PARAM_PREFIX = MCP_PARAM_HEADER_PREFIX.lower().encode()
#: Signal channels (see `gateway.signals`): a cancellation for a call running elsewhere, an ended session.
_CANCEL = "cancel"
_ENDED = "session_ended"
#: How often the ended sessions are read back from the database (the bound on a missed signal).
_ENDED_RELOAD_SECONDS = 10.0


class McpEndpoint:
    """ASGI app behind bearer authentication: every request arrives with its `Principal` in scope."""

    def __init__(
        self,
        *,
        server: Server[Any],
        pipeline: Pipeline,
        notifier: ChangeNotifier,
        sealer: SessionSealer,
        sdk: StreamableHTTPSessionManager,
        security: TransportSecuritySettings | None,
        max_body_bytes: int,
        ended: EndedSessions | None = None,
    ) -> None:
        self._server = server
        self._ended = ended
        self._pipeline = pipeline
        self._notifier = notifier
        self._sealer = sealer
        self._sdk = sdk
        self._checks = HeaderChecks(security)
        self._max_body = max_body_bytes
        self.in_flight = InFlightCalls()
        self._calls = ToolCalls(pipeline, self.in_flight, server.server_info_stamp, HeldTasks(pipeline))
        self._initialize_results: dict[str, dict[str, Any]] = {}
        self._signals: Signals | None = None
        #: Where signals to the other processes are sent from, off the request path (set by `follow`).
        self._background: TaskGroup | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        rejection = await self._checks.refusal(scope, receive, is_post=method == "POST")
        if rejection is not None:
            await rejection(scope, receive, send)
            return
        version = wire.header(scope, _PROTOCOL_HEADER)
        if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
            await self._modern(scope, receive, send)
            return
        token = wire.header(scope, _SESSION_HEADER)
        if token is None:
            await self._sessionless(scope, receive, send)
            return
        session = self._sealer.open(token)
        principal: Principal = scope[PRINCIPAL_SCOPE_KEY]
        if session is None or session.owner != owner_digest(principal):
            # Forged, expired, ended, or opened with another credential: all look the same.
            await wire.send_json_error(send, 404, None, types.INVALID_REQUEST, "Session not found")
            return
        if method == "POST":
            await self._in_session(session, scope, receive, send)
        elif method == "GET":
            await self._standing_stream(session, scope, receive, send)
        elif method == "DELETE":
            await self.end_session(session)
            await wire.send_empty(send, 200)
        else:
            await wire.send_empty(send, 405, [(b"allow", b"GET, POST, DELETE")])

    async def end_session(self, session: SealedSession) -> None:
        """Refuse the session here at once, tell the running processes, and record it for the others."""
        until = self._sealer.expiry_of(session)
        self._sealer.end(session)
        self._notifier.end_session(session.id)
        self._tell_others(_ENDED, {"session": session.id, "until": until})
        if self._ended is None:
            return
        try:
            await self._ended.add(session.id, until)
        except GatewayError as exc:
            # The session is ended here and, by signal, in the running processes; only one that
            # starts later (or missed the signal) could still accept it.
            logger.warning("ended session not stored", extra={"session_id": session.id, "error": str(exc)})

    async def follow(self, signals: Signals, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Act on what other processes behind the same endpoint saw: cancellations and ended sessions.

        The sessions ended before this process started are loaded before it serves anyone; every
        few seconds those ended since are read, for any whose signal was missed.
        """
        async with signals.subscribe(_CANCEL) as cancels, signals.subscribe(_ENDED) as ended:
            await self._load_ended()
            async with anyio.create_task_group() as tasks:
                self._signals, self._background = signals, tasks
                tasks.start_soon(self._follow_cancels, cancels)
                tasks.start_soon(self._follow_ended, ended)
                tasks.start_soon(self._reload_ended)
                task_status.started()

    async def _load_ended(self) -> None:
        if self._ended is None:
            return
        try:
            for session_id, until in await self._ended.since_last_read():
                self._sealer.forget(session_id, until)
                self._notifier.end_session(session_id)  # a standing stream held here ends too
        except GatewayError as exc:
            logger.warning("ended sessions not loaded", extra={"error": str(exc)})

    async def _reload_ended(self) -> None:
        while self._ended is not None:
            await anyio.sleep(_ENDED_RELOAD_SECONDS)
            await self._load_ended()

    async def _follow_cancels(self, cancels: Subscription) -> None:
        async for signal in cancels:
            if not signal.local:
                self.in_flight.cancel(str(signal.payload.get("session")), signal.payload.get("request_id"))

    async def _follow_ended(self, ended: Subscription) -> None:
        async for signal in ended:
            session_id, until = signal.payload.get("session"), signal.payload.get("until")
            if not signal.local and isinstance(session_id, str) and isinstance(until, (int, float)):
                self._sealer.forget(session_id, float(until))
                self._notifier.end_session(session_id)

    def _tell_others(self, channel: str, payload: dict[str, Any]) -> None:
        """Best effort and off the request path: a lost signal costs a late cancel, never a request."""
        if self._signals is None or self._background is None:
            return
        self._background.start_soon(self._publish, self._signals, channel, payload)

    @staticmethod
    async def _publish(signals: Signals, channel: str, payload: dict[str, Any]) -> None:
        try:
            await signals.publish(channel, payload)
        except Exception as exc:  # it runs beside `follow`'s listeners: a failure here must not end them
            logger.warning("signal not sent to other processes", extra={"channel": channel, "error": str(exc)})

    # -- 2026-07-28: every request stands alone ----------------------------------------------

    async def _modern(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await self._sdk.handle_request(scope, receive, send)
            return
        body = await self._body(scope, receive, send)
        if body is None:
            return
        parsed = envelope.decode(body)
        decoded = parsed.message
        if parsed.bad_text_at and (problem := _bad_text_problem(parsed)) is not None:
            await self._reject(send, envelope.usable_id(decoded), types.INVALID_REQUEST, problem)
            return
        if not _is_tool_call(decoded):
            await self._sdk.handle_request(scope, wire.replay(body, receive), send)
            return
        has_json, has_sse = self._checks.accepts(scope)
        if not has_json or not has_sse:
            await wire.send_empty(send, 406)
            return
        request_id = decoded["id"]
        duplicated = find_duplicated_routing_header((k.decode("latin-1"), v) for k, v in scope["headers"])
        if duplicated is not None:
            await self._reject(send, request_id, types.HEADER_MISMATCH, f"{duplicated} header appears more than once")
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        route = classify_inbound_request(decoded, headers=headers)
        if isinstance(route, InboundLadderRejection):
            await self._reject(send, request_id, route.code, route.message, route.data)
            return
        params = decoded.get("params") or {}
        name = params.get("name")
        tool = self._pipeline.find_tool(name) if isinstance(name, str) else None
        rejection = _mcp_param_rejection(tool, params, headers, scope)
        if rejection is not None:
            await self._reject(send, request_id, rejection.code, rejection.message, rejection.data)
            return
        try:
            workflow = workflow_header(scope["headers"])
        except InvalidWorkflowId as exc:
            await self._reject(send, request_id, types.INVALID_REQUEST, str(exc))
            return
        client = route.client_info if isinstance(route.client_info, Mapping) else {}
        origin = Origin(
            principal=scope[PRINCIPAL_SCOPE_KEY],
            request_id=request_id,
            protocol_version=route.protocol_version,
            client_name=client.get("name"),
            client_version=client.get("version"),
            transport="tcp",
            trace_headers=wire.trace_headers(scope),
            workflow=workflow,
        )
        await self._calls.serve(
            origin, params, modern=True, receive=receive, send=send,
            unusable_arguments=_unusable_arguments(parsed), tool=tool,
        )  # fmt: skip

    async def _reject(self, send: Send, request_id: Any, code: int, message: str, data: Any = None) -> None:
        await wire.send_json_error(send, ERROR_CODE_HTTP_STATUS.get(code, 400), request_id, code, message, data)

    # -- handshake era: sealed sessions ------------------------------------------------------

    async def _sessionless(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await wire.send_json_error(send, 400, None, types.INVALID_REQUEST, "Bad Request: Missing session ID")
            return
        body = await self._body(scope, receive, send)
        if body is None:
            return
        parsed = envelope.decode(body)
        if await _refused_as_malformed(parsed, send):
            return
        decoded = parsed.message
        if not (decoded.get("method") == "initialize" and "id" in decoded):
            # Well-formed, but anything other than `initialize` needs a session first.
            await wire.send_json_error(send, 400, None, types.INVALID_REQUEST, "Bad Request: Missing session ID")
            return
        if not self._accepts_both(scope):
            await wire.send_empty(send, 406)
            return
        await self._initialize(decoded, scope, send)

    async def _initialize(self, decoded: Mapping[str, Any], scope: Scope, send: Send) -> None:
        request_id = decoded["id"]
        try:
            init = types.InitializeRequestParams.model_validate(decoded.get("params") or {}, by_name=False)
        except ValidationError:
            await wire.send_json_error(send, 200, request_id, types.INVALID_PARAMS, "Invalid request parameters")
            return
        requested = init.protocol_version
        version = requested if requested in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION
        client = init.client_info
        _, token = self._sealer.issue(scope[PRINCIPAL_SCOPE_KEY], version, client.name, client.version)
        body = wire.sse_event(wire.response_message(request_id, self._initialize_result(version)))
        headers = [*wire.SSE_HEADERS, (_SESSION_HEADER, token.encode("ascii"))]
        await wire.send_bytes(send, 200, body, headers)

    def _initialize_result(self, version: str) -> dict[str, Any]:
        cached = self._initialize_results.get(version)
        if cached is None:
            options = self._server.create_initialization_options()
            result = types.InitializeResult(
                protocol_version=version,
                capabilities=options.capabilities,
                server_info=types.Implementation(
                    name=options.server_name,
                    title=options.title,
                    description=options.description,
                    version=options.server_version,
                    website_url=options.website_url,
                    icons=options.icons,
                ),
                instructions=options.instructions,
            )
            dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
            cached = self._initialize_results[version] = _methods.serialize_server_result("initialize", version, dumped)
        return cached

    async def _in_session(self, session: SealedSession, scope: Scope, receive: Receive, send: Send) -> None:
        body = await self._body(scope, receive, send)
        if body is None:
            return
        parsed = envelope.decode(body)
        decoded = parsed.message
        if (parsed.bad_text_at or not _is_tool_call(decoded)) and await _refused_as_malformed(parsed, send):
            return
        if "id" not in decoded:
            self._notification(session, decoded)
            await wire.send_empty(send, 202)
            return
        if "method" not in decoded:
            await wire.send_empty(send, 202)  # a reply to a server request: the gateway sends none
            return
        if _is_tool_call(decoded) and not _has_modern_envelope(decoded.get("params")):
            if not self._accepts_both(scope):
                await wire.send_empty(send, 406)
                return
            try:
                workflow = workflow_header(scope["headers"])
            except InvalidWorkflowId as exc:
                await wire.send_json_error(send, 400, decoded["id"], types.INVALID_REQUEST, str(exc))
                return
            origin = Origin(
                principal=scope[PRINCIPAL_SCOPE_KEY],
                request_id=decoded["id"],
                session_id=session.id,
                protocol_version=session.protocol_version,
                client_name=session.client_name,
                client_version=session.client_version,
                transport="tcp",
                trace_headers=wire.trace_headers(scope),
                workflow=workflow,
            )
            await self._calls.serve(
                origin, decoded.get("params") or {}, modern=False, receive=receive, send=send,
                unusable_arguments=_unusable_arguments(parsed),
            )  # fmt: skip
            return
        delegated = wire.with_header(scope, _PROTOCOL_HEADER, session.protocol_version)
        delegated[SESSION_SCOPE_KEY] = session
        await self._sdk.handle_request(delegated, wire.replay(body, receive), send)

    def _notification(self, session: SealedSession, notification: Mapping[str, Any]) -> None:
        if notification.get("method") != "notifications/cancelled":
            return
        params = notification.get("params")
        if isinstance(params, Mapping) and "requestId" in params:
            if not self.in_flight.cancel(session.id, params["requestId"]):
                # The call may be running in another worker or replica.
                self._tell_others(_CANCEL, {"session": session.id, "request_id": params["requestId"]})

    async def _standing_stream(self, session: SealedSession, scope: Scope, receive: Receive, send: Send) -> None:
        """The GET stream a session keeps open to hear `list_changed` notifications."""
        if not self._checks.accepts(scope)[1]:
            await wire.send_empty(send, 406)
            return
        events = self._notifier.open_stream(session.id)
        await send({"type": "http.response.start", "status": 200, "headers": wire.SSE_HEADERS})
        async with events, anyio.create_task_group() as tasks:
            tasks.start_soon(wire.cancel_on_disconnect, receive, tasks.cancel_scope)
            while True:
                chunk = wire.SSE_PING
                with anyio.move_on_after(_PING_INTERVAL):
                    try:
                        chunk = wire.sse_event(await events.receive())
                    except anyio.EndOfStream:
                        await send({"type": "http.response.body", "body": b"", "more_body": False})
                        tasks.cancel_scope.cancel()
                        return
                await send({"type": "http.response.body", "body": chunk, "more_body": True})

    # -- shared ------------------------------------------------------------------------------

    async def _body(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        try:
            return await wire.read_body(scope, receive, self._max_body)
        except BodyTooLarge:
            await wire.send_bytes(send, 413, b"Request body too large", [(b"content-type", b"text/plain")])
            return None

    def _accepts_both(self, scope: Scope) -> bool:
        has_json, has_sse = self._checks.accepts(scope)
        return has_json and has_sse


def _mcp_param_rejection(
    tool: ToolEntry | None, params: Mapping[str, Any], headers: Mapping[str, str], scope: Scope
) -> InboundLadderRejection | None:
    """The SDK's `Mcp-Param-*` header check, with the schema from the catalog instead of a listing."""
    arguments = params.get("arguments")
    if tool is None or (arguments is not None and not isinstance(arguments, Mapping)):
        return None
    if not arguments and not any(k.startswith(_MCP_PARAM_PREFIX) for k, _ in scope["headers"]):
        return None
    schema = tool.definition.get("inputSchema")
    if schema is None or not _declares_param_headers(schema):
        return None
    return validate_mcp_param_headers(schema, arguments or {}, headers)


#: Per input schema seen (kept alive beside its id), whether it declares any `x-mcp-header`.
_DECLARES_PARAM_HEADERS: dict[int, tuple[Any, bool]] = {}


def _declares_param_headers(schema: Any) -> bool:
    """Only a schema naming `x-mcp-header` somewhere can make the check refuse; most name none.

    The SDK walks the whole schema on every call to find out; the answer is kept per schema
    object (catalog entries are replaced, never changed, when a backend lists again).
    """
    known = _DECLARES_PARAM_HEADERS.get(id(schema))
    if known is not None and known[0] is schema:
        return known[1]
    declares = b'"x-mcp-header"' in orjson.dumps(schema, default=str)
    remember(_DECLARES_PARAM_HEADERS, id(schema), (schema, declares), limit=65536)
    return declares


async def _refused_as_malformed(parsed: envelope.Body, send: Send) -> bool:
    """Answer a body that is not one JSON-RPC message (see `envelope.py`); True when it was answered."""
    if not parsed.is_json:
        await wire.send_json_error(send, 400, None, types.PARSE_ERROR, "Parse error: the body is not valid JSON")
        return True
    problem = envelope.problem(parsed.message)
    if problem is None and parsed.bad_text_at:
        problem = _bad_text_problem(parsed)
    if problem is None:
        return False
    await wire.send_json_error(send, 400, envelope.usable_id(parsed.message), types.INVALID_REQUEST, problem)
    return True


def _bad_text_problem(parsed: envelope.Body) -> str | None:
    """Text no UTF-8 can carry outside a call's arguments makes the message unusable; None when there is none."""
    outside = [path for path in parsed.bad_text_at if not _in_call_arguments(parsed, path)]
    if not outside:
        return None
    return (
        f"Invalid Request: the text at {envelope.describe_path(outside[0]) or 'the top level'} is not valid "
        "Unicode (it holds a lone UTF-16 surrogate such as \\ud800); send text that UTF-8 can encode"
    )


def _unusable_arguments(parsed: envelope.Body) -> str | None:
    """Why a tools/call's arguments are unusable when only they hold text no UTF-8 can carry (the model can fix it)."""
    if not parsed.bad_text_at or not all(_in_call_arguments(parsed, path) for path in parsed.bad_text_at):
        return None
    argument = envelope.describe_path(parsed.bad_text_at[0][2:])
    return (
        f"argument '{argument}' holds text that is not valid Unicode (a lone UTF-16 "
        "surrogate such as \\ud800). Send it as text UTF-8 can encode and call again."
    )


def _in_call_arguments(parsed: envelope.Body, path: tuple[str | int, ...]) -> bool:
    return len(path) >= 3 and path[:2] == ("params", "arguments") and _is_tool_call(parsed.message)


def _is_tool_call(decoded: Any) -> bool:
    """A well-formed `tools/call` request envelope; anything odd goes to the SDK for its exact error."""
    if not isinstance(decoded, dict) or decoded.get("method") != "tools/call" or decoded.get("jsonrpc") != "2.0":
        return False
    request_id = decoded.get("id")
    params = decoded.get("params")
    return (
        isinstance(request_id, (str, int))
        and not isinstance(request_id, bool)
        and (params is None or isinstance(params, dict))
    )


def _has_modern_envelope(params: Any) -> bool:
    meta = params.get("_meta") if isinstance(params, Mapping) else None
    return isinstance(meta, Mapping) and _MODERN_VERSION_KEY in meta
