"""One agent request, one pass: resolve, context, decide, record, forward, finish.

Each stage is a short step, in the order DESIGN.md gives (hold arrives with approvals). The
audit entry is written before anything is forwarded, and a request the audit log cannot record
is refused; the outcome follows without making the agent wait for a second commit. The
pipeline knows nothing of HTTP or stdio (the front turns results and errors into wire messages)
and nothing of how a backend is reached (connectors).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
import anyio.to_thread

from gateway.audit import AuditRecorder, CallHandle
from gateway.catalog import Catalog, ResourceRoute, ToolEntry
from gateway.connectors.base import Connector, JsonObject, ProgressCallback
from gateway.errors import (
    BackendTimeout,
    GatewayError,
    GatewayNotReady,
    InvalidArguments,
    PolicyDenied,
    ReasoningRequired,
    UnknownPrompt,
    UnknownTool,
    UnusableArguments,
)
from gateway.identity.principal import Principal
from gateway.policy import Decision, PolicyEngine
from gateway.resource_uris import expose_prompt_result, expose_read_result, expose_tool_result
from gateway.telemetry import Telemetry, inject_meta

logger = logging.getLogger("gateway.calls")

#: `_meta` keys the gateway never forwards: the client's envelope and progress token belong to
#: the agent's connection (the backend connection stamps its own), and the gateway's own keys
#: (reasoning, workflow) are for the gateway.
_RESERVED_META_PREFIXES = ("io.modelcontextprotocol/", "io.autonomy-gateway/")
_RESERVED_META_KEYS = frozenset({"progressToken", "progress_token"})

#: Up to this many tools, deciding which an agent may see costs less than handing it to a thread.
_INLINE_VISIBILITY_TOOLS = 256

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
    transport: str | None = None
    trace_headers: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class ToolPage:
    """The tools an agent may see among one window of the catalog, and where the next window starts."""

    tools: list[Mapping[str, Any]]
    next_start: int | None


@dataclass(slots=True)
class _Clock:
    """Latency split for the audit log: policy, backend, total (milliseconds)."""

    started: float = field(default_factory=time.perf_counter)
    policy_ms: float | None = None
    backend_ms: float | None = None

    def lap(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    @property
    def total_ms(self) -> float:
        return self.lap()


def forwardable_meta(meta: Mapping[str, Any] | None) -> JsonObject | None:
    """The part of a request's `_meta` a backend may see (trace context, custom keys)."""
    if not meta:
        return None
    kept = {k: v for k, v in meta.items() if k not in _RESERVED_META_KEYS and not k.startswith(_RESERVED_META_PREFIXES)}
    return kept or None


def _meta_text(meta: Mapping[str, Any] | None, key: str) -> str | None:
    value = meta.get(key) if meta else None
    return value if isinstance(value, str) and value else None


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


def _policy_context(
    request: RequestInfo, meta: Mapping[str, Any] | None, *, reasoning: str | None = None
) -> dict[str, Any]:
    """What every policy decision sees besides principal, action and resource."""
    return {
        "reasoning": reasoning if reasoning is not None else _meta_text(meta, REASONING_META_KEY),
        "workflow": _meta_text(meta, WORKFLOW_META_KEY),
        "session_id": request.session_id,
        "client": request.client_name,
        "request_id": request.request_id,
    }


#: What an agent is told while no valid access policy set is loaded (nothing can be decided).
NOT_READY_MESSAGE = (
    "the gateway is not ready: no valid access policies are loaded, so no request can be decided; "
    "retry later. Operators: the policy error is in the gateway log, in /readyz and from `gateway policy validate`"
)


def _correct_them(exposed_name: str, problem: str) -> str:
    return (
        f"invalid arguments for tool '{exposed_name}': {problem}. "
        "Correct them to match the tool's input schema (see tools/list) and call again."
    )


def _outcome_of(exc: BaseException) -> str:
    if isinstance(exc, PolicyDenied):
        return "denied"
    if isinstance(exc, BackendTimeout):
        return "timeout"
    if isinstance(exc, anyio.get_cancelled_exc_class()):
        return "cancelled"
    if isinstance(exc, UnusableArguments):
        return "invalid_arguments"
    if isinstance(exc, UnknownTool | UnknownPrompt | InvalidArguments | GatewayNotReady):
        return "refused"
    return "backend_error"


