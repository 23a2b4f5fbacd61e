"""`kind = "python"`: a connector written with `gateway.sdk`, in the gateway's process or in a child.

In process, the gateway calls the connector object directly: no serialisation, no JSON round
trip, a call's cancellation is the pipeline's own. Its start is supervised like an MCP
backend's connection: a connector that cannot be imported or raises in `on_start` is
`unhealthy` with the reason on `/readyz`, the others are served, and the start is retried with
the file's `restart` backoff. A `health` hook is polled every `health_interval`.

In a subprocess (`isolation = "subprocess"`), the connector runs behind `gateway.sdk.serve`, an
MCP server over stdio, and the gateway reaches it with its ordinary stdio connector: the same
supervision, restarts, timeouts and cancellation as any `mcp-stdio` backend.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import anyio
import anyio.abc
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
from gateway.errors import BackendError, BackendNotConnected, BackendTimeout
from gateway.sdk import Connector as SdkConnector
from gateway.sdk import load
from gateway.sdk.serve import PATH_VARIABLE, SETTINGS_VARIABLE
from gateway.settings.connectors import McpStdioConnector, PythonConnector

logger = logging.getLogger(__name__)


def subprocess_settings(settings: PythonConnector) -> McpStdioConnector:
    """The stdio backend that runs this connector in `gateway.sdk.serve`: every shared setting carried over."""
    shared = settings.model_dump(
        exclude={"kind", "entry_point", "module", "path", "settings", "isolation", "source"}, mode="python"
    )
    env = {SETTINGS_VARIABLE: json.dumps(settings.settings)}
    if settings.path:
        env[PATH_VARIABLE] = os.pathsep.join(str(p) for p in settings.path)
    stdio = McpStdioConnector.model_validate(
        {
            **shared,
            "kind": "mcp-stdio",
            "command": (sys.executable, "-m", "gateway.sdk.serve", settings.target),
            "env": env,
            "cwd": settings.source.parent if settings.source.is_file() else None,
        }
    )
    return stdio.model_copy(update={"source": settings.source})


class InProcessConnector:
    """The `Connector` of a Python connector called directly in the gateway's process."""

    def __init__(self, settings: PythonConnector, on_listing: ListingListener) -> None:
        self._settings = settings
        self._on_listing = on_listing
        self._connector: SdkConnector[Any] | None = None
        self._health = Health(HealthState.STARTING, "first start attempt under way")
        self._listing = Listing()
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
        """Returns after the first start attempt; a failed one is retried in the background with backoff."""
        await task_group.start(self._supervise)

    async def close(self) -> None:
        self._closing = True
        connector, self._connector = self._connector, None
        self._health = Health(HealthState.STOPPED, "gateway shutting down", restarts=self._restarts)
        if connector is not None:
            try:
                with anyio.fail_after(self._settings.connect_timeout):
                    await connector.close()
            except Exception:  # boundary: the author's close hook; the gateway stops regardless
                logger.exception("python connector failed to close", extra={"connector": self.name})

    async def _supervise(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        backoff = self._settings.restart.initial_backoff
        reported = False
        while not self._closing:
            started = await self._start_once()
            if not reported:
                reported = True
                task_status.started()
            if started:
                await self._watch_health()
                return
            logger.warning(
                "python connector start failed",
                extra={"connector": self.name, "reason": self._health.detail, "backoff_seconds": backoff},
            )
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, self._settings.restart.max_backoff)
            self._restarts += 1

    async def _start_once(self) -> bool:
        try:
            connector = load(self._settings.target, path=self._settings.path)
            with anyio.fail_after(self._settings.connect_timeout):
                await connector.start(self._settings.settings)
            listing = Listing(tools=tuple(connector.definitions()), capabilities={"tools": {}})
        except TimeoutError:
            self._health = self._unhealthy(
                f"start did not finish within connect_timeout {self._settings.connect_timeout:g}s"
            )
            return False
        except Exception as exc:  # boundary: whatever the author's import or start hook raised
            logger.debug("python connector start raised", exc_info=True, extra={"connector": self.name})
            self._health = self._unhealthy(f"start failed: {type(exc).__name__}: {exc}")
            return False
        self._connector = connector
        self._listing = listing
        # Healthy once the listing is taken in: a backend `/readyz` calls started has its tools served.
        await self._on_listing(self.name, listing)
        if not self._closing:
            self._health = Health(HealthState.HEALTHY, "started", restarts=self._restarts)
        return True

    async def _watch_health(self) -> None:
        while not self._closing and self._connector is not None:
            await anyio.sleep(self._settings.health_interval)
            connector = self._connector
            if connector is None or self._closing:
                return
            try:
                with anyio.fail_after(self._settings.timeout):
                    detail = await connector.check_health()
            except TimeoutError:
                self._health = self._unhealthy(f"health check did not answer within {self._settings.timeout:g}s")
            except Exception as exc:  # boundary: the author's health hook says what is wrong by raising
                self._health = self._unhealthy(f"health check failed: {type(exc).__name__}: {exc}")
            else:
                if not self._closing:
                    self._health = Health(HealthState.HEALTHY, detail or "started", restarts=self._restarts)

    def _unhealthy(self, detail: str) -> Health:
        return Health(HealthState.UNHEALTHY, detail, restarts=self._restarts)

    async def call_tool(
        self,
        name: str,
        arguments: JsonObject,
        *,
        meta: JsonObject | None,
        on_progress: ProgressCallback | None,
        caller: Caller | None = None,
    ) -> JsonObject:
        connector = self._connector
        if connector is None:
            raise BackendNotConnected(f"backend '{self.name}' is unavailable ({self._health.detail}); retry shortly")
        try:
            with anyio.fail_after(self._settings.timeout):
                return await connector.call(name, arguments)
        except TimeoutError:
            raise BackendTimeout(
                f"backend '{self.name}' did not answer within {self._settings.timeout:g}s; the call was cancelled"
            ) from None

    async def read_resource(self, uri: str, *, meta: JsonObject | None) -> JsonObject:
        raise BackendError(f"Resource not found: {uri}", code=INVALID_PARAMS, data={"uri": uri})

    async def get_prompt(self, name: str, arguments: dict[str, str] | None, *, meta: JsonObject | None) -> JsonObject:
        raise BackendError(f"Unknown prompt: {name}", code=INVALID_PARAMS)

    def watching(self, uris: Iterable[str]) -> AbstractContextManager[None]:
        return nullcontext()
