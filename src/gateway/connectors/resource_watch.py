"""Which of one backend's resources agents listen for, and keeping that backend told.

A backend sends `notifications/resources/updated` only for the resources a client asked about:
with `resources/subscribe` at the session-based revisions, on a `subscriptions/listen` stream
that names the URIs at 2026-07-28. Agents ask the gateway (their listen streams); the gateway
asks each backend, on its one session, for the union of what the agents want, and withdraws a
URI when the last agent stream that wanted it ends. A new session (after a reconnect) is asked
again for everything. A backend that does not offer subscriptions is never asked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import anyio
import mcp_types as types
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from gateway.connectors.base import ResourceUpdateListener

logger = logging.getLogger(__name__)


class ResourceWatch:
    """The backend URIs agents listen for, counted per listening stream, and their updates' way out."""

    def __init__(self, connector: str, on_updated: ResourceUpdateListener | None, *, timeout: float) -> None:
        self._connector = connector
        self._on_updated = on_updated
        self._timeout = timeout
        self._wanted: dict[str, int] = {}
        self._changed = anyio.Event()

    @property
    def wanted(self) -> frozenset[str]:
        return frozenset(self._wanted)

    @contextmanager
    def watching(self, uris: Iterable[str]) -> Iterator[None]:
        """Want updates to the backend's `uris` while the block runs (one agent's listen stream)."""
        added = tuple(dict.fromkeys(uris))
        for uri in added:
            self._wanted[uri] = self._wanted.get(uri, 0) + 1
        self._changed.set()
        try:
            yield
        finally:
            for uri in added:
                remaining = self._wanted.pop(uri) - 1
                if remaining:
                    self._wanted[uri] = remaining
            self._changed.set()

    async def updated(self, uri: str) -> None:
        """The backend says `uri` (its own URI) changed."""
        if self._on_updated is not None:
            await self._on_updated(self._connector, uri)

    async def keep_backend_told(self, client: Client) -> None:
        """For one backend session: ask for what is wanted, whenever that changes, until cancelled."""
        resources = client.server_capabilities.resources
        if resources is None or not resources.subscribe:
            return
        if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
            await self._listen(client)
        else:
            await self._subscribe(client)

    def _next_change(self) -> tuple[anyio.Event, frozenset[str]]:
        """A fresh change event, then the wanted set: a change after the snapshot sets the new event."""
        self._changed = anyio.Event()
        return self._changed, self.wanted

    async def _listen(self, client: Client) -> None:
        """2026-07-28: one listen stream naming every wanted URI, opened again when the set changes."""
        while True:
            changed, wanted = self._next_change()
            if wanted:
                async with anyio.create_task_group() as stream:
                    stream.start_soon(self._relay, client, sorted(wanted))
                    await changed.wait()
                    stream.cancel_scope.cancel()
            else:
                await changed.wait()

    async def _relay(self, client: Client, uris: list[str]) -> None:
        try:
            async with client.listen(resource_subscriptions=uris) as subscription:
                async for event in subscription:
                    if isinstance(event, ResourceUpdated):
                        await self.updated(event.uri)
        except Exception as exc:  # boundary: a lost stream costs update notifications, never the session
            logger.info(
                "backend resource update stream ended", extra={"connector": self._connector, "reason": repr(exc)}
            )

    async def _subscribe(self, client: Client) -> None:
        """Session-based: `resources/subscribe` once per wanted URI, `resources/unsubscribe` when none wants it."""
        told: set[str] = set()
        while True:
            changed, wanted = self._next_change()
            for uri in sorted(wanted - told):
                await self._ask(client, types.SubscribeRequest(params=types.SubscribeRequestParams(uri=uri)), uri)
                told.add(uri)
            for uri in sorted(told - wanted):
                await self._ask(client, types.UnsubscribeRequest(params=types.UnsubscribeRequestParams(uri=uri)), uri)
                told.discard(uri)
            await changed.wait()

    async def _ask(self, client: Client, request: types.SubscribeRequest | types.UnsubscribeRequest, uri: str) -> None:
        """A refusal is logged and not retried: the backend said no, and asking again would say no again."""
        try:
            with anyio.fail_after(self._timeout):
                await client.session.send_request(request, types.EmptyResult)
        except (MCPError, TimeoutError) as exc:
            logger.warning(
                "backend refused a resource subscription change",
                extra={"connector": self._connector, "method": request.method, "uri": uri, "reason": str(exc)},
            )
