"""The MCP server agents talk to: the SDK's low-level `Server`, every handler a pipeline call.

The SDK does what it does well here — handshakes of every protocol revision, sessions,
request ids, progress tokens and cancellation — and the handlers only translate between
the wire and the pipeline. Results from backends are wire dicts; they are passed back
as dicts, adjusted only where the client's protocol revision differs from the backend's.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ParamSpec, TypeVar

import anyio
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ToolsListChanged,
)
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from gateway import __version__
from gateway.calls import Call, Origin
from gateway.connectors.base import JsonObject
from gateway.errors import GatewayError, InvalidWorkflowId
from gateway.front import wire
from gateway.front.bearer import PRINCIPAL_SCOPE_KEY
from gateway.front.errors import to_mcp_error
from gateway.front.results import for_client
from gateway.front.tasks import ADVERTISED, HeldTasks, TaskParams, TaskUpdateParams
from gateway.front.workflow_header import workflow_header
from gateway.identity.principal import Principal
from gateway.pipeline import Pipeline

logger = logging.getLogger(__name__)

#: Where the endpoint puts a delegated request's sealed session (see `front/endpoint.py`).
SESSION_SCOPE_KEY = "gateway.session"


class ChangeNotifier:
    """Tells every connected agent that the catalog changed, whatever its protocol revision.

    Session-based clients hear `notifications/*/list_changed` on their standing GET stream;
    2026-07-28 clients get events on their `subscriptions/listen` streams.
    """

    def __init__(self) -> None:
        self.bus = InMemorySubscriptionBus()
        self._streams: dict[str, set[MemoryObjectSendStream[bytes]]] = {}

    @property
    def session_count(self) -> int:
        """Sessions holding a standing stream open (sealed sessions leave no other trace here)."""
        return len(self._streams)

    def open_stream(self, session_id: str) -> StandingFeed:
        """A standing stream's feed; it ends when the session ends or the gateway stops."""
        sender, receiver = anyio.create_memory_object_stream[bytes](_STREAM_BUFFER)
        self._streams.setdefault(session_id, set()).add(sender)
        return StandingFeed(receiver, lambda: self._drop(session_id, sender))

    def end_session(self, session_id: str) -> None:
        for sender in self._streams.pop(session_id, set()):
            sender.close()

    def close(self) -> None:
        for session_id in list(self._streams):
            self.end_session(session_id)

    async def catalog_changed(self) -> None:
        await self.bus.publish(ToolsListChanged())
        await self.bus.publish(ResourcesListChanged())
        await self.bus.publish(PromptsListChanged())
        for session_id, senders in list(self._streams.items()):
            for sender in list(senders):
                try:
                    for message in _LIST_CHANGED:
                        sender.send_nowait(message)
                except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    # A client that does not read its stream loses it rather than holding memory.
                    sender.close()
                    self._drop(session_id, sender)

    async def resource_updated(self, exposed_uri: str) -> None:
        """A backend said a resource changed: 2026-07-28 clients listening for its exposed URI are told.

        Session-based clients are not: the gateway takes no `resources/subscribe`, and the
        notification is only for clients that subscribed.
        """
        await self.bus.publish(ResourceUpdated(uri=exposed_uri))

    def _drop(self, session_id: str, sender: MemoryObjectSendStream[bytes]) -> None:
        senders = self._streams.get(session_id)
        if senders is not None:
            senders.discard(sender)
            if not senders:
                del self._streams[session_id]


class StandingFeed:
    """One standing stream's notifications; closing it (or `async with` ending) leaves the notifier."""

    def __init__(self, inner: MemoryObjectReceiveStream[bytes], on_close: Callable[[], None]) -> None:
        self._inner = inner
        self._on_close = on_close

    async def receive(self) -> bytes:
        return await self._inner.receive()

    def close(self) -> None:
        self._on_close()
        self._inner.close()

    async def __aenter__(self) -> StandingFeed:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


_STREAM_BUFFER = 64
#: `tools/list` cursors are catalog positions; the prefix tells them from cursors of other lists.
_TOOLS_CURSOR_PREFIX = "tools:"
_LIST_CHANGED = tuple(
    json.dumps({"jsonrpc": "2.0", "method": f"notifications/{kind}/list_changed"}, separators=(",", ":")).encode()
    for kind in ("tools", "resources", "prompts")
)


