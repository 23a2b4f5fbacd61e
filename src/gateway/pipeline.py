"""One agent request, one pass: resolve, decide, forward, finish.

Each stage is a short method, in the order DESIGN.md gives; hold and record slot in between
decide and forward. The pipeline knows nothing of HTTP or stdio (the front turns its results
and errors into wire messages) and nothing of how a backend is reached (connectors).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.catalog import Catalog, ToolEntry
from gateway.connectors.base import Connector, JsonObject, ProgressCallback
from gateway.errors import (
    GatewayError,
    InvalidArguments,
    PolicyDenied,
    ReasoningRequired,
    UnknownPrompt,
    UnknownTool,
)
from gateway.identity.principal import Principal
from gateway.policy import Decision, PolicyEngine

logger = logging.getLogger("gateway.calls")

#: `_meta` keys the gateway never forwards: the client's envelope and progress token belong to
#: the agent's connection (the backend connection stamps its own), and the gateway's own keys
#: (reasoning, workflow) are for the gateway.
_RESERVED_META_PREFIXES = ("io.modelcontextprotocol/", "io.autonomy-gateway/")
_RESERVED_META_KEYS = frozenset({"progressToken", "progress_token"})

#: Where an agent states why it makes a call, and which workflow the call belongs to.
REASONING_META_KEY = "io.autonomy-gateway/reasoning"
WORKFLOW_META_KEY = "io.autonomy-gateway/workflow"


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """Who asks and over which connection: what every stage may read, built once by the front."""

    principal: Principal
    request_id: str | int | None = None
    session_id: str | None = None
    protocol_version: str | None = None
    client_name: str | None = None
    client_version: str | None = None


def forwardable_meta(meta: Mapping[str, Any] | None) -> JsonObject | None:
    """The part of a request's `_meta` a backend may see (trace context, custom keys)."""
    if not meta:
        return None
    kept = {k: v for k, v in meta.items() if k not in _RESERVED_META_KEYS and not k.startswith(_RESERVED_META_PREFIXES)}
    return kept or None


def _take_reasoning(
    entry: ToolEntry, arguments: dict[str, Any], meta: Mapping[str, Any] | None
) -> tuple[dict[str, Any], str | None]:
    """The arguments the backend may see, and the agent's reasoning from `_meta` or the added parameter.

    The added parameter is removed even when empty, so the backend's own schema validation never
    sees an argument it did not declare.
    """
    reasoning = _meta_text(meta, REASONING_META_KEY)
    parameter = entry.reasoning_parameter
    if parameter is not None and parameter in arguments:
        arguments = dict(arguments)
        stated = arguments.pop(parameter)
        if reasoning is None and isinstance(stated, str) and stated.strip():
            reasoning = stated.strip()
    if entry.reasoning == "required" and reasoning is None:
        where = f"the '{parameter}' argument" if parameter else f"params._meta['{REASONING_META_KEY}']"
        raise ReasoningRequired(
            f"'{entry.exposed}' needs your reasoning: call it again with {where} saying why you are "
            "calling it and what you expect it to do"
        )
    return arguments, reasoning


def _meta_text(meta: Mapping[str, Any] | None, key: str) -> str | None:
    value = meta.get(key) if meta else None
    return value if isinstance(value, str) and value else None


