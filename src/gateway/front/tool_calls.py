"""`tools/call` over streamable HTTP without the SDK's session machinery: the gateway's hot path.

Every agent call passes here, so the request is parsed once, checked with the SDK's own
validators (the same rules as every other method), run through the pipeline, and its result
written straight to the wire as JSON. A call that asked for progress gets an SSE stream as soon
as the first progress notification arrives; one that finishes first still gets plain JSON.
A client that goes away, or cancels the request, cancels the call.
"""

from __future__ import annotations

import asyncio  # plain tasks for a call's two helpers: see `ToolCalls.serve` for why not a task group
import logging
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp_types as types
import orjson
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import ERROR_CODE_HTTP_STATUS
from mcp_types import methods as _methods
from pydantic import ValidationError
from starlette.types import Receive, Send

from gateway.calls import Call, Origin
from gateway.catalog import ToolEntry
from gateway.errors import GatewayError
from gateway.front import wire
from gateway.front.results import for_client
from gateway.front.tasks import HeldTasks
from gateway.mcp_sdk import modern_error_data
from gateway.memo import remember
from gateway.pipeline import Pipeline

logger = logging.getLogger(__name__)

_PING_INTERVAL = 15.0


@dataclass(slots=True)
class InFlightCalls:
    """Calls running in this process, by session and request id, so `notifications/cancelled` finds them."""

    _calls: dict[tuple[str, str], anyio.CancelScope] = field(default_factory=dict)

    def cancel(self, session_id: str, request_id: Any) -> bool:
        scope = self._calls.get((session_id, repr(request_id)))
        if scope is None:
            return False
        scope.cancel()
        return True

    def add(self, session_id: str, request_id: Any, scope: anyio.CancelScope) -> tuple[str, str]:
        key = (session_id, repr(request_id))
        self._calls[key] = scope
        return key

    def remove(self, key: tuple[str, str]) -> None:
        self._calls.pop(key, None)


class ToolCalls:
    """Runs one `tools/call` request and writes its response."""

    def __init__(
        self,
        pipeline: Pipeline,
        in_flight: InFlightCalls,
        server_info_stamp: Mapping[str, Any],
        tasks: HeldTasks,
    ) -> None:
        self._pipeline = pipeline
        self._tasks = tasks
        self._in_flight = in_flight
        self._server_info_stamp = dict(server_info_stamp)
        #: Call shapes the SDK's validators passed (see `_params_error`).
        self._valid_shapes: dict[tuple[str, str, bytes | None], bool] = {}

    async def serve(
        self,
        origin: Origin,
        params: Mapping[str, Any],
        *,
        modern: bool,
        receive: Receive,
        send: Send,
        unusable_arguments: str | None = None,
        tool: ToolEntry | None = None,
    ) -> None:
        """Answer the call; `unusable_arguments` says why its arguments cannot be used, when they cannot.

        `tool` is the catalog entry of the called name when the endpoint already looked it up.
        """
        request_id = origin.request_id
        version = origin.protocol_version or ""
        error = self._params_error(version, params)
        if error is not None:
            body, status = self._error(request_id, error.code, error.message, error.data, modern=modern)
            await wire.send_bytes(send, status, body)
            return
        meta = params.get("_meta")
        meta = meta if isinstance(meta, Mapping) else None
        arguments = params.get("arguments")
        call = Call.of("tools/call", origin, params["name"], arguments, meta, unusable_arguments=unusable_arguments)
        progress_token = meta.get("progressToken") if meta else None
        exchange = _Exchange(send, request_id, progress_token)
        session_id = origin.session_id

        with anyio.CancelScope() as scope:
            key = self._in_flight.add(session_id, request_id, scope) if session_id else None
            # Plain tasks rather than a task group: setting a group up and waiting for its tasks to
            # end cost about 50 µs on every call. These two only cancel `scope` or write to the
            # stream, and are cancelled as soon as the call is answered.
            helpers = [_spawn(wire.cancel_on_disconnect(receive, scope))]
            if progress_token is not None:
                helpers.append(_spawn(exchange.keep_alive()))
            try:
                body, status = await self._call(call, exchange, tool, modern=modern)
                await exchange.finish(body, status)
            finally:
                for helper in helpers:
                    helper.cancel()
                if key is not None:
                    self._in_flight.remove(key)
        if not exchange.answered:
            # Cancelled: the client expects no response, but the HTTP exchange still needs an end.
            await exchange.close_unanswered()

    def _params_error(self, version: str, params: Mapping[str, Any]) -> types.ErrorData | None:
        """What the SDK's validators find wrong with the call's params, or None.

        Their answer depends on the revision, on `_meta`, and on the types of `name` and
        `arguments` (a string and an object, whatever they hold): so a shape the validators
        passed once passes again, and is not validated again (about 20 us a call in a running
        gateway). Anything else, and every shape that fails, goes to the validators.
        """
        shape = _call_shape(version, params)
        if shape is not None and shape in self._valid_shapes:
            return None
        try:
            _methods.validate_client_request("tools/call", version, params)
        except KeyError:  # no tools/call at this revision
            return types.ErrorData(code=types.METHOD_NOT_FOUND, message="Method not found")
        except ValidationError as exc:
            return modern_error_data(exc)
        if shape is not None:
            remember(self._valid_shapes, shape, True, limit=_REMEMBERED_SHAPES)
        return None

    async def _call(
        self, call: Call, exchange: _Exchange, tool: ToolEntry | None, *, modern: bool
    ) -> tuple[bytes, int]:
        request_id = exchange.request_id
        on_progress = exchange.progress if exchange.progress_token is not None else None
        try:
            result = await self._pipeline.call_tool(call, on_progress=on_progress, tool=tool)
        except GatewayError as exc:
            answer = await self._tasks.answer(call, exc)
            if isinstance(answer, MCPError):
                return self._error(
                    request_id, answer.error.code, answer.error.message, answer.error.data, modern=modern
                )
            result = answer
        except MCPError as exc:
            return self._error(request_id, exc.error.code, exc.error.message, exc.error.data, modern=modern)
        result = for_client(result, call.origin.protocol_version or "")
        if modern:
            result_meta = result.get("_meta")
            if not isinstance(result_meta, dict):
                result["_meta"] = {types.SERVER_INFO_META_KEY: self._server_info_stamp}
            elif result_meta.get(types.SERVER_INFO_META_KEY) is None:
                result["_meta"] = {**result_meta, types.SERVER_INFO_META_KEY: self._server_info_stamp}
        return wire.response_message(request_id, result), 200

    @staticmethod
    def _error(request_id: Any, code: int, message: str, data: Any, *, modern: bool) -> tuple[bytes, int]:
        status = ERROR_CODE_HTTP_STATUS.get(code, 200) if modern else 200
        return wire.error_message(request_id, code, message, data), status


