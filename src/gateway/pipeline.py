"""One agent request, one pass: resolve, forward, finish.

Each stage is a short method, in the order DESIGN.md gives; decide, hold and record slot in
between resolve and forward. The pipeline knows nothing of HTTP or stdio (the front turns its
results and errors into wire messages) and nothing of how a backend is reached (connectors).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.catalog import Catalog, ToolEntry
from gateway.connectors.base import Connector, JsonObject, ProgressCallback
from gateway.errors import GatewayError, InvalidArguments
from gateway.identity.principal import Principal

logger = logging.getLogger("gateway.calls")

#: `_meta` keys the gateway never forwards: the client's envelope and progress token belong to
#: the agent's connection; the backend connection stamps its own.
_RESERVED_META_PREFIX = "io.modelcontextprotocol/"
_RESERVED_META_KEYS = frozenset({"progressToken"})


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """Who asks and over which connection: what every stage may read, built once by the front."""

    principal: Principal
    request_id: str | int | None = None
    session_id: str | None = None
    protocol_version: str | None = None
    client_name: str | None = None


def forwardable_meta(meta: Mapping[str, Any] | None) -> JsonObject | None:
    """The part of a request's `_meta` a backend may see (trace context, custom keys)."""
    if not meta:
        return None
    kept = {k: v for k, v in meta.items() if k not in _RESERVED_META_KEYS and not k.startswith(_RESERVED_META_PREFIX)}
    return kept or None


class Pipeline:
    def __init__(self, catalog: Catalog, connectors: Mapping[str, Connector]) -> None:
        self._catalog = catalog
        self._connectors = connectors

    # -- listings ----------------------------------------------------------------------------

    def list_tools(self, request: RequestInfo) -> list[Mapping[str, Any]]:
        return [entry.definition for entry in self._catalog.tools()]

    def tool_input_schema(self, exposed_name: str) -> Mapping[str, Any] | None:
        """For the SDK's `Mcp-Param` header check on 2026-07-28 calls, without a full listing per call."""
        try:
            return self._catalog.resolve_tool(exposed_name).definition.get("inputSchema")
        except GatewayError:
            return None

    def list_prompts(self, request: RequestInfo) -> list[Mapping[str, Any]]:
        return [entry.definition for entry in self._catalog.prompts()]

    def list_resources(self, request: RequestInfo) -> list[JsonObject]:
        return self._catalog.resources()

    def list_resource_templates(self, request: RequestInfo) -> list[JsonObject]:
        return self._catalog.resource_templates()

    # -- calls -------------------------------------------------------------------------------

    async def call_tool(
        self,
        request: RequestInfo,
        exposed_name: str,
        arguments: Any,
        *,
        meta: Mapping[str, Any] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> JsonObject:
        started = time.perf_counter()
        entry: ToolEntry | None = None
        outcome = "error"
        try:
            entry = self._catalog.resolve_tool(exposed_name)
            if arguments is None:
                arguments = {}
            if not isinstance(arguments, dict):
                raise InvalidArguments(f"arguments for '{exposed_name}' must be a JSON object")
            connector = self._connectors[entry.connector]
            result = await connector.call_tool(
                entry.original, arguments, meta=forwardable_meta(meta), on_progress=on_progress
            )
            outcome = "tool_error" if result.get("isError") else "ok"
            return result
        except GatewayError as exc:
            outcome = type(exc).__name__
            raise
        finally:
            self._finish(request, "tools/call", exposed_name, entry, outcome, started)

    async def read_resource(
        self, request: RequestInfo, uri: str, *, meta: Mapping[str, Any] | None = None
    ) -> JsonObject:
        started = time.perf_counter()
        outcome = "error"
        try:
            route = self._catalog.resolve_resource(uri)
            result = await self._connectors[route.connector].read_resource(uri, meta=forwardable_meta(meta))
            outcome = "ok"
            return result
        except GatewayError as exc:
            outcome = type(exc).__name__
            raise
        finally:
            self._finish(request, "resources/read", uri, None, outcome, started)

    async def get_prompt(
        self,
        request: RequestInfo,
        exposed_name: str,
        arguments: dict[str, str] | None,
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> JsonObject:
        started = time.perf_counter()
        outcome = "error"
        try:
            entry = self._catalog.resolve_prompt(exposed_name)
            result = await self._connectors[entry.connector].get_prompt(
                entry.original, arguments, meta=forwardable_meta(meta)
            )
            outcome = "ok"
            return result
        except GatewayError as exc:
            outcome = type(exc).__name__
            raise
        finally:
            self._finish(request, "prompts/get", exposed_name, None, outcome, started)

    # -- finish ------------------------------------------------------------------------------

    def _finish(
        self, request: RequestInfo, method: str, target: str, entry: ToolEntry | None, outcome: str, started: float
    ) -> None:
        logger.info(
            "call finished",
            extra={
                "method": method,
                "target": target,
                "connector": entry.connector if entry else None,
                "agent": request.principal.agent,
                "request_id": request.request_id,
                "session_id": request.session_id,
                "outcome": outcome,
                "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            },
        )
