"""A REST API described by an OpenAPI document, as a `Connector` (`kind = "openapi"`).

At start the spec is loaded (a file, or a URL fetched and cached on disk) and converted under
the file's curation; the operations become the connector's tools and are published through the
listing listener, exactly as an MCP backend's listing is. From then on the connector needs no
spec: a call finds its `Operation` and `ApiClient` sends it.

Health says two things: whether the spec loaded (if not, the connector lists no tools and says
why, naming the file), and whether the API answers. The latter is passive: a `HEAD` of the base
URL at start, then the outcome of the latest call (no extra request per call). While the latest
word is "unreachable", the base URL is probed again every `health_interval` seconds, so a
recovered API shows as healthy without waiting for an agent to try. Any HTTP status counts as
answering; a 5xx makes the connector `degraded`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext

import anyio
import anyio.abc
import anyio.to_thread
from mcp_types import INVALID_PARAMS

from gateway.connectors.base import (
    Caller,
    Health,
    HealthState,
    JsonObject,
    Listing,
    ListingListener,
    ProgressCallback,
)
from gateway.connectors.listing_bounds import ListingBudget
from gateway.connectors.openapi.api_client import ApiClient
from gateway.connectors.openapi.operations import Conversion, Operation
from gateway.connectors.openapi.spec_loading import load_conversion
from gateway.errors import BackendError, BackendNotConnected, BackendTimeout, ConfigError, ListingRefused
from gateway.settings.openapi import OpenApiConnector

logger = logging.getLogger(__name__)


class OpenApiRestConnector:
    """The `Connector` of one OpenAPI connector file."""

    def __init__(self, settings: OpenApiConnector, on_listing: ListingListener) -> None:
        self._settings = settings
        self._on_listing = on_listing
        self._operations: dict[str, Operation] = {}
        self._api: ApiClient | None = None
        self._listing = Listing()
        #: Set when the spec could not be loaded or converted, or the connector is closed: overrides the API's state.
        self._fixed_health: Health | None = Health(
            HealthState.STARTING, "first connection attempt under way: loading the OpenAPI spec"
        )
        self._problems: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self._settings.name

    @property
    def listing(self) -> Listing:
        return self._listing

    @property
    def health(self) -> Health:
        if self._fixed_health is not None:
            return self._fixed_health
        assert self._api is not None
        answer = self._api.last_answer
        tools = f"{len(self._operations)} tools"
        state = HealthState.DEGRADED if self._problems else HealthState.HEALTHY
        if answer is None:
            return Health(state, f"spec loaded ({tools}); the API has not been asked yet", problems=self._problems)
        if answer.status is None:
            return Health(HealthState.UNHEALTHY, f"spec loaded ({tools}); the API did not answer: {answer.problem}")
        if answer.status >= 500:
            return Health(
                HealthState.DEGRADED,
                f"spec loaded ({tools}); the API answered the latest request with HTTP {answer.status}",
                problems=self._problems,
            )
        return Health(state, f"spec loaded ({tools}); the API answers", problems=self._problems)

    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        settings = self._settings
        try:
            conversion = await anyio.to_thread.run_sync(self._convert)
            base_url = self._base_url(conversion)
            budget = ListingBudget(self.name, settings.listing_limits())
            tools = budget.take("tool", [operation.definition for operation in conversion.operations])
        except (ConfigError, ListingRefused) as exc:
            self._fixed_health = Health(HealthState.UNHEALTHY, str(exc))
            logger.error("OpenAPI connector not started", extra={"connector": self.name, "reason": str(exc)})
            return
        self._problems = tuple(budget.problems)
        listed = {tool.get("name") for tool in tools}
        self._operations = {op.tool_name: op for op in conversion.operations if op.tool_name in listed}
        try:
            self._api = ApiClient(
                self.name,
                base_url,
                auth=settings.auth,
                tls=settings.tls,
                retries=settings.retries,
                max_response_bytes=settings.max_response_bytes,
                timeout=settings.timeout,
                connect_timeout=settings.connect_timeout,
                files_relative_to=settings.source.parent if settings.source.suffix else settings.source,
            )
        except ConfigError as exc:
            self._fixed_health = Health(HealthState.UNHEALTHY, str(exc))
            return
        self._listing = Listing(tools=tuple(tools), capabilities={"tools": {}})
        with anyio.move_on_after(settings.connect_timeout):
            await self._api.probe()
        await self._on_listing(self.name, self._listing)
        # `starting` until the listing is taken in: a backend `/readyz` calls connected has its tools served.
        if self._fixed_health is not None and self._fixed_health.state is HealthState.STARTING:
            self._fixed_health = None
        logger.info("OpenAPI connector started", extra={"connector": self.name, "tools": len(tools)})
        task_group.start_soon(self._probe_while_unreachable, self._api)

    def _convert(self) -> Conversion:
        """Load and convert the spec (in a worker thread: a URL fetch or a large spec takes a while)."""
        return load_conversion(self._settings)

    def _base_url(self, conversion: Conversion) -> str:
        base = self._settings.base_url or next(iter(conversion.servers), None)
        if base is None or not base.startswith(("http://", "https://")):
            found = f"its first server is {base!r}" if base else "it names no servers"
            raise ConfigError(
                f"{self._settings.location('base_url')}: the spec gives no absolute API URL ({found}); "
                'set base_url = "https://api.example.com/v1" in the connector file'
            )
        return base

    async def _probe_while_unreachable(self, api: ApiClient) -> None:
        while self._fixed_health is None:
            await anyio.sleep(self._settings.health_interval)
            answer = api.last_answer
            if answer is None or answer.status is None:
                with anyio.move_on_after(self._settings.connect_timeout):
                    await api.probe()

    async def close(self) -> None:
        self._fixed_health = Health(HealthState.STOPPED, "gateway shutting down")
        if self._api is not None:
            await self._api.aclose()

    async def call_tool(
        self,
        name: str,
        arguments: JsonObject,
        *,
        meta: JsonObject | None,
        on_progress: ProgressCallback | None,
        caller: Caller | None = None,
    ) -> JsonObject:
        """Call the API as the connector (its own credentials); `caller` is never sent to the API."""
        operation = self._operations.get(name)
        if operation is None:
            raise BackendError(f"Unknown tool: {name}", code=INVALID_PARAMS)
        api = self._api
        if api is None or self._fixed_health is not None:
            raise BackendNotConnected(f"backend '{self.name}' is unavailable ({self.health.detail}); retry shortly")
        timeout = self._settings.timeout
        declared_output = "outputSchema" in operation.definition
        try:
            with anyio.fail_after(timeout):
                return await api.call(operation, arguments, declared_output=declared_output)
        except TimeoutError:
            raise BackendTimeout(
                f"the API of connector '{self.name}' did not answer within {timeout:g}s "
                f"({operation.method} {operation.path_template}); the request was abandoned"
            ) from None

    async def read_resource(self, uri: str, *, meta: JsonObject | None) -> JsonObject:
        raise BackendError(f"Resource not found: {uri}", code=INVALID_PARAMS, data={"uri": uri})

    async def get_prompt(self, name: str, arguments: dict[str, str] | None, *, meta: JsonObject | None) -> JsonObject:
        raise BackendError(f"Unknown prompt: {name}", code=INVALID_PARAMS)

    def watching(self, uris: Iterable[str]) -> AbstractContextManager[None]:
        return nullcontext()