class Pipeline:
    def __init__(
        self,
        catalog: Catalog,
        connectors: Mapping[str, Connector],
        policy: PolicyEngine,
        audit: AuditRecorder,
        telemetry: Telemetry,
        *,
        tools_page_size: int = 1000,
    ) -> None:
        self._tools_page_size = tools_page_size
        self._catalog = catalog
        self._connectors = connectors
        self._policy = policy
        self._audit = audit
        self._telemetry = telemetry

    def tool_input_schema(self, exposed_name: str) -> Mapping[str, Any] | None:
        """For the SDK's `Mcp-Param` header check on 2026-07-28 calls, without a full listing per call."""
        try:
            return self._catalog.resolve_tool(exposed_name).definition.get("inputSchema")
        except GatewayError:
            return None

    # -- listings: an agent sees only what it may use ----------------------------------------

    async def list_tools(self, request: RequestInfo, *, start: int = 0) -> ToolPage:
        """The visible tools among `tools_page_size` catalog positions from `start` (a page may hold none).

        Pages are windows of the catalog, not of what the agent sees, so a page costs the same
        whatever the policies hide and needs no state between requests.
        """
        next_start: int | None = None

        async def listing() -> list[Mapping[str, Any]]:
            nonlocal next_start
            catalog = list(self._catalog.tools())
            end = start + self._tools_page_size
            tools = catalog[start:end]
            next_start = end if end < len(catalog) else None
            visible_tools = partial(
                self._policy.visible_tools,
                request.principal,
                tools,
                session_id=request.session_id,
                client=request.client_name,
                request_id=request.request_id,
            )
            # A few tools are judged inline; thousands in a worker thread, so other requests keep flowing.
            if len(tools) <= _INLINE_VISIBILITY_TOOLS:
                visible = visible_tools()
            else:
                visible = await anyio.to_thread.run_sync(visible_tools)
            return [entry.definition for entry in visible]

        tools = await self._listing(request, "tools/list", listing)
        return ToolPage(tools, next_start)

    async def list_prompts(self, request: RequestInfo) -> list[Mapping[str, Any]]:
        async def listing() -> list[Mapping[str, Any]]:
            return [p.definition for p in self._policy.visible_prompts(request.principal, self._catalog.prompts())]

        return await self._listing(request, "prompts/list", listing)

    async def list_resources(self, request: RequestInfo) -> list[Mapping[str, Any]]:
        async def listing() -> list[Mapping[str, Any]]:
            return self._policy.visible_resources(request.principal, self._catalog.resources())

        return await self._listing(request, "resources/list", listing)

    async def list_resource_templates(self, request: RequestInfo) -> list[Mapping[str, Any]]:
        async def listing() -> list[Mapping[str, Any]]:
            return self._policy.visible_resource_templates(request.principal, self._catalog.resource_templates())

        return await self._listing(request, "resources/templates/list", listing)

    # -- resource updates: what a listen stream may hear of, asked of the backends -------------

    def readable_resources(self, request: RequestInfo, uris: Iterable[str]) -> list[ResourceRoute]:
        """The routes of the exposed URIs among `uris` that `request`'s agent may read."""
        readable = []
        for uri in dict.fromkeys(uris):
            try:
                route = self._catalog.resolve_resource(uri)
            except GatewayError:
                continue
            decision = self._policy.decide_read_resource(
                request.principal, route.connector, route.uri, **_policy_context(request, None)
            )
            if decision.allowed:
                readable.append(route)
        return readable

    @contextmanager
    def watching_resources(self, routes: Iterable[ResourceRoute]) -> Iterator[None]:
        """Have each backend send updates to its resources among `routes` while the block runs."""
        by_connector: dict[str, list[str]] = {}
        for route in routes:
            by_connector.setdefault(route.connector, []).append(route.uri)
        with ExitStack() as stack:
            for connector, uris in by_connector.items():
                stack.enter_context(self._connectors[connector].watching(uris))
            yield

    async def _listing(
        self, request: RequestInfo, method: str, produce: Callable[[], Awaitable[list[Mapping[str, Any]]]]
    ) -> list[Mapping[str, Any]]:
        clock = _Clock()
        with self._request_span(request, method, None, None):
            await self._require_policies(request, method, None, None, clock)
            handle = await self._record(request, method, None, None, decision="allow", reason="filtered by policy")
            items = await produce()
            await self._finish(handle, "ok", clock, result={"count": len(items)})
            self._log(request, method, None, None, None, "ok", clock)
            return items

    # -- calls -------------------------------------------------------------------------------

    async def call_tool(
        self,
        request: RequestInfo,
        exposed_name: str,
        arguments: Any,
        *,
        meta: Mapping[str, Any] | None = None,
        on_progress: ProgressCallback | None = None,
        unusable_arguments: str | None = None,
    ) -> JsonObject:
        """Run one call. `unusable_arguments` is set by a front that found the arguments unusable
        (text that is not valid Unicode): the call is refused as invalid arguments once resolved."""
        clock = _Clock()
        method = "tools/call"
        with self._request_span(request, method, exposed_name, meta) as trace:
            # 1 resolve, 2 context: refusals here are recorded too, with what the agent sent.
            await self._require_policies(request, method, exposed_name, meta, clock, arguments=arguments)
            entry: ToolEntry | None = None
            try:
                entry = self._catalog.resolve_tool(exposed_name)
                trace.resolved(entry.connector)
                if arguments is None:
                    arguments = {}
                if not isinstance(arguments, dict):
                    raise InvalidArguments(f"arguments for '{exposed_name}' must be a JSON object")
                if unusable_arguments is not None:
                    raise UnusableArguments(f"invalid arguments for tool '{exposed_name}': {unusable_arguments}")
                arguments, reasoning = _take_reasoning(entry, arguments, meta)
            except GatewayError as exc:
                refusal = self._unknown_unless_visible(request, entry, exc)
                await self._refused(request, method, exposed_name, entry, arguments, meta, refusal, clock)
                raise refusal from None
            trace.record_arguments(arguments)
            # 3 decide
            await self._policy_ready(request)
            context = _policy_context(request, meta, reasoning=reasoning)
            decision = self._decided(
                method, exposed_name, clock,
                lambda: self._policy.decide_call(request.principal, entry, arguments, **context),
            )  # fmt: skip
            if decision.invalid_arguments is not None and self._may_see(request, entry):
                # Arguments the agent can correct are not a policy's business; one that may not
                # see the tool still hears "unknown tool" below, whatever its arguments.
                invalid = UnusableArguments(_correct_them(exposed_name, decision.invalid_arguments))
                await self._refused(request, method, exposed_name, entry, arguments, meta, invalid, clock, reasoning)
                raise invalid
            # 5 record, before anything is forwarded
            handle = await self._record(
                request, method, exposed_name, entry, arguments=arguments, reasoning=reasoning, meta=meta,
                decision=decision.effect.value, policy_ids=decision.policy_ids, reason=decision.reason,
            )  # fmt: skip
            # 6 forward, 7 finish
            return await self._forward(
                request, method, handle, clock, decision, entry,
                lambda: self._refuse_tool(request, entry, decision),
                lambda: self._call_backend_tool(entry, arguments, meta, on_progress),
                trace,
            )  # fmt: skip

    async def _call_backend_tool(
        self,
        entry: ToolEntry,
        arguments: dict[str, Any],
        meta: Mapping[str, Any] | None,
        on_progress: ProgressCallback | None,
    ) -> JsonObject:
        result = await self._connectors[entry.connector].call_tool(
            entry.original, arguments, meta=inject_meta(forwardable_meta(meta)), on_progress=on_progress
        )
        return expose_tool_result(entry.connector, result)

    async def read_resource(
        self, request: RequestInfo, uri: str, *, meta: Mapping[str, Any] | None = None
    ) -> JsonObject:
        """`uri` is the exposed form; the backend is asked for its own URI, and answers with exposed ones."""
        clock = _Clock()
        method = "resources/read"
        with self._request_span(request, method, uri, meta) as trace:
            await self._require_policies(request, method, uri, meta, clock)
            try:
                route = self._catalog.resolve_resource(uri)
            except GatewayError as exc:
                await self._refused(request, method, uri, None, None, meta, exc, clock)
                raise
            trace.resolved(route.connector)
            await self._policy_ready(request)
            context = _policy_context(request, meta)
            decision = self._decided(
                method, uri, clock,
                lambda: self._policy.decide_read_resource(request.principal, route.connector, route.uri, **context),
            )  # fmt: skip
            handle = await self._record(
                request, method, uri, None, connector=route.connector, original=route.uri, meta=meta,
                decision=decision.effect.value, policy_ids=decision.policy_ids, reason=decision.reason,
            )  # fmt: skip

            def deny() -> None:
                raise PolicyDenied(f"denied: {decision.reason}", policy_ids=decision.policy_ids)

            async def read() -> JsonObject:
                result = await self._connectors[route.connector].read_resource(
                    route.uri, meta=inject_meta(forwardable_meta(meta))
                )
                return expose_read_result(route.connector, result)

            return await self._forward(
                request, method, handle, clock, decision, None, deny, read,
                trace, connector=route.connector, target=route.uri,
            )  # fmt: skip

    async def get_prompt(
        self,
        request: RequestInfo,
        exposed_name: str,
        arguments: dict[str, str] | None,
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> JsonObject:
        clock = _Clock()
        method = "prompts/get"
        with self._request_span(request, method, exposed_name, meta) as trace:
            await self._require_policies(request, method, exposed_name, meta, clock, arguments=arguments)
            try:
                entry = self._catalog.resolve_prompt(exposed_name)
            except GatewayError as exc:
                await self._refused(request, method, exposed_name, None, arguments, meta, exc, clock)
                raise
            trace.resolved(entry.connector)
            await self._policy_ready(request)
            context = _policy_context(request, meta)
            decision = self._decided(
                method, exposed_name, clock,
                lambda: self._policy.decide_get_prompt(request.principal, entry, **context),
            )  # fmt: skip
            handle = await self._record(
                request, method, exposed_name, None, connector=entry.connector, original=entry.original,
                arguments=arguments, meta=meta,
                decision=decision.effect.value, policy_ids=decision.policy_ids, reason=decision.reason,
            )  # fmt: skip

            def deny() -> None:
                if not self._policy.visible_prompts(request.principal, (entry,)):
                    raise UnknownPrompt(f"unknown prompt '{exposed_name}': list the prompts to see the available names")
                raise PolicyDenied(f"denied: {decision.reason}", policy_ids=decision.policy_ids)

            async def get() -> JsonObject:
                result = await self._connectors[entry.connector].get_prompt(
                    entry.original, arguments, meta=inject_meta(forwardable_meta(meta))
                )
                return expose_prompt_result(entry.connector, result)

            return await self._forward(
                request, method, handle, clock, decision, None, deny, get,
                trace, connector=entry.connector, target=entry.original,
            )  # fmt: skip

    # -- shared stages -----------------------------------------------------------------------

    async def _require_policies(
        self,
        request: RequestInfo,
        method: str,
        target: str | None,
        meta: Mapping[str, Any] | None,
        clock: _Clock,
        *,
        arguments: Any = None,
    ) -> None:
        """Without a valid policy set nothing can be decided: say so plainly (recorded), rather than
        answering with an empty listing or "unknown tool", which would send the agent looking elsewhere."""
        if self._policy.loaded:
            return
        error = GatewayNotReady(NOT_READY_MESSAGE)
        handle = await self._record(
            request, method, target, None, arguments=arguments, meta=meta, decision="refused", reason=str(error)
        )
        await self._finish(handle, "refused", clock, error=error)
        self._log(request, method, target, None, None, "refused", clock)
        raise error

    def _request_span(
        self, request: RequestInfo, method: str, target: str | None, meta: Mapping[str, Any] | None
    ) -> Any:
        return self._telemetry.request_span(
            method,
            target or "",
            request_id=request.request_id,
            session_id=request.session_id,
            protocol_version=request.protocol_version,
            agent=request.principal.agent,
            transport=request.transport,
            meta=meta,
            headers=request.trace_headers,
        )

    async def _policy_ready(self, request: RequestInfo) -> None:
        """An agent new to the loaded policies gets its entities built in a worker thread, not on the loop."""
        if not self._policy.ready_for(request.principal):
            await anyio.to_thread.run_sync(self._policy.prepare, request.principal)

    def _decided(self, method: str, target: str, clock: _Clock, decide: Callable[[], Decision]) -> Decision:
        """3 decide: one policy span and one latency lap, whatever is being decided."""
        with self._telemetry.policy_span(method, target) as policy_trace:
            decision = decide()
            policy_trace.decided(decision.effect.value, policy_ids=decision.policy_ids)
        clock.policy_ms = clock.lap()
        return decision

    async def _record(
        self,
        request: RequestInfo,
        method: str,
        target: str | None,
        entry: ToolEntry | None,
        *,
        connector: str | None = None,
        original: str | None = None,
        arguments: Any = None,
        reasoning: str | None = None,
        meta: Mapping[str, Any] | None = None,
        decision: str,
        policy_ids: tuple[str, ...] = (),
        reason: str | None = None,
    ) -> CallHandle:
        """The write-ahead entry: durable before the request goes further, or the request is refused."""
        with self._telemetry.audit_span(method, target):
            return await self._audit.record_call(
                principal=request.principal,
                method=method,
                name=target,
                arguments=arguments,
                reasoning=reasoning if reasoning is not None else _meta_text(meta, REASONING_META_KEY),
                decision=decision,
                policy_ids=policy_ids,
                reason=reason,
                request_id=request.request_id,
                session_id=request.session_id,
                workflow_id=_meta_text(meta, WORKFLOW_META_KEY),
                client_name=request.client_name,
                client_version=request.client_version,
                protocol_version=request.protocol_version,
                connector=entry.connector if entry else connector,
                original_name=entry.original if entry else original,
            )

    async def _forward(
        self,
        request: RequestInfo,
        method: str,
        handle: CallHandle,
        clock: _Clock,
        decision: Decision,
        entry: ToolEntry | None,
        refuse: Callable[[], None],
        send: Callable[[], Awaitable[JsonObject]],
        trace: Any,
        *,
        connector: str | None = None,
        target: str | None = None,
    ) -> JsonObject:
        connector = entry.connector if entry else connector
        target = entry.original if entry else target
        try:
            if not decision.allowed:
                refuse()
            backend_started = time.perf_counter()
            try:
                with self._telemetry.backend_span(connector or "", target, method=method) as backend:
                    result = await send()
                    backend.record_result(result)
            finally:
                clock.backend_ms = (time.perf_counter() - backend_started) * 1000
        except BaseException as exc:
            outcome = "denied" if not decision.allowed else _outcome_of(exc)
            with anyio.CancelScope(shield=True):
                await self._finish(handle, outcome, clock, error=exc)
            self._log(request, method, target, connector, decision, outcome, clock)
            raise
        outcome = "tool_error" if result.get("isError") else "ok"
        trace.record_result(result)
        await self._finish(handle, outcome, clock, result=result)
        self._log(request, method, target, connector, decision, outcome, clock)
        return result

    def _may_see(self, request: RequestInfo, entry: ToolEntry) -> bool:
        return bool(self._policy.visible_tools(request.principal, (entry,)))

    def _unknown_unless_visible(self, request: RequestInfo, entry: ToolEntry | None, exc: GatewayError) -> GatewayError:
        """What is wrong with the arguments of a tool the agent may not see is not said: it is unknown."""
        if entry is not None and isinstance(exc, InvalidArguments) and not self._may_see(request, entry):
            return UnknownTool(f"unknown tool '{entry.exposed}': list the tools to see the available names")
        return exc

    def _refuse_tool(self, request: RequestInfo, entry: ToolEntry, decision: Decision) -> None:
        """A tool the agent may never call is reported as unknown, so probing names reveals nothing."""
        if not self._may_see(request, entry):
            raise UnknownTool(f"unknown tool '{entry.exposed}': list the tools to see the available names")
        raise PolicyDenied(f"denied: {decision.reason}", policy_ids=decision.policy_ids)

    async def _refused(
        self,
        request: RequestInfo,
        method: str,
        target: str,
        entry: ToolEntry | None,
        arguments: Any,
        meta: Mapping[str, Any] | None,
        exc: GatewayError,
        clock: _Clock,
        reasoning: str | None = None,
    ) -> None:
        """A request refused before any decision (unknown name, bad arguments) is still on record."""
        outcome = "invalid_arguments" if isinstance(exc, UnusableArguments) else "refused"
        handle = await self._record(
            request, method, target, entry, arguments=arguments, reasoning=reasoning, meta=meta,
            decision=outcome, reason=str(exc),
        )  # fmt: skip
        await self._finish(handle, outcome, clock, error=exc)
        self._log(request, method, target, entry.connector if entry else None, None, outcome, clock)

    async def _finish(
        self,
        handle: CallHandle,
        outcome: str,
        clock: _Clock,
        *,
        result: Any = None,
        error: BaseException | None = None,
    ) -> None:
        await self._audit.record_outcome(
            handle,
            outcome=outcome,
            result=result,
            policy_ms=clock.policy_ms,
            backend_ms=clock.backend_ms,
            total_ms=clock.total_ms,
            error_type=type(error).__name__ if error is not None else None,
            error_message=str(error) if isinstance(error, GatewayError) else None,
            wait=False,
        )

    def _log(
        self,
        request: RequestInfo,
        method: str,
        target: str | None,
        connector: str | None,
        decision: Decision | None,
        outcome: str,
        clock: _Clock,
    ) -> None:
        logger.info(
            "call finished",
            extra={
                "method": method,
                "target": target,
                "connector": connector,
                "agent": request.principal.agent,
                "user": request.principal.user,
                "request_id": request.request_id,
                "session_id": request.session_id,
                "decision": decision.effect.value if decision else None,
                "policies": list(decision.policy_ids) if decision else None,
                "outcome": outcome,
                "latency_ms": round(clock.total_ms, 3),
            },
        )
