"""The connection under an MCP connector, in two kinds: `StdioWire` and `HttpWire`.

The SDK client keeps the control plane (handshake, listings, pings, change notifications) and
runs it over the streams a wire opens; calls go around it, on the same connection. The SDK's
request models, per-result schema validation and stream plumbing cost more than the backend
itself on a fast tool, and a large result was decoded and re-encoded several times on the way:
on the wire, a call is one dict encoded once and its response is parsed once (`jsonrpc.py`),
shaped for the negotiated revision exactly as the SDK session would (`negotiated_revision.py`).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

from mcp.client import ClientSession

from gateway.connectors.base import JsonObject, ProgressCallback
from gateway.mcp_sdk import TransportStreams


class WireLost(Exception):
    """The connection broke (process exit, stream closed mid-response): the backend needs a restart."""


class WireTimeout(Exception):
    """No answer within the connector's timeout; the backend was told to stop."""


class Wire(Protocol):
    """One connection attempt to an MCP backend; a new wire is made for each attempt."""

    def open(self) -> AbstractAsyncContextManager[TransportStreams]:
        """Connect, and yield the streams the SDK client negotiates and runs its control plane on."""

    def adopt(self, session: ClientSession) -> None:
        """Shape requests from now on as `session` negotiated; called once the SDK client is connected."""

    async def request(
        self, method: str, params: JsonObject, *, time_limit: float, on_progress: ProgressCallback | None
    ) -> JsonObject:
        """Send one request and return its result; raises `RemoteError`, `WireLost` or `WireTimeout`."""