def build_server(
    pipeline: Pipeline,
    notifier: ChangeNotifier,
    *,
    default_principal: Principal | None = None,
    instructions: str | None = None,
) -> Server[Any]:
    """The agent-facing MCP server; `default_principal` serves stdio, where there is no HTTP request."""
    handlers = _Handlers(pipeline, notifier, default_principal, ListenHandler(notifier.bus), HeldTasks(pipeline))
    server = Server(
        "autonomy-gateway",
        version=__version__,
        instructions=instructions,
        get_tool_input_schema=pipeline.tool_input_schema,
        on_list_tools=_answering(handlers.list_tools),
        on_call_tool=_answering(handlers.call_tool),
        on_list_resources=_answering(handlers.list_resources),
        on_list_resource_templates=_answering(handlers.list_resource_templates),
        on_read_resource=_answering(handlers.read_resource),
        on_list_prompts=_answering(handlers.list_prompts),
        on_get_prompt=_answering(handlers.get_prompt),
        on_subscriptions_listen=_answering(handlers.listen),
    )
    server.add_request_handler("tasks/get", TaskParams, _answering(handlers.get_task))
    server.add_request_handler("tasks/cancel", TaskParams, _answering(handlers.cancel_task))
    server.add_request_handler("tasks/update", TaskUpdateParams, _answering(handlers.update_task))
    server.extensions = dict(ADVERTISED)
    return server


P = ParamSpec("P")
R = TypeVar("R")


