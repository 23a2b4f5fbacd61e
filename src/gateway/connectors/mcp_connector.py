"""A supervised, persistent MCP client session to one backend.

One session per backend, opened at start and kept: a call costs one request on an open
connection, never a handshake or a subprocess. A supervisor task owns the session: it
reconnects with exponential backoff when the backend dies (stdio EOF), stops answering
pings, or breaks a call's connection, and it keeps the backend's listing fresh when the
backend says its tools, resources or prompts changed. Both stdio and HTTP backends share
this class; they differ only in the wire under it (`StdioWire`, `HttpWire`).

The SDK client runs the control plane (negotiation, listings, pings, change notifications);
calls go out on the wire itself, on the same connection (see `wire.py` for why).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import mcp_types as types
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from gateway.connectors.base import (
    Caller,
    Health,
    HealthState,
    JsonObject,
    Listing,
    ListingListener,
    ProgressCallback,
    ResourceUpdateListener,
)
from gateway.connectors.jsonrpc import RemoteError
from gateway.connectors.listing_bounds import ListingBudget
from gateway.connectors.resource_watch import ResourceWatch
from gateway.connectors.stdio_wire import StdioWire
from gateway.connectors.wire import Wire, WireLost, WireTimeout
from gateway.errors import (
    BackendError,
    BackendNotConnected,
    BackendTimeout,
    BackendUnavailable,
    GatewayError,
    ListingRefused,
)
from gateway.mcp_sdk import TransportStreams
from gateway.settings.connectors import McpHttpConnector, McpStdioConnector

logger = logging.getLogger(__name__)

_LIST_CHANGED = {
    "notifications/tools/list_changed",
    "notifications/resources/list_changed",
    "notifications/prompts/list_changed",
}
_RESOURCE_UPDATED = "notifications/resources/updated"
_PAGE_LIMIT = 100
#: A session that stayed up this long resets the backoff: the next failure is a new incident.
_STABLE_AFTER_SECONDS = 30.0
#: The gateway's own failure messages name a file at the end; others are cut at 300 characters.
_OWN_DETAIL_LIMIT = 1000


class _WatchedReadStream:
    """Delegates to a transport's read stream and reports when it ends (the backend is gone)."""

    def __init__(self, inner: Any, on_end: Callable[[], None]) -> None:
        self._inner = inner
        self._on_end = on_end

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_end()
            raise

    def __aiter__(self) -> _WatchedReadStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _WatchedReadStream:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        suppressed: bool | None = await self._inner.__aexit__(*exc_info)
        return suppressed


class _WatchedTransport:
    def __init__(self, inner: AbstractAsyncContextManager[TransportStreams], on_end: Callable[[], None]) -> None:
        self._inner = inner
        self._on_end = on_end

    async def __aenter__(self) -> TransportStreams:
        read_stream, write_stream = await self._inner.__aenter__()
        return _WatchedReadStream(read_stream, self._on_end), write_stream

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        return await self._inner.__aexit__(*exc_info)