class Pipeline:
    def __init__(self, catalog: Catalog, connectors: Mapping[str, Connector], policy: PolicyEngine) -> None:
        self._catalog = catalog
        self._connectors = connectors
        self._policy = policy

    # -- listings: an agent sees only what it may use ----------------------------------------

    def list_tools(self, request: RequestInfo) -> list[Mapping[str, Any]]:
        visible = self._policy.visible_tools(
            request.principal,
            self._catalog.tools(),
            session_id=request.session_id,
            client=request.client_name,
            request_id=request.request_id,
        )
        return [entry.definition for entry in visible]

    def tool_input_schema(self, exposed_name: str) -> Mapping[str, Any] | None:
        """For the SDK's `Mcp-Param` header check on 2026-07-28 calls, without a full listing per call."""
        try:
            return self._catalog.resolve_tool(exposed_name).definition.get("inputSchema")
        except GatewayError:
            return None

    def list_prompts(self, request: RequestInfo) -> list[Mapping[str, Any]]:
        return [p.definition for p in self._policy.visible_prompts(request.principal, self._catalog.prompts())]

    def list_resources(self, request: RequestInfo) -> list[Mapping[str, Any]]:
        return self._policy.visible_resources(request.principal, self._catalog.resources())

    def list_resource_templates(self, request: RequestInfo) -> list[Mapping[str, Any]]:
        return self._policy.visible_resource_templates(request.principal, self._catalog.resource_templates())

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
        decision: Decision | None = None
        outcome = "error"
        try:
            entry = self._catalog.resolve_tool(exposed_name)
            if arguments is None:
                arguments = {}
            if not isinstance(arguments, dict):
                raise InvalidArguments(f"arguments for '{exposed_name}' must be a JSON object")
            arguments, reasoning = _take_reasoning(entry, arguments, meta)
            decision = self._policy.decide_call(
                request.principal,
                entry,
                arguments,
                reasoning=reasoning,
                workflow=_meta_text(meta, WORKFLOW_META_KEY),
                session_id=request.session_id,
                client=request.client_name,
                request_id=request.request_id,
            )
            if not decision.allowed:
                self._refuse(request, entry, decision)
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
            self._finish(request, "tools/call", exposed_name, entry, decision, outcome, started)

    def _refuse(self, request: RequestInfo, entry: ToolEntry, decision: Decision) -> None:
        """A tool the agent may never call is reported as unknown, so probing names reveals nothing."""
        if not self._policy.visible_tools(request.principal, (entry,)):
            raise UnknownTool(f"unknown tool '{entry.exposed}': list the tools to see the available names")
        raise PolicyDenied(f"denied: {decision.reason}", policy_ids=decision.policy_ids)

    async def read_resource(
        self, request: RequestInfo, uri: str, *, meta: Mapping[str, Any] | None = None
    ) -> JsonObject:
        started = time.perf_counter()
        outcome = "error"
        decision: Decision | None = None
        try:
            route = self._catalog.resolve_resource(uri)
            decision = self._policy.decide_read_resource(
                request.principal,
                route.connector,
                uri,
                reasoning=_meta_text(meta, REASONING_META_KEY),
                workflow=_meta_text(meta, WORKFLOW_META_KEY),
                session_id=request.session_id,
                client=request.client_name,
                request_id=request.request_id,
            )
            if not decision.allowed:
                raise PolicyDenied(f"denied: {decision.reason}", policy_ids=decision.policy_ids)
            result = await self._connectors[route.connector].read_resource(uri, meta=forwardable_meta(meta))
            outcome = "ok"
            return result
        except GatewayError as exc:
            outcome = type(exc).__name__
            raise
        finally:
            self._finish(request, "resources/read", uri, None, decision, outcome, started)

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
        decision: Decision | None = None
        try:
            entry = self._catalog.resolve_prompt(exposed_name)
            decision = self._policy.decide_get_prompt(
                request.principal,
                entry,
                reasoning=_meta_text(meta, REASONING_META_KEY),
                workflow=_meta_text(meta, WORKFLOW_META_KEY),
                session_id=request.session_id,
                client=request.client_name,
                request_id=request.request_id,
            )
            if not decision.allowed:
                if not self._policy.visible_prompts(request.principal, (entry,)):
                    raise UnknownPrompt(f"unknown prompt '{exposed_name}': list the prompts to see the available names")
                raise PolicyDenied(f"denied: {decision.reason}", policy_ids=decision.policy_ids)
            result = await self._connectors[entry.connector].get_prompt(
                entry.original, arguments, meta=forwardable_meta(meta)
            )
            outcome = "ok"
            return result
        except GatewayError as exc:
            outcome = type(exc).__name__
            raise
        finally:
            self._finish(request, "prompts/get", exposed_name, None, decision, outcome, started)

    # -- finish ------------------------------------------------------------------------------

    def _finish(
        self,
        request: RequestInfo,
        method: str,
        target: str,
        entry: ToolEntry | None,
        decision: Decision | None,
        outcome: str,
        started: float,
    ) -> None:
        logger.info(
            "call finished",
            extra={
                "method": method,
                "target": target,
                "connector": entry.connector if entry else None,
                "agent": request.principal.agent,
                "user": request.principal.user,
                "request_id": request.request_id,
                "session_id": request.session_id,
                "decision": decision.effect.value if decision else None,
                "policies": list(decision.policy_ids) if decision else None,
                "outcome": outcome,
                "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            },
        )