#: Distinct call shapes remembered before the memory starts over (a client sends one or two).
_REMEMBERED_SHAPES = 1024
_CALL_KEYS = frozenset({"name", "arguments", "_meta"})


def _call_shape(version: str, params: Mapping[str, Any]) -> tuple[str, str, bytes | None] | None:
    """(revision, kind of arguments, `_meta` as canonical JSON or None when absent) for a call whose
    name is a string; None for anything the validators must look at every time (other keys, odd types)."""
    if not isinstance(params.get("name"), str) or not _CALL_KEYS.issuperset(params):
        return None
    if "arguments" not in params:
        kind = "absent"
    elif params["arguments"] is None:
        kind = "none"
    elif isinstance(params["arguments"], dict):
        kind = "object"
    else:
        return None
    if "_meta" not in params:
        return version, kind, None
    try:
        return version, kind, orjson.dumps(params["_meta"], option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        return None


def _spawn(work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    task = asyncio.get_running_loop().create_task(work)
    task.add_done_callback(_report_failure)
    return task


def _report_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.warning("a tools/call helper task failed", exc_info=error)


class _Exchange:
    """One request's response: JSON until a progress notification commits it to SSE."""

    def __init__(self, send: Send, request_id: Any, progress_token: Any) -> None:
        self._send = send
        self.request_id = request_id
        self.progress_token = progress_token
        self._streaming = False
        # Only a call with progress has a second writer (its notifications and keep-alives).
        self._lock = anyio.Lock() if progress_token is not None else None
        self._done = False

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        params: dict[str, Any] = {"progressToken": self.progress_token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        event = wire.sse_event(wire.encode({"jsonrpc": "2.0", "method": "notifications/progress", "params": params}))
        await self._stream(event)

    async def keep_alive(self) -> None:
        """A long call with progress keeps its stream open behind proxies' idle-read timeouts."""
        while True:
            await anyio.sleep(_PING_INTERVAL)
            await self._stream(wire.SSE_PING)

    async def _stream(self, chunk: bytes) -> None:
        assert self._lock is not None, "only a call with a progress token streams"
        async with self._lock:
            if self._done:
                return
            if not self._streaming:
                self._streaming = True
                await self._send({"type": "http.response.start", "status": 200, "headers": wire.SSE_HEADERS})
            await self._send({"type": "http.response.body", "body": chunk, "more_body": True})

    @property
    def answered(self) -> bool:
        return self._done

    async def close_unanswered(self) -> None:
        with anyio.CancelScope(shield=True):
            try:
                if self._streaming:
                    await self._send({"type": "http.response.body", "body": b"", "more_body": False})
                else:
                    await wire.send_bytes(self._send, 200, b"", wire.SSE_HEADERS)
            except OSError:
                pass  # the client is already gone

    async def finish(self, body: bytes, status: int) -> None:
        if self._lock is None:
            self._done = True
            await wire.send_bytes(self._send, status, body)
            return
        async with self._lock:
            self._done = True
            if self._streaming:
                await self._send({"type": "http.response.body", "body": wire.sse_event(body), "more_body": False})
            else:
                await wire.send_bytes(self._send, status, body)