def _answering(handler: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[Any]]:
    """Every handler's gateway errors become JSON-RPC errors in this one place (see `front/errors.py`).

    The handlers answer with wire dicts, which the SDK's runner takes as they are (its
    `HandlerResult` is a model, a dict or None), although `Server`'s parameters name the result
    models: backends' results pass through without a model built per request. The contract test
    in `tests/test_mcp_sdk_contract.py` fails if the SDK stops taking them.
    """

    @functools.wraps(handler)
    async def answered(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await handler(*args, **kwargs)
        except GatewayError as exc:
            raise to_mcp_error(exc) from None

    return answered


class _Handlers:
    """Translate between the SDK's requests and the pipeline's `Call`s; nothing else happens here."""

    def __init__(
        self,
        pipeline: Pipeline,
        notifier: ChangeNotifier,
        default_principal: Principal | None,
        listen: ListenHandler,
        tasks: HeldTasks,
    ) -> None:
        self._tasks = tasks
        self._pipeline = pipeline
        self._notifier = notifier
        self._default_principal = default_principal
        self._listen = listen

    def _origin(self, ctx: ServerRequestContext[Any, Any]) -> Origin:
        request = ctx.request
        principal: Principal | None = None
        session_id: str | None = None
        trace_headers: dict[str, str] | None = None
        workflow: str | None = None
        client = ctx.session.client_params
        info = client.client_info if client else None
        client_name, client_version = (info.name, info.version) if info else (None, None)
        if request is not None:
            principal = request.scope.get(PRINCIPAL_SCOPE_KEY)
            sealed = request.scope.get(SESSION_SCOPE_KEY)
            if sealed is not None:  # a handshake-era session, opened by the endpoint
                session_id, client_name, client_version = sealed.id, sealed.client_name, sealed.client_version
            trace_headers = wire.trace_headers(request.scope)
            try:
                workflow = workflow_header(request.scope["headers"])
            except InvalidWorkflowId as exc:
                raise MCPError(code=types.INVALID_REQUEST, message=str(exc)) from None
        else:
            session_id = "stdio"
        principal = principal or self._default_principal
        if principal is None:  # the HTTP front authenticates before the SDK sees a request
            raise MCPError(code=types.INVALID_REQUEST, message="request is not authenticated")
        return Origin(
            principal=principal,
            request_id=ctx.request_id,
            session_id=session_id,
            protocol_version=ctx.protocol_version,
            client_name=client_name,
            client_version=client_version,
            transport="tcp" if request is not None else "pipe",
            trace_headers=trace_headers,
            workflow=workflow,
        )

    async def list_tools(self, ctx: ServerRequestContext[Any, Any], params: Any) -> JsonObject:
        start = _tools_cursor_start(getattr(params, "cursor", None))
        page = await self._pipeline.list_tools(self._origin(ctx), start=start)
        result: JsonObject = {"tools": [dict(tool) for tool in page.tools]}
        if page.next_start is not None:
            result["nextCursor"] = f"{_TOOLS_CURSOR_PREFIX}{page.next_start}"
        return _listing(result, ctx)

    async def call_tool(self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams) -> JsonObject:
        """The stdio path of a `tools/call`; over HTTP, `front/tool_calls.py` serves it without the SDK."""
        meta = _raw_meta(ctx)
        call = Call.of("tools/call", self._origin(ctx), params.name, (ctx.params or {}).get("arguments"), meta)
        wants_progress = meta is not None and ("progressToken" in meta or "progress_token" in meta)

        async def relay_progress(progress: float, total: float | None, message: str | None) -> None:
            await ctx.session.report_progress(progress, total, message)

        try:
            result = await self._pipeline.call_tool(call, on_progress=relay_progress if wants_progress else None)
        except GatewayError as exc:
            answer = await self._tasks.answer(call, exc)
            if isinstance(answer, MCPError):
                raise answer from None
            result = answer
        return for_client(result, ctx.protocol_version)

    async def get_task(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> JsonObject:
        return await self._tasks.get(self._origin(ctx), params.task_id)

    async def cancel_task(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> JsonObject:
        return await self._tasks.cancel(self._origin(ctx), params.task_id)

    async def update_task(self, ctx: ServerRequestContext[Any, Any], params: TaskUpdateParams) -> JsonObject:
        return await self._tasks.update(self._origin(ctx), params.task_id)

    async def list_resources(self, ctx: ServerRequestContext[Any, Any], params: Any) -> JsonObject:
        return _listing({"resources": await self._pipeline.list_resources(self._origin(ctx))}, ctx)

    async def list_resource_templates(self, ctx: ServerRequestContext[Any, Any], params: Any) -> JsonObject:
        templates = await self._pipeline.list_resource_templates(self._origin(ctx))
        return _listing({"resourceTemplates": templates}, ctx)

    async def read_resource(
        self, ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> JsonObject:
        call = Call.of("resources/read", self._origin(ctx), str(params.uri), meta=_raw_meta(ctx))
        result = await self._pipeline.read_resource(call)
        return for_client(result, ctx.protocol_version, cacheable=True)

    async def listen(
        self, ctx: ServerRequestContext[Any, Any], params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        """A listen stream hears of changes only to resources its agent may read, asked of their backends.

        The URIs it may not read are left out of the acknowledged filter, as the protocol lets a
        server honor a subset, so the agent sees which ones it will hear about. While the stream
        is open, the backends are asked to send updates to the others.
        """
        wanted = params.notifications.resource_subscriptions
        if not wanted:
            return await self._listen(ctx, params)
        readable = self._pipeline.readable_resources(self._origin(ctx), wanted)
        notifications = params.notifications.model_copy(
            update={"resource_subscriptions": [route.exposed for route in readable]}
        )
        with self._pipeline.watching_resources(readable):
            return await self._listen(ctx, params.model_copy(update={"notifications": notifications}))

    async def list_prompts(self, ctx: ServerRequestContext[Any, Any], params: Any) -> JsonObject:
        prompts = [dict(p) for p in await self._pipeline.list_prompts(self._origin(ctx))]
        return _listing({"prompts": prompts}, ctx)

    async def get_prompt(self, ctx: ServerRequestContext[Any, Any], params: types.GetPromptRequestParams) -> JsonObject:
        call = Call.of("prompts/get", self._origin(ctx), params.name, params.arguments, _raw_meta(ctx))
        result = await self._pipeline.get_prompt(call)
        return for_client(result, ctx.protocol_version)


def _raw_meta(ctx: ServerRequestContext[Any, Any]) -> Mapping[str, Any] | None:
    meta = (ctx.params or {}).get("_meta")
    return meta if isinstance(meta, Mapping) else None


def _tools_cursor_start(cursor: str | None) -> int:
    """The catalog position a `tools/list` cursor this gateway handed out points at."""
    if cursor is None:
        return 0
    position = cursor.removeprefix(_TOOLS_CURSOR_PREFIX)
    if not cursor.startswith(_TOOLS_CURSOR_PREFIX) or not (position.isascii() and position.isdigit()):
        raise MCPError(
            code=types.INVALID_PARAMS,
            message=f"unknown tools/list cursor {cursor[:40]!r}: list the tools again without a cursor",
        )
    return int(position)


def _listing(result: JsonObject, ctx: ServerRequestContext[Any, Any]) -> JsonObject:
    """Listings differ per agent (policy decides what each sees) and change with the catalog."""
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        result.update(resultType="complete", ttlMs=0, cacheScope="private")
    return result