class McpConnector:
    """A `Connector` for any backend that speaks MCP; its settings' kind decides the wire, stdio or HTTP."""

    def __init__(
        self,
        settings: McpStdioConnector | McpHttpConnector,
        on_listing: ListingListener,
        on_resource_updated: ResourceUpdateListener | None = None,
    ) -> None:
        self._settings = settings
        self._on_listing = on_listing
        self._resource_watch = ResourceWatch(settings.name, on_resource_updated, timeout=settings.timeout)
        self._protocol = settings.protocol
        self._limits = settings.listing_limits()
        self._reported_problems: tuple[str, ...] = ()
        self._health_interval = settings.health_interval
        #: The wire calls go out on: set once a connection has negotiated and listed, None in between.
        self._wire: Wire | None = None
        self._health = Health(HealthState.STARTING, "first connection attempt under way")
        self._listing = Listing()
        self._lost = anyio.Event()
        self._refresh_wanted = anyio.Event()
        self._closing = False
        self._restarts = 0

    @property
    def name(self) -> str:
        return self._settings.name

    @property
    def health(self) -> Health:
        return self._health

    @property
    def listing(self) -> Listing:
        return self._listing

    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        """Start supervising; returns once the first connection attempt has succeeded or failed.

        Health is `starting` until then, `unhealthy` when the attempt failed or took longer than
        `connect_timeout` (the supervisor retries with backoff).
        """
        await task_group.start(self._supervise)

    async def close(self) -> None:
        self._closing = True
        self._lost.set()
        self._health = Health(HealthState.STOPPED, "gateway shutting down", restarts=self._restarts)

    # -- calls -------------------------------------------------------------------------------

    async def call_tool(
        self,
        name: str,
        arguments: JsonObject,
        *,
        meta: JsonObject | None,
        on_progress: ProgressCallback | None,
        caller: Caller | None = None,
    ) -> JsonObject:
        params: JsonObject = {"name": name, "arguments": arguments}
        if meta:
            params["_meta"] = meta
        return await self._request("tools/call", params, on_progress=on_progress)

    async def read_resource(self, uri: str, *, meta: JsonObject | None) -> JsonObject:
        params: JsonObject = {"uri": uri}
        if meta:
            params["_meta"] = meta
        return await self._request("resources/read", params)

    async def get_prompt(self, name: str, arguments: dict[str, str] | None, *, meta: JsonObject | None) -> JsonObject:
        params: JsonObject = {"name": name}
        if arguments is not None:
            params["arguments"] = arguments
        if meta:
            params["_meta"] = meta
        return await self._request("prompts/get", params)

    async def _request(
        self, method: str, params: JsonObject, *, on_progress: ProgressCallback | None = None
    ) -> JsonObject:
        wire = self._wire
        if wire is None:
            raise BackendNotConnected(f"backend '{self.name}' is unavailable ({self._health.detail}); retry shortly")
        try:
            return await wire.request(method, params, time_limit=self._settings.timeout, on_progress=on_progress)
        except RemoteError as exc:
            raise BackendError(exc.message, code=exc.code, data=exc.data) from None
        except WireTimeout:
            raise BackendTimeout(
                f"backend '{self.name}' did not answer within {self._settings.timeout:g}s; "
                "the call was cancelled at the backend"
            ) from None
        except WireLost as exc:
            self._mark_lost(f"the connection closed during a call ({exc})")
            raise BackendUnavailable(
                f"backend '{self.name}' went away during the call; it is being restarted, retry shortly"
            ) from None

    def watching(self, uris: Iterable[str]) -> AbstractContextManager[None]:
        """Ask the backend for updates to its `uris` while the block runs."""
        return self._resource_watch.watching(uris)

    # -- supervision -------------------------------------------------------------------------

    def _mark_lost(self, why: str) -> None:
        if not self._lost.is_set():
            logger.warning("backend connection lost", extra={"connector": self.name, "reason": why})
            self._health = Health(HealthState.UNHEALTHY, why, restarts=self._restarts)
            self._lost.set()

    async def _supervise(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        backoff = self._settings.restart.initial_backoff
        reported = False
        while not self._closing:
            self._lost = anyio.Event()
            connected = anyio.Event()
            attempt_over = anyio.Event()
            began = time.monotonic()
            async with anyio.create_task_group() as session_group:
                session_group.start_soon(self._run_session, connected, attempt_over)
                with anyio.move_on_after(self._settings.connect_timeout):
                    await attempt_over.wait()
                if not connected.is_set():
                    if not attempt_over.is_set():
                        self._health = Health(
                            HealthState.UNHEALTHY,
                            f"no answer within connect_timeout {self._settings.connect_timeout:g}s",
                            restarts=self._restarts,
                        )
                    session_group.cancel_scope.cancel()
                if not reported:
                    reported = True
                    task_status.started()
            self._wire = None
            if self._closing:
                break
            if time.monotonic() - began > _STABLE_AFTER_SECONDS:
                backoff = self._settings.restart.initial_backoff
            logger.info(
                "backend restart scheduled",
                extra={"connector": self.name, "backoff_seconds": backoff, "reason": self._health.detail},
            )
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, self._settings.restart.max_backoff)
            self._restarts += 1

    async def _run_session(self, connected: anyio.Event, attempt_over: anyio.Event) -> None:
        wire = self._new_wire()
        transport = _WatchedTransport(wire.open(), lambda: self._mark_lost("backend closed the stream"))
        try:
            async with Client(
                transport,
                mode=self._protocol,
                message_handler=self._on_message,
                cache=None,
                client_info=types.Implementation(name="autonomy-gateway", version="0.1.0"),
            ) as client:
                wire.adopt(client.session)
                listing, problems = await self._bounded_listing(wire, client)
                self._wire = wire
                if listing is not None:
                    self._listing = listing
                connected.set()
                # The attempt is over once the listing is taken in (catalog, pins, policies re-validated), and
                # only then does health say so: a backend `/readyz` calls connected has its tools served.
                # Taking a listing in awaits worker threads; the supervisor waits at most connect_timeout.
                if listing is not None:
                    await self._on_listing(self.name, listing)
                if not self._lost.is_set():
                    self._health = self._connected_health(client.protocol_version, problems)
                logger.info(
                    "backend connected",
                    extra={
                        "connector": self.name,
                        "protocol_version": client.protocol_version,
                        "tools": len(self._listing.tools),
                    },
                )
                attempt_over.set()
                async with anyio.create_task_group() as watchers:
                    watchers.start_soon(self._ping_loop, client)
                    watchers.start_soon(self._refresh_loop, client)
                    watchers.start_soon(self._resource_watch.keep_backend_told, client)
                    if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                        watchers.start_soon(self._listen_loop, client)
                    await self._lost.wait()
                    watchers.cancel_scope.cancel()
        except Exception as exc:  # boundary: any failure of a backend session means "reconnect"
            detail = _describe_failure(exc)
            self._health = Health(HealthState.UNHEALTHY, detail, restarts=self._restarts)
            logger.warning("backend session ended", extra={"connector": self.name, "reason": detail})
        finally:
            self._wire = None
            attempt_over.set()

    async def _ping_loop(self, client: Client) -> None:
        """Any answer proves the backend alive: 2026-07-28 servers answer `ping` with method-not-found."""
        while True:
            await anyio.sleep(self._health_interval)
            try:
                with anyio.fail_after(self._settings.timeout):
                    await client.session.send_ping()
            except MCPError as exc:
                if exc.error.code in (types.CONNECTION_CLOSED, types.REQUEST_TIMEOUT):
                    self._mark_lost("backend stopped answering pings")
                    return
            except (TimeoutError, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                self._mark_lost("backend stopped answering pings")
                return

    def _new_wire(self) -> Wire:
        """A fresh wire for each connection attempt: a new subprocess, or new HTTP clients.

        A stdio backend's change notifications need no hook: the wire hands them to the SDK session,
        which reports them. An HTTP backend may send them on a call's response stream, which the
        SDK never sees.
        """
        if isinstance(self._settings, McpStdioConnector):
            return StdioWire(self._settings, self._mark_lost)
        # Imported here: aiohttp costs a tenth of a second at start-up, paid only when an HTTP backend exists.
        from gateway.connectors.http_wire import HttpWire

        return HttpWire(self._settings, self._refresh_wanted_soon)

    def _refresh_wanted_soon(self) -> None:
        self._refresh_wanted.set()

    async def _on_message(self, message: Any) -> None:
        method = getattr(message, "method", None)
        if method in _LIST_CHANGED:
            self._refresh_wanted.set()
        elif method == _RESOURCE_UPDATED:
            uri = getattr(getattr(message, "params", None), "uri", None)
            if isinstance(uri, str):
                await self._resource_watch.updated(uri)

    async def _listen_loop(self, client: Client) -> None:
        """On 2026-07-28 backends, change notifications arrive on a `subscriptions/listen` stream."""
        capabilities = client.server_capabilities
        tools = bool(capabilities.tools and capabilities.tools.list_changed)
        prompts = bool(capabilities.prompts and capabilities.prompts.list_changed)
        resources = bool(capabilities.resources and capabilities.resources.list_changed)
        if not (tools or prompts or resources):
            return
        try:
            async with client.listen(
                tools_list_changed=tools, prompts_list_changed=prompts, resources_list_changed=resources
            ) as subscription:
                async for _event in subscription:
                    self._refresh_wanted.set()
        except Exception as exc:  # boundary: a lost listen stream only costs change notifications
            logger.info("backend change stream ended", extra={"connector": self.name, "reason": repr(exc)})

    async def _refresh_loop(self, client: Client) -> None:
        while True:
            await self._refresh_wanted.wait()
            self._refresh_wanted = anyio.Event()
            wire = self._wire
            if wire is None:
                continue  # the connection is being replaced; the new one lists afresh
            try:
                listing, problems = await self._bounded_listing(wire, client)
            except (RemoteError, WireTimeout, TimeoutError) as exc:
                reason = exc.message if isinstance(exc, RemoteError) else "no answer within the connector's timeout"
                logger.warning("backend listing refresh failed", extra={"connector": self.name, "reason": reason})
                continue
            except WireLost as exc:
                self._mark_lost(f"the connection closed while listing ({exc})")
                return
            if self._wire is not None:
                self._health = self._connected_health(client.protocol_version, problems)
            if listing is not None:
                self._listing = listing
                await self._on_listing(self.name, listing)

    async def _bounded_listing(self, wire: Wire, client: Client) -> tuple[Listing | None, tuple[str, ...]]:
        """The listing within the bounds and what was left out; None with the reason when refused whole."""
        budget = ListingBudget(self.name, self._limits)
        try:
            listing = await self._fetch_listing(wire, client, budget)
        except ListingRefused as exc:
            return None, (str(exc),)
        return listing, tuple(budget.problems)

    def _connected_health(self, protocol_version: str | None, problems: tuple[str, ...]) -> Health:
        """Healthy, or degraded with the problems; each new set of problems is logged once."""
        if problems != self._reported_problems:
            self._reported_problems = problems
            for problem in problems:
                logger.warning("backend listing breaks a bound", extra={"connector": self.name, "problem": problem})
        if not problems:
            return Health(HealthState.HEALTHY, "connected", protocol_version, self._restarts)
        detail = "connected, but its listing breaks a bound: " + " ".join(problems)
        return Health(HealthState.DEGRADED, detail, protocol_version, self._restarts, problems)

    async def _fetch_listing(self, wire: Wire, client: Client, budget: ListingBudget) -> Listing:
        """Pages come over the wire, around the SDK client: it would validate every definition on the event loop
        (seconds for tens of thousands of tools); the budget checks what the catalog needs, in a worker thread."""
        capabilities = client.server_capabilities
        tools: list[JsonObject] = []
        resources: list[JsonObject] = []
        templates: list[JsonObject] = []
        prompts: list[JsonObject] = []
        with anyio.fail_after(self._settings.timeout):
            if capabilities.tools is not None:
                tools = await self._all_pages(wire, "tools/list", "tools", budget, "tool")
            if capabilities.resources is not None:
                resources = await self._all_pages(wire, "resources/list", "resources", budget, "resource")
                templates = await self._all_pages(
                    wire, "resources/templates/list", "resourceTemplates", budget, "resource template"
                )
            if capabilities.prompts is not None:
                prompts = await self._all_pages(wire, "prompts/list", "prompts", budget, "prompt")
        return Listing(
            tools=tuple(tools),
            resources=tuple(resources),
            resource_templates=tuple(templates),
            prompts=tuple(prompts),
            capabilities=capabilities.model_dump(by_alias=True, exclude_none=True),
        )

    async def _all_pages(self, wire: Wire, method: str, key: str, budget: ListingBudget, kind: str) -> list[JsonObject]:
        """Every page, each checked against the budget as it arrives (in a worker thread: a page may be huge)."""
        items: list[JsonObject] = []
        cursor: Any = None
        for _ in range(_PAGE_LIMIT):
            params: JsonObject = {"cursor": cursor} if cursor else {}
            page = await wire.request(method, params, time_limit=self._settings.timeout, on_progress=None)
            items.extend(await anyio.to_thread.run_sync(budget.take, kind, page.get(key)))
            cursor = page.get("nextCursor")
            if not isinstance(cursor, str) or not cursor:
                break
        return items


def _describe_failure(exc: BaseException) -> str:
    """One line for health output and logs, unwrapping the exception groups anyio produces."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, MCPError):
        return f"backend error: {exc.error.message}"
    if isinstance(exc, GatewayError):
        return str(exc)[:_OWN_DETAIL_LIMIT]  # written for this output; the file path at its end must survive
    text = str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"[:300]
