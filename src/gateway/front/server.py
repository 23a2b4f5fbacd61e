"""The MCP server agents talk to: the SDK's low-level `Server`, every handler a pipeline call.

The SDK does what it does well here — handshakes of every protocol revision, sessions,
request ids, progress tokens and cancellation — and the handlers only translate between
the wire and the pipeline. Results from backends are wire dicts; they are passed back
as dicts, adjusted only where the client's protocol revision differs from the backend's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import anyio
import mcp_types as types
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.session import ServerSession
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    PromptsListChanged,
    ResourcesListChanged,
    ToolsListChanged,
)
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from gateway import __version__
from gateway.connectors.base import JsonObject
from gateway.errors import GatewayError
from gateway.front.errors import is_tool_error, to_mcp_error, tool_error_result
from gateway.identity.bearer import PRINCIPAL_SCOPE_KEY
from gateway.identity.principal import Principal
from gateway.pipeline import Pipeline, RequestInfo

logger = logging.getLogger(__name__)

_SERVER_INFO_META_KEY = "io.modelcontextprotocol/serverInfo"
_MODERN_ONLY_RESULT_KEYS = ("resultType", "ttlMs", "cacheScope")
_MAX_TRACKED_SESSIONS = 10_000
_TRACE_HEADERS = ("traceparent", "tracestate")


class ChangeNotifier:
    """Tells every connected agent that the catalog changed, whatever its protocol revision.

    Session-based clients get `notifications/*/list_changed` on their standing stream;
    2026-07-28 clients get events on their `subscriptions/listen` streams.
    """

    def __init__(self) -> None:
        self.bus = InMemorySubscriptionBus()
        self._sessions: dict[str, ServerSession] = {}

    @property
    def session_count(self) -> int:
        """Session-based clients seen and not yet gone (2026-07-28 clients hold no session)."""
        return len(self._sessions)

    def track(self, session_key: str | None, session: ServerSession) -> None:
        if session_key is None or session_key in self._sessions:
            return
        if len(self._sessions) >= _MAX_TRACKED_SESSIONS:
            self._sessions.pop(next(iter(self._sessions)))
        self._sessions[session_key] = session

    async def catalog_changed(self) -> None:
        await self.bus.publish(ToolsListChanged())
        await self.bus.publish(ResourcesListChanged())
        await self.bus.publish(PromptsListChanged())
        for key, session in list(self._sessions.items()):
            try:
                with anyio.fail_after(5):
                    await session.send_tool_list_changed()
                    await session.send_resource_list_changed()
                    await session.send_prompt_list_changed()
            except Exception:  # boundary: a gone session must not stop the others' notifications
                self._sessions.pop(key, None)


def build_server(
    pipeline: Pipeline,
    notifier: ChangeNotifier,
    *,
    default_principal: Principal | None = None,
    instructions: str | None = None,
) -> Server[Any]:
    """The agent-facing MCP server; `default_principal` serves stdio, where there is no HTTP request."""
    handlers = _Handlers(pipeline, notifier, default_principal)
    return Server(
        "autonomy-gateway",
        version=__version__,
        instructions=instructions,
        get_tool_input_schema=pipeline.tool_input_schema,
        on_list_tools=handlers.list_tools,
        on_call_tool=handlers.call_tool,
        on_list_resources=handlers.list_resources,
        on_list_resource_templates=handlers.list_resource_templates,
        on_read_resource=handlers.read_resource,
        on_list_prompts=handlers.list_prompts,
        on_get_prompt=handlers.get_prompt,
        on_subscriptions_listen=ListenHandler(notifier.bus),
    )


class _Handlers:
    def __init__(self, pipeline: Pipeline, notifier: ChangeNotifier, default_principal: Principal | None) -> None:
        self._pipeline = pipeline
        self._notifier = notifier
        self._default_principal = default_principal

    def _request_info(self, ctx: ServerRequestContext[Any, Any]) -> RequestInfo:
        request = ctx.request
        principal: Principal | None = None
        session_id: str | None = None
        trace_headers: dict[str, str] | None = None
        if request is not None:
            principal = request.scope.get(PRINCIPAL_SCOPE_KEY)
            session_id = request.headers.get("mcp-session-id")
            if "traceparent" in request.headers:
                trace_headers = {k: request.headers[k] for k in _TRACE_HEADERS if k in request.headers}
        else:
            session_id = "stdio"
        principal = principal or self._default_principal
        if principal is None:  # the HTTP front authenticates before the SDK sees a request
            raise MCPError(code=types.INVALID_REQUEST, message="request is not authenticated")
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            self._notifier.track(session_id, ctx.session)
        client = ctx.session.client_params
        info = client.client_info if client else None
        return RequestInfo(
            principal=principal,
            request_id=ctx.request_id,
            session_id=session_id,
            protocol_version=ctx.protocol_version,
            client_name=info.name if info else None,
            client_version=info.version if info else None,
            transport="tcp" if request is not None else "pipe",
            trace_headers=trace_headers,
        )

    async def list_tools(self, ctx: ServerRequestContext[Any, Any], params: Any) -> JsonObject:
        request = self._request_info(ctx)
        try:
            tools = await self._pipeline.list_tools(request)
        except GatewayError as exc:
            raise to_mcp_error(exc) from None
        return _listing({"tools": [dict(tool) for tool in tools]}, ctx)

    async def call_tool(self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams) -> JsonObject:
        request = self._request_info(ctx)
        meta = _raw_meta(ctx)
        wants_progress = bool(meta) and ("progressToken" in meta or "progress_token" in meta)

        async def relay_progress(progress: float, total: float | None, message: str | None) -> None:
            await ctx.session.report_progress(progress, total, message)

        try:
            result = await self._pipeline.call_tool(
                request,
                params.name,
                (ctx.params or {}).get("arguments"),
                meta=meta,
                on_progress=relay_progress if wants_progress else None,
            )
        except GatewayError as exc:
            if is_tool_error(exc):
                return _for_client(tool_error_result(exc), ctx.protocol_version)
            raise to_mcp_error(exc) from None
        return _for_client(result, ctx.protocol_version)

    async def list_resources(self, ctx: ServerRequestContext[Any, Any], params: Any) -> JsonObject:
        try:
            resources = await self._pipeline.list_resources(self._request_info(ctx))
        except GatewayError as exc:
            raise to_mcp_error(exc) from None
        return _listing({"resources": resources}, ctx)

    async def list_resource_templates(self, ctx: ServerRequestContext[Any, Any], params: Any) -> JsonObject:
        try:
            templates = await self._pipeline.list_resource_templates(self._request_info(ctx))
        except GatewayError as exc:
            raise to_mcp_error(exc) from None
        return _listing({"resourceTemplates": templates}, ctx)

    async def read_resource(
        self, ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> JsonObject:
        request = self._request_info(ctx)
        try:
            result = await self._pipeline.read_resource(request, str(params.uri), meta=_raw_meta(ctx))
        except GatewayError as exc:
            raise to_mcp_error(exc) from None
        return _for_client(result, ctx.protocol_version, cacheable=True)

    async def list_prompts(self, ctx: ServerRequestContext[Any, Any], params: Any) -> JsonObject:
        try:
            prompts = [dict(p) for p in await self._pipeline.list_prompts(self._request_info(ctx))]
        except GatewayError as exc:
            raise to_mcp_error(exc) from None
        return _listing({"prompts": prompts}, ctx)

    async def get_prompt(self, ctx: ServerRequestContext[Any, Any], params: types.GetPromptRequestParams) -> JsonObject:
        request = self._request_info(ctx)
        try:
            result = await self._pipeline.get_prompt(request, params.name, params.arguments, meta=_raw_meta(ctx))
        except GatewayError as exc:
            raise to_mcp_error(exc) from None
        return _for_client(result, ctx.protocol_version)


def _raw_meta(ctx: ServerRequestContext[Any, Any]) -> Mapping[str, Any] | None:
    meta = (ctx.params or {}).get("_meta")
    return meta if isinstance(meta, Mapping) else None


def _listing(result: JsonObject, ctx: ServerRequestContext[Any, Any]) -> JsonObject:
    """Listings differ per agent (policy decides what each sees) and change with the catalog."""
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        result.update(resultType="complete", ttlMs=0, cacheScope="private")
    return result


def _for_client(result: JsonObject, protocol_version: str, *, cacheable: bool = False) -> JsonObject:
    """Fit a backend's result to the client's revision; the content itself is never touched."""
    adjusted = dict(result)
    meta = adjusted.get("_meta")
    if isinstance(meta, Mapping) and _SERVER_INFO_META_KEY in meta:
        # The backend's identity stamp is not the gateway's; the SDK adds the gateway's own.
        stripped = {k: v for k, v in meta.items() if k != _SERVER_INFO_META_KEY}
        if stripped:
            adjusted["_meta"] = stripped
        else:
            del adjusted["_meta"]
    if protocol_version in MODERN_PROTOCOL_VERSIONS:
        adjusted.setdefault("resultType", "complete")
        if cacheable:
            # What one agent may read another may not: never let a shared cache serve it.
            adjusted.setdefault("ttlMs", 0)
            adjusted["cacheScope"] = "private"
    else:
        for key in _MODERN_ONLY_RESULT_KEYS:
            adjusted.pop(key, None)
    return adjusted
